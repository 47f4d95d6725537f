import assert from 'node:assert/strict';
import { test } from 'node:test';
import { levelErrorsSentence, peakLevel, similarResultJson, summariseUploads } from '../../bench/lib/similar-summary.js';

const ok = (ms: number) => ({ ms, status: 200 });

test('summariseUploads: a 503 upload is an error, not a silently missing sample', () => {
  const s = summariseUploads([ok(300), ok(120), ok(100)], [ok(90), { ms: 5, status: 503 }, ok(110), ok(100)]);
  assert.equal(s.requests, 4);
  assert.equal(s.errors, 1);
  assert.equal(s.firstErrorStatus, 503);
  assert.deepEqual(s.samples, [90, 100, 110]);
  assert.equal(s.p50, 100);
  assert.equal(s.p90, 110);
});

test('summariseUploads: a warm-up that fails counts as an error; its time is no sample', () => {
  const s = summariseUploads([{ ms: 30_000, status: 504 }, ok(200), ok(100)], [ok(80), ok(90)]);
  assert.equal(s.warmups, 3);
  assert.equal(s.errors, 1);
  assert.equal(s.firstErrorStatus, 504);
  assert.deepEqual(s.samples, [80, 90]);
});

test('summariseUploads: every upload failing leaves no p50 and says how many failed', () => {
  const s = summariseUploads(
    [],
    [
      { ms: 1, status: 503 },
      { ms: 1, status: 503 },
    ],
  );
  assert.equal(s.p50, null);
  assert.equal(s.p90, null);
  assert.equal(s.errors, 2);
});

test('peakLevel names the level the highest throughput came from', () => {
  const levels = {
    '1': { errors: 0, requests: 100, rps: 110.5 },
    '64': { errors: 0, requests: 100, rps: 488.3 },
    '256': { errors: 0, requests: 100, rps: 484.8 },
  };
  assert.deepEqual(peakLevel(levels), { users: 64, rps: 488.3 });
  assert.equal(peakLevel({}), undefined);
});

test('levelErrorsSentence: says "no request failed" only when none did', () => {
  assert.equal(
    levelErrorsSentence({ '1': { errors: 0, requests: 10, rps: 1 }, '2': { errors: 0, requests: 10, rps: 1 } }),
    'no request failed or timed out at any level.',
  );
  const s = levelErrorsSentence({
    '256': { errors: 3, requests: 10, rps: 1, first_error: 'HTTP 503' },
    '512': { errors: 1, requests: 10, rps: 1 },
  });
  assert.equal(s, '4 requests failed or timed out: 3 at 256 users (first: HTTP 503), 1 at 512 users.');
});

test('similarResultJson: the JSON carries upload_errors beside upload_p50_ms', () => {
  const level = { avg_ms: 8.6, p90_ms: 17.7, max_ms: 37.1, errors: 0, requests: 1158, rps: 115.8 };
  const upload = summariseUploads([ok(100), ok(100), ok(100)], [ok(88), { ms: 2, status: 503 }]);
  assert.deepEqual(similarResultJson({ '1': level }, upload), {
    levels: { '1': { avg_ms: 8.6, p90_ms: 17.7, max_ms: 37.1, errors: 0 } },
    upload_p50_ms: 88,
    upload_errors: 1,
    backend: 'elasticsearch',
  });
  assert.equal(similarResultJson({}, undefined).upload_errors, null);
});
