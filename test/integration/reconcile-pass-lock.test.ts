/**
 * The reconciler's pass lock on the test stack's Redis: held for as long as the pass
 * runs however long that is (a full crawl outlasts the interval by hours), so no
 * second worker starts crawling beside it; left to expire afterwards; and never
 * extended once someone else holds the key (which the holder is told of).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { takePassLock } from '../../workers/reconcile/pass-lock.js';
import { testStack } from '../helpers/stack.js';

let a: Redis;
let b: Redis;
before(() => {
  a = new Redis(testStack().redisUrl);
  b = new Redis(testStack().redisUrl);
});
after(() => {
  a.disconnect();
  b.disconnect();
});

test('a pass that outlasts the lock time keeps others out until it ends, then the lock expires', async () => {
  const key = `test-pass-lock:${randomUUID()}`;
  const held = await takePassLock(a, key, 300);
  assert.ok(held);
  for (let i = 0; i < 12; i++) {
    // 1.2 s: four lock times
    assert.equal(await takePassLock(b, key, 300), undefined, `second worker got the lock after ${i * 100} ms`);
    await sleep(100);
  }
  held.release();
  // Released means no longer extended, not deleted: the next pass waits out the lock time.
  assert.ok((await a.pttl(key)) > 0, 'the key is left to expire');
  assert.equal(await takePassLock(b, key, 300), undefined, 'not free at once after the pass');
  await sleep(400);
  const next = await takePassLock(b, key, 300);
  assert.ok(next, 'the lock expired after the pass');
  next.release();
});

test('a holder never extends a lock that is no longer its own, and says once that it lost it', async () => {
  const key = `test-pass-lock:${randomUUID()}`;
  const errors: string[] = [];
  const held = await takePassLock(a, key, 300, (err) => errors.push(err.message));
  assert.ok(held);
  await b.set(key, 'someone-else', 'PX', 200);
  await sleep(500);
  assert.equal(await b.get(key), null, "the other holder's lock ran out; ours did not prolong it");
  held.release();
  assert.equal(errors.length, 1, errors.join('; '));
  assert.match(errors[0]!, /was lost .*another worker may run a pass at the same time/);
});
