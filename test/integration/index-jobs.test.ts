/**
 * Job contracts against a real Redis through BullMQ: the ids core/jobs.ts makes are
 * accepted, dedupe a re-sent instance, and are needed (BullMQ refuses the raw form).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import { INDEX_JOB_OPTIONS, indexJobId, queueName, type IndexJobData } from '../../core/jobs.js';
import { IndexEnqueuer } from '../../core/queue/index-enqueuer.js';
import { testStack } from '../helpers/stack.js';
import { waitFor } from './indexing-fixture.js';

function connection() {
  const u = new URL(testStack().redisUrl);
  return { host: u.hostname, port: Number(u.port || 6379), maxRetriesPerRequest: null };
}

test('index jobs: one job per instance and model version, re-adds are deduplicated', async () => {
  const queue = new Queue<IndexJobData>(queueName('index', `test-${process.pid}-${Date.now()}`), { connection: connection() });
  try {
    const version = 'googlenet:0.1.0+dev'; // a version string with BullMQ's separator in it
    const data = (sop: string): IndexJobData => ({
      studyInstanceUid: '2.25.1',
      seriesInstanceUid: '2.25.1.1',
      sopInstanceUid: sop,
      modelVersion: version,
      source: 'stow',
      enqueuedAt: Date.now(),
    });
    const a = await queue.add('index', data('2.25.1.1.1'), { ...INDEX_JOB_OPTIONS, jobId: indexJobId('2.25.1.1.1', version) });
    const again = await queue.add('index', data('2.25.1.1.1'), { ...INDEX_JOB_OPTIONS, jobId: indexJobId('2.25.1.1.1', version) });
    const b = await queue.add('index', data('2.25.1.1.2'), { ...INDEX_JOB_OPTIONS, jobId: indexJobId('2.25.1.1.2', version) });
    assert.equal(again.id, a.id);
    assert.notEqual(b.id, a.id);
    assert.equal(await queue.count(), 2);
    const stored = await queue.getJob(a.id!);
    assert.equal(stored?.data.sopInstanceUid, '2.25.1.1.1');
    assert.equal(stored?.opts.attempts, INDEX_JOB_OPTIONS.attempts);
    // A ':' in a custom id is refused (BullMQ lets through only the 3-part legacy
    // repeatable-job form a:b:c, which is worse: it would be parsed as one), which is why
    // indexJobId replaces every ':'.
    await assert.rejects(queue.add('index', data('2.25.1.1.3'), { jobId: '2.25.1.1.3:0.1.0' }), /Custom Id cannot contain :/);
  } finally {
    await queue.obliterate({ force: true });
    await queue.close();
  }
});

test('index jobs: an instance sent again through STOW after its job failed is queued again; a reconciler pass leaves the failure', async () => {
  const ns = `test-refail-${process.pid}-${Date.now()}`;
  const enqueuer = new IndexEnqueuer(testStack().redisUrl, '0.4.0', { namespace: ns });
  const inst = { studyInstanceUid: '2.25.7', seriesInstanceUid: '2.25.7.1', sopInstanceUid: '2.25.7.1.1', sopClassUid: undefined };
  const id = indexJobId(inst.sopInstanceUid, '0.4.0');
  // A worker that refuses it for good (a truncated file, say), once.
  const worker = new Worker(
    queueName('index', ns),
    async () => {
      throw new UnrecoverableError('MALFORMED: truncated');
    },
    { connection: connection(), autorun: true },
  );
  try {
    assert.equal((await enqueuer.enqueue([inst], 'stow')).enqueued, 1);
    await waitFor('the job failed', async () => (await enqueuer.queue.getJobState(id)) === 'failed', 5_000, 50);
    assert.equal(await enqueuer.queue.getJobState(id), 'failed');
    await worker.close();
    await enqueuer.enqueue([inst], 'reconciler');
    assert.equal(await enqueuer.queue.getJobState(id), 'failed', 'a reconciler pass retries nothing by itself');
    await enqueuer.enqueue([inst], 'stow');
    assert.equal(await enqueuer.queue.getJobState(id), 'waiting', 'the re-sent instance waits for a worker again');
    // a waiting job still absorbs a duplicate
    await enqueuer.enqueue([inst], 'stow');
    assert.equal(await enqueuer.queue.count(), 1);
  } finally {
    await worker.close();
    await enqueuer.queue.obliterate({ force: true });
    await enqueuer.close();
  }
});
