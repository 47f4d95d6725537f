import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ingestVerdicts,
  summariseLatency,
  summariseRefusals,
  summariseThroughput,
  workerCpuCeiling,
  type JobEnd,
} from '../../bench/lib/ingest-summary.js';

const T0 = 1_000_000;

test('summariseThroughput: a refused job is neither an image per second nor the end of the phase', () => {
  const done = new Map<string, JobEnd>([
    ['a', { at: T0 + 1_000, ok: true }],
    ['b', { at: T0 + 2_000, ok: true }],
    ['c', { at: T0 + 9_000, ok: false, reason: 'cannot decode' }],
    ['d', { at: T0 + 4_000, ok: true }],
  ]);
  const s = summariseThroughput(T0, done);
  assert.deepEqual(
    { images: s.images, indexed: s.indexed, refused: s.refused, seconds: s.seconds },
    { images: 4, indexed: 3, refused: 1, seconds: 4 },
  );
  // 3 indexed images in 4 s (not 4 images: the refused one was never searchable).
  assert.equal(s.imagesPerS, 0.75);
});

test('summariseThroughput: nothing indexed gives 0 images/s, not Infinity or NaN', () => {
  const s = summariseThroughput(T0, new Map([['a', { at: T0 + 500, ok: false }]]));
  assert.equal(s.indexed, 0);
  assert.equal(s.imagesPerS, 0);
});

test('summariseLatency: a refused job is left out of the times to searchable and counted as refused', () => {
  const sent = [
    { sop: 'a', sentAt: T0, answeredAt: T0 + 100 },
    { sop: 'b', sentAt: T0 + 50, answeredAt: T0 + 150 },
    // Refused long after: its failure time must not become a p95.
    { sop: 'c', sentAt: T0 + 60, answeredAt: T0 + 160 },
  ];
  const done = new Map<string, JobEnd>([
    ['a', { at: T0 + 1_100, ok: true }],
    ['b', { at: T0 + 1_350, ok: true }],
    ['c', { at: T0 + 60_160, ok: false, reason: 'no pixel data' }],
  ]);
  const l = summariseLatency(sent, done);
  assert.deepEqual(l.msToSearchable, [1_000, 1_200]);
  assert.equal(l.indexed, 2);
  assert.equal(l.refused, 1);
  assert.equal(l.p50, 1_000);
  assert.equal(l.p95, 1_200);
});

test('summariseLatency: no latency phase, no figures', () => {
  const l = summariseLatency([], new Map());
  assert.equal(l.p50, null);
  assert.equal(l.p95, null);
});

test('summariseRefusals: counts the refusals of both phases, with the first reason', () => {
  const r = summariseRefusals({
    throughput: new Map<string, JobEnd>([
      ['a', { at: 1, ok: true }],
      ['b', { at: 2, ok: false, reason: 'cannot decode' }],
    ]),
    latency: new Map<string, JobEnd>([
      ['c', { at: 3, ok: false }],
      ['d', { at: 4, ok: true }],
    ]),
  });
  assert.equal(r.total, 2);
  assert.deepEqual(r.byPhase, { throughput: 1, latency: 1 });
  assert.equal(r.firstReason, 'cannot decode');
  assert.deepEqual(summariseRefusals({ throughput: new Map([['a', { at: 1, ok: true }]]) }), { total: 0, byPhase: { throughput: 0 } });
});

test('workerCpuCeiling: CPUs ÷ worker CPU per image, measured; none without a measure', () => {
  assert.equal(workerCpuCeiling(2, 80), 25);
  assert.equal(workerCpuCeiling(16, 50), 320);
  assert.equal(workerCpuCeiling(2, 0), null);
  assert.equal(workerCpuCeiling(2, Number.NaN), null);
});

test('ingestVerdicts: ≥ 30 images/s, every image indexed, p95 ≤ 5 s; no latency phase is "not run", not met', () => {
  const ok = ingestVerdicts({ images: 1300, indexed: 1300, images_per_s: 30, p95_ms_to_searchable: 5_000 });
  assert.deepEqual(ok.byTarget, { indexed_all: 'met', images_per_s: 'met', p95_ms_to_searchable: 'met' });
  assert.equal(ok.met, true);
  const slow = ingestVerdicts({ images: 1300, indexed: 1299, images_per_s: 19.47, p95_ms_to_searchable: null });
  assert.deepEqual(slow.byTarget, { indexed_all: 'missed', images_per_s: 'missed', p95_ms_to_searchable: 'not run' });
  assert.equal(slow.met, false);
  assert.deepEqual(slow.rows, [
    ['every image indexed', '**missed** (1299 of 1300)'],
    ['≥ 30 images/s end to end', '**missed** (19.47 images/s)'],
    ['p95 STOW answered → searchable ≤ 5 s', 'not run'],
  ]);
});
