/**
 * core/queue/job-requester.ts on the test stack's Redis: a job kept for others to share and
 * asked with dropIfAbandoned (a heatmap of two archived images) is removed when the last request
 * of this process waiting for it gives up while no worker has taken it, so an abandoned job does
 * not take a worker from the queries still waiting; a job a worker is running stays, and so
 * does one asked without it (an instance embedding, which indexes the instance).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { UnrecoverableError, Worker } from 'bullmq';
import { UPLOAD_JOB_OPTIONS } from '../../core/jobs.js';
import { JobRequester } from '../../core/queue/job-requester.js';
import { testStack } from '../helpers/stack.js';
import { uniqueName } from './indexing-fixture.js';

const name = uniqueName('job-requester');
const requester = new JobRequester<{ n: number }, { ok: boolean }>(testStack().redisUrl, name);
// Its producer connection queues nothing while it connects (a request then is 503 at once, as meant).
before(() => requester.queue.waitUntilReady());
after(async () => {
  await requester.queue.obliterate({ force: true }).catch(() => undefined);
  await requester.close();
});

const ask = (jobId: string, timeoutMs: number) =>
  requester.request({ what: 'test', timeoutMs, removeAfter: false, dropIfAbandoned: true, add: (q) => q.add('t', { n: 1 }, { jobId }) });
const code = (p: Promise<unknown>) =>
  p.then(
    () => 'answered',
    (e: { code?: string }) => e.code ?? String(e),
  );

test('a shared job nobody waits for any more, and no worker took, is removed; while someone still waits, it stays', async () => {
  assert.equal(await code(ask('alone', 300)), 'EMBED_TIMEOUT');
  assert.equal(await requester.queue.getJob('alone'), undefined, 'removed once its only waiter gave up');

  const short = code(ask('pair', 300));
  const long = code(ask('pair', 1_500));
  assert.equal(await short, 'EMBED_TIMEOUT');
  assert.equal(await requester.queue.getJobState('pair'), 'waiting', 'kept: the other request still waits for it');
  assert.equal(await long, 'EMBED_TIMEOUT');
  assert.equal(await requester.queue.getJob('pair'), undefined);
});

test('without dropIfAbandoned (an instance embedding) the job stays queued for a worker to index', async () => {
  const r = requester.request({ what: 'test', timeoutMs: 300, removeAfter: false, add: (q) => q.add('t', { n: 1 }, { jobId: 'kept' }) });
  assert.equal(await code(r), 'EMBED_TIMEOUT');
  assert.equal(await requester.queue.getJobState('kept'), 'waiting');
});

test('a shared job a worker is running when the wait runs out stays, and finishes', async () => {
  const u = new URL(testStack().redisUrl);
  const worker = new Worker<{ n: number }, { ok: boolean }>(
    name,
    async () => {
      await new Promise((r) => setTimeout(r, 1_500));
      return { ok: true };
    },
    { connection: { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null } },
  );
  try {
    // Taken by the worker before anyone waits for it; the request then joins it.
    await requester.queue.add('t', { n: 1 }, { jobId: 'running' });
    const deadline = Date.now() + 10_000;
    while ((await requester.queue.getJobState('running')) !== 'active' && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    assert.equal(await requester.queue.getJobState('running'), 'active');
    assert.equal(await code(ask('running', 300)), 'EMBED_TIMEOUT');
    const job = await requester.queue.getJob('running');
    assert.ok(job, 'not removed under the worker');
    assert.deepEqual(await job.waitUntilFinished(await requesterEvents(), 5_000), { ok: true });
  } finally {
    await worker.close();
  }
});

test('a job carrying an upload is gone from Redis as soon as it fails, and the waiting request still hears why', async () => {
  const u = new URL(testStack().redisUrl);
  const worker = new Worker<{ n: number }, { ok: boolean }>(
    name,
    async (job) => {
      if (job.data.n === 1) throw new UnrecoverableError('decode: MALFORMED: not DICOM');
      throw new Error('index unreachable'); // retried once (attempts: 2), then failed
    },
    { connection: { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null } },
  );
  try {
    for (const n of [1, 2]) {
      // removeAfter off, so that only the job's own options can remove it.
      const r = requester.request({
        what: 'test',
        timeoutMs: 10_000,
        removeAfter: false,
        add: (q) => q.add('t', { n }, UPLOAD_JOB_OPTIONS),
      });
      const err = await r.then(
        () => assert.fail('answered'),
        (e: Error & { code?: string }) => e,
      );
      assert.match(`${err.message} ${(err as { reason?: string }).reason ?? ''}`, n === 1 ? /not DICOM/ : /index unreachable/, String(err));
      assert.equal(await requester.queue.getFailedCount(), 0, `job ${n}: no failed job kept`);
    }
  } finally {
    await worker.close();
  }
});

/** The requester's own event stream (what request() waits on). */
function requesterEvents() {
  return (requester as unknown as { eventStream(): Promise<import('bullmq').QueueEvents> }).eventStream();
}
