import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  levelErrorsSentence,
  orthancCpuSentence,
  peakLevel,
  similarResultJson,
  speedUpCell,
  summariseUploads,
  tenfoldVerdicts,
  timedUpload,
} from '../../bench/lib/similar-summary.js';

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

const lat = (avg: number, errors = 0, timeouts = 0) => ({
  avg_ms: avg,
  p90_ms: avg * 2,
  max_ms: avg * 4,
  ok_avg_ms: avg,
  ok_p90_ms: avg * 2,
  ok_max_ms: avg * 4,
  errors,
  timeouts,
  requests: 100,
  rps: 10,
});

test('similarResultJson: the JSON carries upload_errors beside upload_p50_ms, the success-only figures and the 10× verdicts', () => {
  const level = { ...lat(8.6), p90_ms: 17.7, max_ms: 37.1 };
  const upload = summariseUploads([ok(100), ok(100), ok(100)], [ok(88), { ms: 2, status: 503 }]);
  assert.deepEqual(similarResultJson({ '1': level }, upload), {
    levels: { '1': { avg_ms: 8.6, p90_ms: 17.7, max_ms: 37.1, errors: 0, timeouts: 0, ok_avg_ms: 8.6, ok_p90_ms: 17.2, ok_max_ms: 34.4 } },
    upload_p50_ms: 88,
    upload_errors: 1,
    tenfold: { one_user_avg: 'met', users_128_avg: 'not run', users_256_no_errors: 'not run', met: false },
    backend: 'elasticsearch',
  });
  assert.equal(similarResultJson({}, undefined).upload_errors, null);
});

test('timedUpload: an upload without an answer is a failed upload (status 0), counted in upload_errors', async () => {
  let t = 0;
  const now = () => t;
  const refused = await timedUpload(async () => {
    t += 30_000;
    throw new Error('Headers Timeout Error');
  }, now);
  assert.deepEqual(refused, { ms: 30_000, status: 0, error: 'Headers Timeout Error' });
  const answered = await timedUpload(async () => {
    t += 120;
    return 200;
  }, now);
  assert.deepEqual(answered, { ms: 120, status: 200 });
  const s = summariseUploads([answered], [refused, answered]);
  assert.equal(s.errors, 1);
  assert.equal(s.firstErrorStatus, 0);
  assert.equal(s.firstError, 'no answer: Headers Timeout Error');
  assert.deepEqual(s.samples, [120]);
  assert.equal(summariseUploads([], [{ ms: 1, status: 503 }]).firstError, 'HTTP 503');
});

test('tenfoldVerdicts: mean ≤ 27.4 ms at 1 user, ≤ 2,570 ms at 128 users, no errors at 256', () => {
  const met = tenfoldVerdicts({ '1': lat(27.4), '128': lat(2_570), '256': lat(1_041) });
  assert.deepEqual(met.json, { one_user_avg: 'met', users_128_avg: 'met', users_256_no_errors: 'met', met: true });
  assert.deepEqual(met.rows, [
    ['1 user: mean ≤ 27.4 ms (published 274 ms ÷ 10), no errors', 'met (27.4 ms, 0 errors)'],
    ['128 users: mean ≤ 2,570 ms (published 25.7 s ÷ 10), no errors', 'met (2,570 ms, 0 errors)'],
    ['256 users: no errors or timeouts (published: every request timed out)', 'met (0 errors)'],
  ]);
  const missed = tenfoldVerdicts({ '1': lat(27.5), '128': lat(2_570.1), '256': lat(900, 3, 2) });
  assert.deepEqual(missed.json, { one_user_avg: 'missed', users_128_avg: 'missed', users_256_no_errors: 'missed', met: false });
  assert.equal(missed.rows[2]![1], '**missed** (3 errors, 2 timed out)');
});

test('tenfoldVerdicts: a fast mean with errors is no 10×; a level not run is not met', () => {
  // Requests that fail fast lower the mean: the level claims nothing.
  const v = tenfoldVerdicts({ '1': lat(5, 1) });
  assert.equal(v.json.one_user_avg, 'missed');
  assert.equal(v.rows[0]![1], '**missed** (5 ms, 1 error)');
  assert.equal(v.json.users_128_avg, 'not run');
  assert.equal(v.rows[1]![1], 'not run');
  assert.equal(v.json.met, false);
  assert.equal(tenfoldVerdicts({ '1': lat(Number.NaN) }).json.one_user_avg, 'missed');
});

test('speedUpCell: one decimal; none without a published figure, with errors, or without a mean', () => {
  assert.equal(speedUpCell(273.98, { avg_ms: 28.84, errors: 0 }), '9.5×', 'not rounded up to 10×');
  assert.equal(speedUpCell(25_672.47, { avg_ms: 610.5, errors: 0 }), '42.1×');
  assert.equal(speedUpCell(Number.NaN, { avg_ms: 1041, errors: 0 }), '–');
  assert.equal(speedUpCell(undefined, { avg_ms: 2115, errors: 0 }), '–');
  assert.equal(speedUpCell(273.98, { avg_ms: 20, errors: 1 }), '–');
  assert.equal(speedUpCell(273.98, { avg_ms: Number.NaN, errors: 0 }), '–', 'no "NaN×"');
  assert.equal(speedUpCell(273.98, { avg_ms: 0, errors: 0 }), '–', 'no "Infinity×"');
});

test("orthancCpuSentence: the run's own figures, lowest and highest level", () => {
  const cpu = (orthanc: number) => ({ cpu: { orthanc } });
  assert.equal(
    orthancCpuSentence({ '256': cpu(0.94), '1': cpu(7.6), '16': cpu(1.3) }),
    "In this run Orthanc's CPU per request was 7.6 ms at 1 user and 0.9 ms at 256 users.",
  );
  assert.equal(orthancCpuSentence({ '8': cpu(2) }), "In this run Orthanc's CPU per request was 2.0 ms at 8 users.");
  assert.equal(orthancCpuSentence({ '1': cpu(Number.NaN), '2': {} }), "Orthanc's CPU was not measured in this run (given by URL).");
});
