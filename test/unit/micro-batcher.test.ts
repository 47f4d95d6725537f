import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MicroBatcher } from '../../models/runtime/micro-batcher.js';

test('items submitted together share one call, in order', async () => {
  const calls: number[][] = [];
  const b = new MicroBatcher<number, number>(async (xs) => {
    calls.push(xs);
    return xs.map((x) => x * 2);
  }, 8, 20);
  const out = await Promise.all([1, 2, 3].map((x) => b.submit(x)));
  assert.deepEqual(out, [2, 4, 6]);
  assert.deepEqual(calls, [[1, 2, 3]]);
});

test('a full batch flushes without waiting, the rest follows', async () => {
  const calls: number[][] = [];
  const b = new MicroBatcher<number, number>(async (xs) => {
    calls.push(xs);
    return xs;
  }, 2, 10_000);
  const t0 = Date.now();
  const p = [1, 2, 3, 4].map((x) => b.submit(x));
  await Promise.all(p);
  assert.ok(Date.now() - t0 < 1000, 'full batches must not wait for the timer');
  assert.deepEqual(calls, [[1, 2], [3, 4]]);
});

test('a failing batch rejects its items only', async () => {
  let n = 0;
  const b = new MicroBatcher<number, number>(async (xs) => {
    n++;
    if (n === 1) throw new Error('boom');
    return xs;
  }, 1, 0);
  await assert.rejects(b.submit(1), /boom/);
  assert.equal(await b.submit(2), 2);
});

test('close flushes pending work and refuses new work', async () => {
  const b = new MicroBatcher<number, number>(async (xs) => xs, 100, 10_000);
  const p = b.submit(7);
  await b.close();
  assert.equal(await p, 7);
  await assert.rejects(b.submit(8), /closed/);
});
