/**
 * `cbmir status` on the test stack's Redis and Elasticsearch: queue counts and worker
 * connections as BullMQ keeps them, the index's live version and document count, and
 * exit 1 (with the Redis password kept out of the output) when a part does not answer.
 */
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, test } from 'node:test';
import { UnrecoverableError, Worker } from 'bullmq';
import { queueName, type IndexJobData } from '../../core/jobs.js';
import { ElasticsearchIndex } from '../../core/index/elasticsearch/es-index.js';
import type { Status } from '../../workers/status-command.js';
import { repoRoot } from '../helpers/fixtures.js';
import { testStack } from '../helpers/stack.js';
import { dropQueues, indexQueue, uniqueName, waitFor } from './indexing-fixture.js';

const run = promisify(execFile);
const ns = uniqueName('statuscli');
const esBase = uniqueName('cbmir-test-status');
after(async () => {
  await dropQueues(ns);
  await fetch(`${testStack().esUrl}/${esBase}-*`, { method: 'DELETE' });
});

async function status(env: Record<string, string>): Promise<{ code: number; status: Status; stderr: string }> {
  const args = ['--import', 'tsx', 'workers/cli.ts', 'status', '--json', '--namespace', ns];
  const opts = { cwd: repoRoot, env: { ...process.env, CBMIR_LOG_LEVEL: 'silent', ...env } };
  try {
    const out = await run(process.execPath, args, opts);
    return { code: 0, status: JSON.parse(out.stdout) as Status, stderr: out.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, status: JSON.parse(e.stdout) as Status, stderr: e.stderr };
  }
}

test('queue counts, worker connections and the live index, as an operator reads them', { timeout: 90_000 }, async () => {
  const stack = { CBMIR_REDIS_URL: testStack().redisUrl, CBMIR_ES_URL: testStack().esUrl, CBMIR_ES_INDEX: esBase };
  const empty = await status(stack);
  assert.equal(empty.code, 0, empty.stderr);
  assert.deepEqual(empty.status.index, { backend: 'elasticsearch', documents: 0, versions: [] });
  assert.deepEqual(
    empty.status.queues.map((q) => q.queue),
    [queueName('index', ns), queueName('embed', ns)],
  );
  // Asked read-only: a namespace nothing was ever queued in is said to be missing, and stays so.
  assert.deepEqual(
    empty.status.queues.map((q) => (q as { exists?: boolean }).exists),
    [false, false],
  );
  assert.match(empty.stderr, /no queue .* in Redis; check --namespace/);
  const probe = new Redis(testStack().redisUrl);
  try {
    assert.deepEqual(await probe.keys(`bull:${queueName('index', ns)}:*`), [], 'status wrote nothing to Redis');
  } finally {
    probe.disconnect();
  }

  const queue = indexQueue(ns);
  const job = (i: number): IndexJobData => ({
    studyInstanceUid: '1.2.3',
    seriesInstanceUid: '1.2.3.4',
    sopInstanceUid: `1.2.3.4.${i}`,
    modelVersion: 'test',
    source: 'reconciler',
    enqueuedAt: Date.now(),
  });
  for (let i = 1; i <= 3; i++) await queue.add('index', job(i), { jobId: `job-${i}`, attempts: 1 });
  await queue.add('index', job(4), { jobId: 'job-4', delay: 600_000 });
  const index = new ElasticsearchIndex({ url: testStack().esUrl, base: esBase });
  await index.ensure(4, 'status-v1');
  await index.upsert(
    [1, 2].map((i) => ({ ...job(i), modelVersion: 'status-v1', frame: 1, indexedAt: new Date().toISOString(), vector: [i, 0, 0, 1] })),
    { refresh: 'wait_for' },
  );
  await index.close();

  const queued = await status(stack);
  assert.equal(queued.code, 0, queued.stderr);
  const q = queued.status.queues[0]!;
  assert.deepEqual([q.counts?.waiting, q.counts?.delayed, q.counts?.active, q.counts?.failed, q.workers], [3, 1, 0, 0, 0]);
  assert.deepEqual(queued.status.index, { backend: 'elasticsearch', liveVersion: 'status-v1', documents: 2, versions: ['status-v1'] });

  // A worker that refuses every job: the three waiting ones fail, and it is counted while connected.
  const u = new URL(testStack().redisUrl);
  const worker = new Worker<IndexJobData>(
    queueName('index', ns),
    async () => {
      throw new UnrecoverableError('decode: NOT_AN_IMAGE: not an image');
    },
    { connection: { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null } },
  );
  try {
    await waitFor('3 failed', async () => (await queue.getFailedCount()) === 3, 30_000, 100);
    const failed = await status(stack);
    const f = failed.status.queues[0]!;
    assert.deepEqual([f.counts?.waiting, f.counts?.delayed, f.counts?.failed], [0, 1, 3]);
    assert.ok((f.workers ?? 0) >= 1, `a worker connection is seen (${f.workers})`);
  } finally {
    await worker.close();
    await queue.close();
  }
});

test('a Redis that does not answer: exit 1, every queue marked unreachable, no password in the output', { timeout: 60_000 }, async () => {
  const r = await status({ CBMIR_REDIS_URL: 'redis://:s3cret-pw@127.0.0.1:1', CBMIR_ES_URL: testStack().esUrl, CBMIR_ES_INDEX: esBase });
  assert.equal(r.code, 1);
  assert.equal(r.status.ok, false);
  assert.ok(r.status.queues.every((q) => q.error && !q.counts));
  assert.equal(r.status.index.error, undefined, 'the index still answers');
  assert.ok(!JSON.stringify(r.status).includes('s3cret-pw') && !r.stderr.includes('s3cret-pw'));
});

test('an embedded index that is not where CBMIR_DATA_DIR says: reported missing, not created empty', { timeout: 60_000 }, async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'cbmir-status-'));
  const r = await status({ CBMIR_REDIS_URL: testStack().redisUrl, CBMIR_ES_URL: '', CBMIR_DATA_DIR: dataDir });
  assert.equal(r.code, 1);
  assert.match(r.status.index.error ?? '', /^no embedded index at .*cbmir-vectors\.sqlite \(CBMIR_DATA_DIR\)/);
  assert.deepEqual(readdirSync(dataDir), []);
  assert.ok(
    r.status.queues.every((q) => q.counts),
    'the queues still answer',
  );
});
