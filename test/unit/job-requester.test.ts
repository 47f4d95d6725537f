/**
 * core/queue/job-requester.ts: what a client is told when its embed job fails. A decode refusal
 * is about the client's own image and keeps its reason; a failure of the service (an address, an
 * index name) is told generically, its reason kept for the log with UIDs blanked.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { Job, Queue } from 'bullmq';
import { HttpProblem } from '../../core/errors.js';
import { JobRequester, JobUnavailable } from '../../core/queue/job-requester.js';

// Nothing listens on port 1: the producer connection fails at once and is never used, as the
// event stream is stood in for below (unit tests have no Redis).
const requester = new JobRequester<unknown, unknown>('redis://127.0.0.1:1', 'unit-job-requester');
(requester as unknown as { events: Promise<unknown> }).events = Promise.resolve({ close: async () => undefined });
after(() => requester.close());

const failingWith = (message: string) =>
  requester.request({
    what: 'embedding',
    timeoutMs: 5_000,
    removeAfter: true,
    add: async () =>
      ({
        waitUntilFinished: async () => {
          throw new Error(message);
        },
        remove: async () => undefined,
      }) as unknown as Job,
  });

test('a job failed for the service’s reasons: a generic detail, the reason for the log without UIDs', async () => {
  await assert.rejects(
    failingWith('fetch (WADO-RS): connect ECONNREFUSED 10.9.8.7:8042 (index cbmir-vectors-v1) 1.2.826.0.1.3680043.2.1'),
    (e: unknown) => {
      assert.ok(e instanceof JobUnavailable);
      assert.equal(e.code, 'EMBED_UNAVAILABLE');
      assert.equal(e.toBody().detail, 'the embedding job failed');
      assert.equal(typeof e.toBody().retryAfter, 'number');
      assert.doesNotMatch(JSON.stringify(e.toBody()), /10\.9\.8\.7|cbmir-vectors/);
      assert.equal(e.reason, 'fetch (WADO-RS): connect ECONNREFUSED 10.9.8.7:8042 (index cbmir-vectors-v1) <uid>');
      return true;
    },
  );
});

test('a decode refusal keeps its reason: the image is the client’s', async () => {
  await assert.rejects(failingWith('decode: MALFORMED: pixel data shorter than rows × columns'), (e: unknown) => {
    assert.ok(e instanceof HttpProblem && !(e instanceof JobUnavailable));
    assert.equal(e.code, 'EMBED_UNAVAILABLE');
    assert.match(e.detail ?? '', /decode: MALFORMED: pixel data shorter than rows × columns/);
    return true;
  });
});

test('queueing refused: no Redis address reaches the client', async () => {
  const refused = requester.request({
    what: 'embedding',
    timeoutMs: 5_000,
    removeAfter: true,
    add: async (_queue: Queue) => {
      throw new Error('connect ECONNREFUSED 10.9.8.7:6379');
    },
  });
  await assert.rejects(refused, (e: unknown) => {
    assert.ok(e instanceof JobUnavailable);
    assert.doesNotMatch(JSON.stringify(e.toBody()), /10\.9\.8\.7/);
    assert.match(e.reason, /ECONNREFUSED 10\.9\.8\.7:6379/);
    return true;
  });
});

test('UIDs are blanked whole: next to letters or "_", and at the end of a long reason; IPv4 addresses stay', () => {
  const uid = '1.2.826.0.1.3680043.8.498.12345678901234567890';
  const e = new JobUnavailable('the embedding job failed', `sop_${uid}: not found; study=${uid}x; at 10.0.0.1:8042; 2.25.1234567890123`, 1);
  assert.equal(e.reason, 'sop_<uid>: not found; study=<uid>x; at 10.0.0.1:8042; <uid>');
  // The UID straddles the 500-character mark, where a cut before blanking left "1.2.826.0".
  const long = new JobUnavailable('the embedding job failed', `${'x'.repeat(490)} ${uid}`, 1);
  assert.equal(long.reason, `${'x'.repeat(490)} <uid>`);
  assert.equal(new JobUnavailable('failed', 'y'.repeat(600), 1).reason.length, 500);
});
