import assert from 'node:assert/strict';
import { test } from 'node:test';
import { summariseLatency, summariseRefusals, summariseThroughput, type JobEnd } from '../../bench/lib/ingest-summary.js';

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
