/**
 * Indexing survives its parts failing, with real parts:
 *   - a worker process killed with SIGKILL in the middle of a batch: its jobs stay
 *     "active" with an expiring lock; a restarted worker reclaims them (BullMQ stalled
 *     check) and every image ends up indexed — nothing lost, nothing failed;
 *   - Elasticsearch unreachable (a TCP forwarder in front of the test ES, switched off):
 *     the index queue waits without spending attempts or fetching the instances again,
 *     and once ES answers every job is indexed, none failed;
 *   - Elasticsearch answering reads but refusing writes (a read-only block, as a disk
 *     watermark sets): jobs are not paused for ever but retried and failed as before,
 *     listed as retryable by `cbmir failed`, and indexed after `cbmir failed --retry`.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { createVectorIndex } from '../../core/index/factory.js';
import { EMBED_JOB_OPTIONS, INDEX_JOB_OPTIONS, indexJobId, queueName, type EmbedQueueJobData } from '../../core/jobs.js';
import { Queue } from 'bullmq';
import { createLogger } from '../../core/log.js';
import { IndexEnqueuer } from '../../core/queue/index-enqueuer.js';
import type { PacsClient } from '../../core/pacs/client.js';
import { attachStowIndexing } from '../../gateway/stow-indexing.js';
import { figshareSampleDir, ixiSampleDir, repoRoot } from '../helpers/fixtures.js';
import { testStack } from '../helpers/stack.js';
import { OTHER_MODEL_MAX_AGE_MS } from '../../workers/index-worker.js';
import { startGateway } from './gateway-fixture.js';
import {
  closeSharedPipeline,
  deleteLoaded,
  dropQueues,
  freePort,
  indexPlace,
  indexQueue,
  inProcessWorkers,
  loadAs,
  sharedPipeline,
  spawnWorker,
  SwitchableForwarder,
  uniqueName,
  waitFor,
} from './indexing-fixture.js';

const run = promisify(execFile);

describe('indexing: resilience', () => {
  after(closeSharedPipeline);

  it('a job for another model version is put back for a worker of that version, never completed', { timeout: 120_000 }, async () => {
    const ns = uniqueName('othermodel');
    const place = indexPlace('elasticsearch', ns);
    const pipeline = await sharedPipeline();
    const other = `${pipeline.modelVersion}-next`;
    const enqueuer = new IndexEnqueuer(testStack().redisUrl, other, { namespace: ns });
    const index = place.open();
    const workers = await inProcessWorkers({ namespace: ns, index });
    const queue = indexQueue(ns);
    const u = new URL(testStack().redisUrl);
    try {
      const sop = '1.2.826.0.1.3680043.10.1082.999.1';
      await enqueuer.enqueue(
        [{ studyInstanceUid: '1.2.3', seriesInstanceUid: '1.2.3.4', sopInstanceUid: sop, sopClassUid: undefined }],
        'stow',
      );
      const id = indexJobId(sop, other);
      await waitFor('the job is put back (delayed)', async () => (await queue.getJobState(id)) === 'delayed', 30_000, 100);
      assert.equal(await index.count(), 0);
      // One that no worker of its version has taken for longer than OTHER_MODEL_MAX_AGE_MS (an
      // upgrade's backlog) fails, naming the version, instead of being put back for ever.
      const stale = await queue.add(
        'stow',
        {
          studyInstanceUid: '1.2.3',
          seriesInstanceUid: '1.2.3.4',
          sopInstanceUid: `${sop}.2`,
          modelVersion: other,
          source: 'stow',
          enqueuedAt: Date.now() - OTHER_MODEL_MAX_AGE_MS - 60_000,
        },
        { ...INDEX_JOB_OPTIONS, jobId: indexJobId(`${sop}.2`, other) },
      );
      await waitFor('the stale job fails', async () => (await stale.getState()) === 'failed', 30_000, 100);
      assert.match((await queue.getJob(stale.id!))!.failedReason, new RegExp(`model version ${other}: no worker of that version`));
      // A /similar query for the other model too: put back, not refused as "cannot be searched".
      const embedQueue = new Queue<EmbedQueueJobData>(queueName('embed', ns), { connection: { host: u.hostname, port: Number(u.port) } });
      try {
        const job = await embedQueue.add(
          'upload',
          { kind: 'upload', dicomBase64: '', modelVersion: other, enqueuedAt: Date.now() },
          EMBED_JOB_OPTIONS,
        );
        await waitFor('the query is put back (delayed)', async () => (await job.getState()) === 'delayed', 30_000, 100);
        // …but only while the gateway may still wait for it (2 × CBMIR_EMBED_TIMEOUT_MS, 10 s by
        // default, counted by the workers in put-backs of a second): older ones fail instead of
        // circulating every second for ever, and an uploaded file does not stay in Redis with them.
        const long = { enqueuedAt: Date.now(), deferrals: 20 };
        const staleUpload = await embedQueue.add(
          'upload',
          { kind: 'upload', dicomBase64: 'AAAA', modelVersion: other, ...long },
          EMBED_JOB_OPTIONS,
        );
        const staleInstance = await embedQueue.add(
          'instance',
          {
            kind: 'instance',
            studyInstanceUid: '1.2.3',
            seriesInstanceUid: '1.2.3.4',
            sopInstanceUid: `${sop}.3`,
            modelVersion: other,
            index: true,
            ...long,
          },
          { ...EMBED_JOB_OPTIONS, jobId: `q_${indexJobId(`${sop}.3`, other)}` },
        );
        for (const stale of [staleUpload, staleInstance]) {
          await waitFor(`the stale ${stale.name} query fails`, async () => (await stale.getState()) === 'failed', 10_000, 100);
          const failed = (await embedQueue.getJob(stale.id!))!;
          assert.match(failed.failedReason, new RegExp(`^model version ${other}: no worker of that version took the job within 20000 ms`));
        }
        const kept = (await embedQueue.getJob(staleUpload.id!))!.data;
        assert.ok(kept.kind === 'upload' && kept.dicomBase64 === '', 'the uploaded file is dropped');
      } finally {
        await embedQueue.close();
      }
    } finally {
      await workers.close();
      await enqueuer.close();
      await queue.close();
      await index.close();
      await place.cleanup();
      await dropQueues(ns);
    }
  });

  it('a worker killed with SIGKILL mid-batch loses nothing: a restarted worker indexes every image', { timeout: 300_000 }, async () => {
    const ns = uniqueName('kill9');
    const place = indexPlace('elasticsearch', ns);
    const pipeline = await sharedPipeline();
    const enqueuer = new IndexEnqueuer(testStack().redisUrl, pipeline.modelVersion, { namespace: ns });
    const gw = await startGateway();
    attachStowIndexing(gw.gw, enqueuer, createLogger('silent', 'test'));
    const index = place.open();
    const queue = indexQueue(ns);
    const env = { ...place.env, CBMIR_BATCH_SIZE: '8', CBMIR_WORKER_CONCURRENCY: '8' };
    const first = spawnWorker(env, ns);
    let second: ReturnType<typeof spawnWorker> | undefined;
    let instances: { studyInstanceUid: string; sopInstanceUid: string }[] = [];
    try {
      await waitFor('worker 1 ready', async () => first.output().includes('worker ready'), 90_000, 200);
      await index.ensure(pipeline.dims, pipeline.modelVersion);
      const loaded = await loadAs(figshareSampleDir, ns, `${gw.base}/dicom-web`);
      instances = loaded.instances;
      assert.equal(loaded.summary.stored, 36);

      // Mid-batch: some images written, others being processed right now.
      await waitFor('a partly done batch', async () => (await index.count()) >= 1 && (await queue.getActiveCount()) > 0, 120_000, 50);
      first.child.kill('SIGKILL');
      await new Promise((r) => first.child.once('exit', r));
      const atKill = await index.count();
      const activeAtKill = await queue.getActiveCount();
      assert.ok(atKill < 36, `killed before the end (${atKill} indexed)`);
      assert.ok(activeAtKill > 0, 'jobs were in flight when the worker died');

      second = spawnWorker(env, ns);
      // The dead worker's locks expire (30 s), the stalled check hands its jobs back.
      await waitFor('all 36 indexed after the restart', async () => (await index.count()) === 36, 180_000, 500);
      assert.equal((await index.has(instances.map((i) => i.sopInstanceUid))).size, 36);
      assert.equal(await queue.getFailedCount(), 0, 'no job failed');
      assert.equal(second.child.exitCode, null, 'the restarted worker is still running');
    } finally {
      await first.stop();
      await second?.stop();
      await gw.close();
      await enqueuer.close();
      await queue.close();
      await index.close();
      await place.cleanup();
      await dropQueues(ns);
      await deleteLoaded(instances);
    }
  });

  it(
    'Elasticsearch unreachable: the index queue waits (no attempts spent, nothing fetched again), then indexes all when it answers',
    { timeout: 240_000 },
    async () => {
      const ns = uniqueName('es-down');
      const es = new URL(testStack().esUrl);
      const forwarder = new SwitchableForwarder(await freePort(), { host: es.hostname, port: Number(es.port) });
      await forwarder.up();
      const place = indexPlace('elasticsearch', ns, `http://127.0.0.1:${forwarder.port}`);
      const direct = createVectorIndex({ es: { url: testStack().esUrl, index: place.env.CBMIR_ES_INDEX! }, dataDir: '.' });
      const pipeline = await sharedPipeline();
      const enqueuer = new IndexEnqueuer(testStack().redisUrl, pipeline.modelVersion, { namespace: ns });
      const queue = indexQueue(ns);
      const index = place.open();
      let fetches = 0;
      // Counts the instances fetched from the PACS: an outage of the index must not cost fetches.
      const wrapPacs = (pacs: PacsClient) =>
        new Proxy(pacs, {
          get(target, key) {
            const v = Reflect.get(target, key, target) as unknown;
            if (key === 'retrieveInstance')
              return (...args: Parameters<PacsClient['retrieveInstance']>) => (fetches++, target.retrieveInstance(...args));
            return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
          },
        });
      // creates the index while ES is reachable
      const workers = await inProcessWorkers({ namespace: ns, index, concurrency: 4, wrapPacs, indexDownPauseMs: 500 });
      let instances: { studyInstanceUid: string; seriesInstanceUid: string; sopInstanceUid: string }[] = [];
      try {
        await direct.ensure(pipeline.dims, pipeline.modelVersion);
        // Straight into the PACS (no hook): this test enqueues itself, after ES went away.
        const loaded = await loadAs(ixiSampleDir, ns, testStack().orthancDicomWebUrl);
        instances = loaded.instances;
        assert.equal(loaded.summary.stored, 6);

        await forwarder.down();
        const [last, ...rest] = [...instances].reverse();
        const r = await enqueuer.enqueue(
          rest.map((i) => ({ ...i, sopClassUid: undefined })),
          'reconciler',
        );
        assert.equal(r.enqueued, 5);
        // Even a job allowed a single attempt does not fail: waiting for the index is not an attempt.
        await queue.add(
          'reconciler',
          { ...last!, modelVersion: pipeline.modelVersion, source: 'reconciler', enqueuedAt: Date.now() },
          { ...INDEX_JOB_OPTIONS, attempts: 1, jobId: indexJobId(last!.sopInstanceUid, pipeline.modelVersion) },
        );
        await waitFor('the first instances fetched', async () => fetches > 0, 60_000, 50);
        // Eight pauses long: with retries and backoff (2 s, 4 s) every job would have been fetched again by now.
        await new Promise((res) => setTimeout(res, 4_000));
        assert.ok(fetches <= 4, `fetched ${fetches} times: at most the jobs in flight when the index went away`);
        assert.equal(await direct.count(), 0, 'nothing written while ES is unreachable');
        assert.equal(await queue.getFailedCount(), 0, 'nothing failed');
        assert.equal(await queue.getDelayedCount(), 0, 'nothing waiting for a retry');
        const waiting = await queue.getJobs(['waiting', 'active', 'prioritized']);
        assert.equal(waiting.length, 6);
        assert.deepEqual(
          waiting.map((j) => j.attemptsMade),
          [0, 0, 0, 0, 0, 0],
          'no attempt spent',
        );

        await forwarder.up();
        await waitFor('6 indexed after ES returned', async () => (await direct.count()) === 6, 120_000, 500);
        assert.equal((await direct.has(instances.map((i) => i.sopInstanceUid))).size, 6);
        assert.equal(await queue.getFailedCount(), 0);
        assert.equal((await queue.getCompleted()).length, 6);
      } finally {
        await forwarder.up().catch(() => undefined);
        await workers.close();
        await enqueuer.close();
        await queue.close();
        await index.close();
        await direct.close();
        await forwarder.down();
        await place.cleanup();
        await dropQueues(ns);
        await deleteLoaded(instances);
      }
    },
  );
  it(
    'Elasticsearch that reads but refuses writes (a read-only block): jobs fail with retries, not paused for ever; `cbmir failed --retry` indexes them once it is lifted',
    { timeout: 240_000 },
    async () => {
      const ns = uniqueName('es-ro');
      const place = indexPlace('elasticsearch', ns);
      const base = place.env.CBMIR_ES_INDEX!;
      const direct = createVectorIndex({ es: { url: testStack().esUrl, index: base }, dataDir: '.' });
      const pipeline = await sharedPipeline();
      const queue = indexQueue(ns);
      const index = place.open();
      const workers = await inProcessWorkers({ namespace: ns, index, indexDownPauseMs: 500 });
      // The block a flood-stage disk watermark sets: writes answer 429, reads and counts still work.
      const block = (on: boolean) =>
        fetch(`${testStack().esUrl}/${base}*/_settings`, {
          method: 'PUT',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ 'index.blocks.read_only_allow_delete': on ? true : null }),
        }).then(async (r) => assert.equal(r.status, 200, await r.text()));
      let instances: { studyInstanceUid: string; seriesInstanceUid: string; sopInstanceUid: string }[] = [];
      try {
        const loaded = await loadAs(ixiSampleDir, ns, testStack().orthancDicomWebUrl);
        instances = loaded.instances;
        const one = instances[0]!;
        await block(true);
        await queue.add(
          'reconciler',
          { ...one, modelVersion: pipeline.modelVersion, source: 'reconciler', enqueuedAt: Date.now() },
          { ...INDEX_JOB_OPTIONS, attempts: 2, jobId: indexJobId(one.sopInstanceUid, pipeline.modelVersion) },
        );
        await waitFor('the job failed after its two attempts', async () => (await queue.getFailedCount()) === 1, 60_000, 200);
        const [failed] = await queue.getFailed();
        assert.equal(failed?.attemptsMade, 2, 'both attempts spent: the queue was not paused');
        assert.match(failed?.failedReason ?? '', /read-only|cluster_block_exception/);

        const cliEnv = { ...process.env, CBMIR_REDIS_URL: testStack().redisUrl, CBMIR_LOG_LEVEL: 'silent' };
        const listed = await run(process.execPath, ['--import', 'tsx', 'workers/cli.ts', 'failed', '--json', '--namespace', ns], {
          cwd: repoRoot,
          env: cliEnv,
        });
        const lines = listed.stdout
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as Record<string, unknown>);
        assert.deepEqual(
          lines.map((l) => [l.sopInstanceUid ?? 'summary', l.retryable, l.step]),
          [
            [one.sopInstanceUid, true, 'transient'],
            ['summary', 1, undefined],
          ],
        );
        await block(false);
        const retried = await run(process.execPath, ['--import', 'tsx', 'workers/cli.ts', 'failed', '--retry', '--namespace', ns], {
          cwd: repoRoot,
          env: cliEnv,
        });
        assert.match(retried.stdout, /1 re-queued/);
        await waitFor('the retried job indexed', async () => (await direct.count()) === 1, 120_000, 500);
        assert.equal(await queue.getFailedCount(), 0);
      } finally {
        await block(false).catch(() => undefined);
        await workers.close();
        await queue.close();
        await index.close();
        await direct.close();
        await place.cleanup();
        await dropQueues(ns);
        await deleteLoaded(instances);
      }
    },
  );
});
