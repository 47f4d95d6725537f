/**
 * `cbmir failed --retry` after a long outage: it re-queues every retryable failure,
 * not only the newest --limit it shows, and leaves the permanent ones alone.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, test } from 'node:test';
import { UnrecoverableError, Worker } from 'bullmq';
import { queueName, type IndexJobData } from '../../core/jobs.js';
import { listAllFailed } from '../../workers/failed-jobs.js';
import { repoRoot } from '../helpers/fixtures.js';
import { testStack } from '../helpers/stack.js';
import { dropQueues, indexQueue, uniqueName, waitFor } from './indexing-fixture.js';

const run = promisify(execFile);
const ns = uniqueName('failedcli');
after(() => dropQueues(ns));

test('--retry re-queues every retryable failure beyond the ones shown; permanent ones stay', { timeout: 60_000 }, async () => {
  const queue = indexQueue(ns);
  const u = new URL(testStack().redisUrl);
  const worker = new Worker<IndexJobData>(
    queueName('index', ns),
    async (job) => {
      // Odd jobs: the index was down past the retry window; even ones: not an image.
      if (Number(job.data.sopInstanceUid.split('.').pop()) % 2) throw new Error('index unreachable: ECONNREFUSED');
      throw new UnrecoverableError('decode: NOT_AN_IMAGE: not an image: Basic Text SR');
    },
    { connection: { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null }, concurrency: 4 },
  );
  try {
    for (let i = 1; i <= 7; i++) {
      const data: IndexJobData = {
        studyInstanceUid: '1.2.3',
        seriesInstanceUid: '1.2.3.4',
        sopInstanceUid: `1.2.3.4.${i}`,
        modelVersion: 'test',
        source: 'reconciler',
        enqueuedAt: Date.now(),
      };
      await queue.add('index', data, { jobId: `job-${i}`, attempts: 1 });
    }
    await waitFor('7 failed', async () => (await queue.getFailedCount()) === 7, 30_000, 100);
    await worker.close();

    const all = await listAllFailed(queue, 2); // pages of 2: 4 pages
    assert.equal(all.length, 7);
    assert.deepEqual(all.filter((f) => f.view.retryable).length, 4);

    const out = await run(
      process.execPath,
      ['--import', 'tsx', 'workers/cli.ts', 'failed', '--retry', '--limit', '1', '--json', '--namespace', ns],
      {
        cwd: repoRoot,
        env: { ...process.env, CBMIR_REDIS_URL: testStack().redisUrl, CBMIR_LOG_LEVEL: 'silent' },
      },
    );
    const lines = out.stdout.trim().split('\n');
    const summary = JSON.parse(lines.pop()!) as Record<string, unknown>;
    assert.equal(lines.length, 1, 'one job shown (--limit 1)');
    assert.equal(summary.retried, 4);
    assert.equal(await queue.getFailedCount(), 3, 'the permanent ones stay failed');
    assert.equal(await queue.getWaitingCount(), 4);
  } finally {
    await worker.close();
    await queue.close();
  }
});
