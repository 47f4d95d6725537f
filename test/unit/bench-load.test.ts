import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { closedLoop, loadFigures, runLoad, type LoopOptions, type Outcome } from '../../bench/lib/load.js';

/**
 * closedLoop on a simulated clock: the k-th request (in the order they are sent) takes
 * `plan(k).ms` and ends with `plan(k)`'s outcome. Time advances only to the next answer,
 * so the figures are exact, whatever the machine's load.
 */
async function simulate(
  opts: Omit<LoopOptions, 'now' | 'send' | 'start'>,
  plan: (k: number) => { ms: number; outcome?: Outcome },
): Promise<{ result: Awaited<ReturnType<typeof closedLoop>>; sentAt: number[] }> {
  let t = 0;
  let k = 0;
  const sentAt: number[] = [];
  const pending: { at: number; resolve: () => void }[] = [];
  const send = (): Promise<Outcome> => {
    const p = plan(k++);
    sentAt.push(t);
    return new Promise((resolve) => pending.push({ at: t + p.ms, resolve: () => resolve(p.outcome ?? { ok: true, bytes: 10 }) }));
  };
  let done = false;
  const run = closedLoop({ ...opts, now: () => t, send, start: 0 }).finally(() => (done = true));
  while (!done) {
    // Let every user reach its next request (or the end) before time moves on.
    await new Promise((r) => setImmediate(r));
    if (done) break;
    pending.sort((x, y) => x.at - y.at);
    const next = pending.shift();
    assert.ok(next, 'the loop waits for nothing');
    t = next.at;
    next.resolve();
  }
  return { result: await run, sentAt };
}

test('closedLoop: warm-up and window are one loop; only requests started in the window are recorded', async () => {
  // Two users; the first request takes 400 ms, every other 50 ms. Warm-up 200 ms, window 200 ms.
  // One continuous loop: user 1 is busy until 400 (its request started in the warm-up: not
  // recorded), user 2 starts 4 requests in [200, 400). A warm-up that drained before the window
  // would have recorded both users from t = 400 on: 8 requests.
  const { result, sentAt } = await simulate({ connections: 2, warmupMs: 200, durationMs: 200 }, (k) => ({ ms: k === 0 ? 400 : 50 }));
  assert.deepEqual(result.ok, [50, 50, 50, 50]);
  assert.equal(result.elapsedMs, 400);
  assert.deepEqual(
    sentAt.filter((s) => s >= 200),
    [200, 250, 300, 350],
  );
  const f = loadFigures(result, 200);
  assert.equal(f.requests, 4);
  assert.equal(f.rps, 20, '4 requests started in a 0.2-s window');
});

test('closedLoop: a request started in the window is waited for and counted, however late it ends', async () => {
  const { result } = await simulate({ connections: 1, warmupMs: 100, durationMs: 100 }, (k) => ({ ms: k === 0 ? 150 : 900 }));
  // Request 0 (0–150) is warm-up; request 1 starts at 150, inside [100, 200), and ends at 1050.
  assert.deepEqual(result.all, [900]);
  assert.equal(result.elapsedMs, 1050);
});

test('closedLoop/loadFigures: failed and timed-out requests count in the latency figures; the successes are given apart', async () => {
  const fail: Outcome = { ok: false, bytes: 0, error: 'HTTP 503' };
  // A timeout that undici reported a little early still counts at the timeout.
  const timeout: Outcome = { ok: false, bytes: 0, timedOut: true, error: 'Headers Timeout Error' };
  const plan = (k: number) => (k === 1 ? { ms: 5, outcome: fail } : k === 2 ? { ms: 990, outcome: timeout } : { ms: 10 });
  const { result } = await simulate({ connections: 1, warmupMs: 0, durationMs: 1_000, timeoutMs: 1_000 }, plan);
  assert.equal(result.errors, 2);
  assert.equal(result.timeouts, 1);
  assert.equal(result.firstError, 'HTTP 503');
  assert.deepEqual(result.all.slice(0, 3), [10, 5, 1_000]);
  const f = loadFigures(result, 1_000);
  assert.equal(f.maxMs, 1_000, 'the timeout is the slowest request');
  assert.equal(f.ok.maxMs, 10);
  assert.ok(f.meanMs > f.ok.meanMs);
  assert.equal(f.requests, result.ok.length);
});

test('loadFigures: every request failing gives finite all-request figures and NaN success figures, rps 0', async () => {
  const { result } = await simulate({ connections: 1, warmupMs: 0, durationMs: 100 }, () => ({
    ms: 40,
    outcome: { ok: false, bytes: 0, error: 'HTTP 500' },
  }));
  const f = loadFigures(result, 100);
  assert.equal(f.requests, 0);
  assert.equal(f.errors, 3);
  assert.equal(f.meanMs, 40);
  assert.ok(Number.isNaN(f.ok.meanMs));
  assert.equal(f.rps, 0);
});

test('closedLoop: warm-up failures are counted apart, not as errors of the window', async () => {
  const { result } = await simulate({ connections: 1, warmupMs: 100, durationMs: 100 }, (k) => ({
    ms: 60,
    ...(k === 0 ? { outcome: { ok: false, bytes: 0, error: 'HTTP 502' } } : {}),
  }));
  assert.equal(result.warmupErrors, 1);
  assert.equal(result.errors, 0);
  assert.equal(result.firstError, undefined);
});

test('runLoad: over HTTP, a 500 answer is an error counted in the latencies and in the samples; window callbacks run once each', async () => {
  let n = 0;
  const server = createServer((_req, res) => {
    res.statusCode = n++ % 4 === 3 ? 500 : 200;
    res.end('body');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const calls: string[] = [];
  try {
    const r = await runLoad({
      url: `http://127.0.0.1:${port}/x`,
      connections: 2,
      warmupMs: 50,
      durationMs: 150,
      keepSamples: true,
      onWindowStart: () => calls.push('start'),
      onWindowEnd: () => calls.push('end'),
    });
    assert.deepEqual(calls, ['start', 'end']);
    assert.ok(r.errors > 0, 'some answers were 500');
    assert.equal(r.firstError, 'HTTP 500');
    assert.equal(r.samples?.length, r.requests + r.errors);
    assert.equal(r.durationMs, 150);
    assert.ok(r.elapsedMs >= 200);
    assert.equal(r.bytesPerRequest, 4);
  } finally {
    server.close();
  }
});
