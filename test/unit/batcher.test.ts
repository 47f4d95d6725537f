import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Batcher, KeyFailure } from '../../core/batcher.js';

/** A backend whose calls the test completes by hand, recording what each call asked. */
function manualBackend() {
  const calls: Array<{ keys: string[]; payloads: string[]; done: (m: Map<string, number>) => void; fail: (e: Error) => void }> = [];
  const load = (batch: ReadonlyArray<{ key: string; payload: string }>) =>
    new Promise<Map<string, number>>((resolve, reject) => {
      calls.push({ keys: batch.map((b) => b.key), payloads: batch.map((b) => b.payload), done: resolve, fail: reject });
    });
  return { calls, load };
}

const tick = () => new Promise((r) => setImmediate(r));

test('Batcher: keys asked in one tick go out in one call; a lone key does not wait for company', async () => {
  const be = manualBackend();
  const b = new Batcher<string, number, string>({ load: be.load, missing: -1, maxBatch: 10, maxInFlight: 2 });
  const p = Promise.all([b.get('a', 'pa'), b.get('b', 'pb'), b.get('a', 'pa2')]);
  await tick();
  assert.equal(be.calls.length, 1);
  assert.deepEqual(be.calls[0]!.keys, ['a', 'b'], 'a repeated key is asked once');
  assert.deepEqual(be.calls[0]!.payloads, ['pa', 'pb'], 'the first asker’s payload travels with the key');
  be.calls[0]!.done(new Map([['a', 1]]));
  assert.deepEqual(await p, [1, -1, 1], 'a key the backend does not answer gets `missing`');
});

test('Batcher: while maxInFlight calls run, later keys queue and go out together when one finishes', async () => {
  const be = manualBackend();
  const b = new Batcher<string, number, string>({ load: be.load, missing: 0, maxBatch: 3, maxInFlight: 1 });
  const first = b.get('a', '');
  await tick();
  const later = ['b', 'c', 'd', 'e', 'a'].map((k) => b.get(k, ''));
  await tick();
  assert.equal(be.calls.length, 1, 'nothing else starts while the one allowed call runs');
  be.calls[0]!.done(new Map([['a', 1]]));
  await tick();
  assert.equal(be.calls.length, 2);
  assert.deepEqual(be.calls[1]!.keys, ['b', 'c', 'd'], 'the queue goes out in one call of at most maxBatch keys');
  assert.equal(await first, 1);
  assert.equal(await later[4], 1, "a key that joined the running call got that call's answer");
  be.calls[1]!.done(new Map([['b', 2], ['c', 3], ['d', 4]]));
  await tick();
  assert.deepEqual(be.calls[2]!.keys, ['e']);
  be.calls[2]!.done(new Map([['e', 5]]));
  assert.deepEqual(await Promise.all(later), [2, 3, 4, 5, 1]);
  assert.equal(b.calls, 3);
});

test('Batcher: a failed call rejects its own waiters only; later keys are asked afresh', async () => {
  const be = manualBackend();
  const b = new Batcher<string, number, string>({ load: be.load, missing: 0, maxBatch: 5, maxInFlight: 1 });
  const failed = b.get('a', '');
  await tick();
  const queued = b.get('b', '');
  await tick();
  be.calls[0]!.fail(new Error('PACS down'));
  await assert.rejects(failed, /PACS down/);
  await tick();
  assert.deepEqual(be.calls[1]!.keys, ['b']);
  be.calls[1]!.done(new Map([['b', 7]]));
  assert.equal(await queued, 7);
  const again = b.get('a', '');
  await tick();
  assert.deepEqual(be.calls[2]!.keys, ['a'], 'the failed key is not remembered');
  be.calls[2]!.done(new Map([['a', 9]]));
  assert.equal(await again, 9);
});

test("Batcher: a KeyFailure in an answer rejects that key only; the batch's other keys get their values", async () => {
  const b = new Batcher<string, number, string>({
    load: async (batch) => new Map(batch.map(({ key }) => [key, key.startsWith('bad') ? new KeyFailure(new Error(`refused ${key}`)) : key.length])),
    missing: 0,
    maxBatch: 10,
    maxInFlight: 1,
  });
  const [good, bad, other] = [b.get('good', ''), b.get('bad-caller|s1', ''), b.get('another', '')];
  await assert.rejects(bad, /refused bad-caller\|s1/);
  assert.deepEqual(await Promise.all([good, other]), [4, 7]);
  assert.equal(b.calls, 1, 'all three were in one call');
});

test('Batcher: rejects nonsense limits', () => {
  assert.throws(() => new Batcher({ load: async () => new Map(), missing: 0, maxBatch: 0, maxInFlight: 1 }), RangeError);
});
