/**
 * The reconciler with real parts: instances that reach the PACS without a job —
 * C-STOREd straight into Orthanc with dcmtk's storescu, or STOWed through the
 * gateway while Redis was down — are found by a QIDO crawl and indexed; a second
 * pass finds nothing to do; `cbmir backfill` re-enqueues a document deleted from
 * the index. Each test loads real images (the IXI sample) under a dataset name of
 * its own and reconciles only its studies (QIDO StudyDescription = that name).
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import dcmjs from 'dcmjs';
import { createLogger } from '../../core/log.js';
import { DEFAULT_MANIFEST, loadModelManifest } from '../../core/model-manifest.js';
import { PacsClient } from '../../core/pacs/client.js';
import { IndexEnqueuer } from '../../core/queue/index-enqueuer.js';
import { attachStowIndexing } from '../../gateway/stow-indexing.js';
import { Reconciler } from '../../workers/reconciler.js';
import { dicomFixturesDir, ixiSampleDir, listDicom, repoRoot } from '../helpers/fixtures.js';
import { testStack } from '../helpers/stack.js';
import { startGateway } from './gateway-fixture.js';
import {
  closeSharedPipeline,
  deleteLoaded,
  dropQueues,
  freePort,
  indexPlace,
  inProcessWorkers,
  loadAs,
  sharedPipeline,
  spawnWorker,
  uniqueName,
  waitFor,
} from './indexing-fixture.js';

const run = promisify(execFile);

/** DIMSE C-STORE straight into the test Orthanc, past the gateway (as a modality sends). */
const cStore = (...files: string[]) =>
  run('storescu', ['-aec', testStack().orthancAet, '127.0.0.1', String(testStack().orthancDicomPort), ...files]);

describe('indexing: reconciler', () => {
  after(closeSharedPipeline);

  it(
    'indexes instances C-STOREd straight into Orthanc (storescu); a second pass finds nothing; backfill restores a deleted document',
    { timeout: 240_000 },
    async () => {
      const ns = uniqueName('cstore');
      const out = mkdtempSync(path.join(os.tmpdir(), 'cbmir-cstore-'));
      const place = indexPlace('embedded', ns);
      const pipeline = await sharedPipeline();
      const enqueuer = new IndexEnqueuer(testStack().redisUrl, pipeline.modelVersion, { namespace: ns });
      const index = place.open();
      await index.ensure(pipeline.dims, pipeline.modelVersion);
      const pacs = new PacsClient({ url: testStack().orthancDicomWebUrl });
      let instances: { studyInstanceUid: string; sopInstanceUid: string }[] = [];
      const workers = await inProcessWorkers({ namespace: ns, index });
      try {
        const loaded = await loadAs(ixiSampleDir, ns, '', { mode: 'write', outDir: out });
        instances = loaded.instances;
        const files = listDicom(out).map((f) => path.join(out, f));
        assert.equal(files.length, 6);
        // DIMSE C-STORE, the way a modality sends: no gateway, no STOW hook, no job.
        await cStore(...files);
        const queue = enqueuer.queue;
        assert.equal(await queue.count(), 0, 'nothing enqueued by the C-STORE itself');

        const reconciler = new Reconciler({ pacs, index, enqueuer });
        const first = await reconciler.run({
          source: 'reconciler',
          studyQuery: { StudyDescription: ns },
          studyPageSize: 1,
          instancePageSize: 2,
          maxRequestsPerSecond: 50,
        });
        // One study per IXI subject; pages of 1 study and 2 instances exercise the paging.
        assert.equal(first.studies, 6);
        assert.equal(first.instances, 6);
        assert.equal(first.enqueued, 6);
        assert.equal(first.complete, true);
        await waitFor('6 indexed', async () => (await index.count()) === 6, 120_000, 300);
        const present = await index.has(instances.map((i) => i.sopInstanceUid));
        assert.equal(present.size, 6);

        // A structured report C-STOREd into one of those studies: never an image, so never enqueued
        // (its failed job would expire after a week and be fetched and refused again, forever).
        const sr = dcmjs.data.DicomMessage.readFile(
          new Uint8Array(readFileSync(path.join(dicomFixturesDir, 'non-image', 'comprehensive_sr_test-SR.dcm'))).buffer,
        );
        sr.dict['0020000D'] = { vr: 'UI', Value: [instances[0]!.studyInstanceUid] };
        sr.dict['0020000E'] = { vr: 'UI', Value: [`${instances[0]!.studyInstanceUid}.77`] };
        sr.dict['00080018'] = { vr: 'UI', Value: [`${instances[0]!.studyInstanceUid}.77.1`] };
        sr.meta['00020003'] = { vr: 'UI', Value: [`${instances[0]!.studyInstanceUid}.77.1`] };
        sr.dict['00081030'] = { vr: 'LO', Value: [ns] };
        const srFile = path.join(out, 'report.dcm');
        writeFileSync(srFile, Buffer.from(sr.write()));
        await cStore(srFile);

        const second = await reconciler.run({ source: 'reconciler', studyQuery: { StudyDescription: ns }, maxRequestsPerSecond: 50 });
        assert.deepEqual([second.instances, second.alreadyIndexed, second.missing, second.enqueued, second.notImages], [7, 6, 0, 0, 1]);

        // A document removed from the index (index rebuilt, say) while its completed job is
        // still remembered by the queue: `cbmir backfill` replaces the job, the worker re-indexes.
        const victim = instances[0]!.sopInstanceUid;
        assert.equal(await index.delete(victim), true);
        const cli = await run(
          process.execPath,
          [
            '--import',
            'tsx',
            'workers/cli.ts',
            'backfill',
            '--json',
            '--namespace',
            ns,
            '--match',
            `StudyDescription=${ns}`,
            '--rate',
            '50',
          ],
          {
            cwd: repoRoot,
            env: {
              ...process.env,
              ...place.env,
              CBMIR_PACS_URL: testStack().orthancDicomWebUrl,
              CBMIR_REDIS_URL: testStack().redisUrl,
              CBMIR_LOG_LEVEL: 'silent',
            },
          },
        );
        const summary = JSON.parse(cli.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
        assert.equal(summary.instances, 7, 'the six images and the report');
        assert.equal(summary.notImages, 1);
        assert.equal(summary.alreadyIndexed, 5);
        assert.equal(summary.requeued, 1);
        assert.equal(summary.complete, true);
        assert.equal(summary.checkpoint, null, 'a complete run leaves no checkpoint');
        await waitFor('the deleted document back', async () => Boolean(await index.get(victim)), 60_000, 300);

        // Backfill with CBMIR_MODEL at another version than the live one (an admin shell with a
        // newer manifest): refused, naming both, before it creates storage or queues a job.
        const otherManifest = path.join(out, 'other-manifest.json');
        writeFileSync(
          otherManifest,
          JSON.stringify({
            ...(JSON.parse(readFileSync(DEFAULT_MANIFEST, 'utf8')) as object),
            version: `${loadModelManifest().version}-other`,
            file: loadModelManifest().file,
          }),
        );
        const refused = await run(process.execPath, ['--import', 'tsx', 'workers/cli.ts', 'backfill', '--json', '--namespace', ns], {
          cwd: repoRoot,
          env: {
            ...process.env,
            ...place.env,
            CBMIR_MODEL: otherManifest,
            CBMIR_PACS_URL: testStack().orthancDicomWebUrl,
            CBMIR_REDIS_URL: testStack().redisUrl,
            CBMIR_LOG_LEVEL: 'silent',
          },
        }).then(
          () => ({ code: 0, stderr: '' }),
          (e: { code: number; stderr: string }) => e,
        );
        assert.equal(refused.code, 2, refused.stderr);
        assert.match(refused.stderr, /CBMIR_MODEL is model .*-other, but the index's live version is /);
        assert.equal((await index.versions()).length, 1, 'no storage created for the other version');
      } finally {
        await workers.close();
        await enqueuer.close();
        await pacs.close();
        await index.close();
        await place.cleanup();
        await dropQueues(ns);
        await deleteLoaded(instances);
        rmSync(out, { recursive: true, force: true });
      }
    },
  );

  it(
    'Redis down during STOW: the STOW still succeeds, the loss is counted, the reconciler indexes them when Redis is back',
    { timeout: 240_000 },
    async () => {
      const ns = uniqueName('redis-down');
      const port = await freePort();
      const redisUrl = `redis://127.0.0.1:${port}`;
      const startRedis = async (): Promise<ChildProcess> => {
        const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
          stdio: 'ignore',
        });
        const probe = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
        probe.on('error', () => undefined);
        try {
          await waitFor(
            'private redis up',
            async () => {
              await probe.connect().catch(() => undefined);
              return (await probe.ping()) === 'PONG';
            },
            10_000,
            100,
          );
        } finally {
          probe.disconnect();
        }
        return child;
      };
      const stopRedis = async (child: ChildProcess) => {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      };

      const place = indexPlace('embedded', ns);
      const pipeline = await sharedPipeline();
      let redis = await startRedis();
      const enqueuer = new IndexEnqueuer(redisUrl, pipeline.modelVersion, { namespace: ns });
      const gw = await startGateway();
      attachStowIndexing(gw.gw, enqueuer, createLogger('silent', 'test'));
      const index = place.open();
      const pacs = new PacsClient({ url: testStack().orthancDicomWebUrl });
      let instances: { studyInstanceUid: string; sopInstanceUid: string }[] = [];
      let workers: Awaited<ReturnType<typeof inProcessWorkers>> | undefined;
      try {
        await waitFor('the enqueuer connected', () => enqueuer.ping().then(() => true), 10_000, 100);
        await stopRedis(redis);

        const t0 = Date.now();
        const loaded = await loadAs(ixiSampleDir, ns, `${gw.base}/dicom-web`);
        instances = loaded.instances;
        assert.deepEqual([loaded.summary.stored, loaded.summary.failed], [6, 0], JSON.stringify(loaded.summary.failures));
        assert.ok(Date.now() - t0 < 30_000, 'a STOW never waits long for the queue');
        const metrics = await (await fetch(`${gw.base}/metrics`)).text();
        assert.match(metrics, /cbmir_gateway_index_enqueue_failures_total 6\b/);
        assert.match(metrics, /cbmir_gateway_index_jobs_enqueued_total 0\b/);
        const ready = await fetch(`${gw.base}/readyz`);
        assert.equal(ready.status, 503, 'readiness says Redis is down');

        // A pass while Redis is still down stops at the first missing instance and says why.
        const down = await new Reconciler({ pacs, index, enqueuer }).run({
          source: 'reconciler',
          studyQuery: { StudyDescription: ns },
          maxRequestsPerSecond: 50,
        });
        assert.match(down.stopped ?? '', /^queue failed: /);
        assert.deepEqual([down.complete, down.enqueued], [false, 0]);

        redis = await startRedis();
        await waitFor('the enqueuer reconnected', () => enqueuer.ping().then(() => true), 15_000, 200);
        assert.equal(await enqueuer.queue.count(), 0, 'the restarted Redis is empty: the jobs were lost');
        workers = await inProcessWorkers({ namespace: ns, index, redisUrl });
        const r = await new Reconciler({ pacs, index, enqueuer }).run({
          source: 'reconciler',
          studyQuery: { StudyDescription: ns },
          maxRequestsPerSecond: 50,
        });
        assert.deepEqual([r.instances, r.enqueued, r.enqueueFailures], [6, 6, 0]);
        await waitFor('6 indexed', async () => (await index.count()) === 6, 120_000, 300);
        assert.equal((await index.has(instances.map((i) => i.sopInstanceUid))).size, 6);
      } finally {
        await workers?.close();
        await gw.close();
        await enqueuer.close();
        await pacs.close();
        await index.close();
        await place.cleanup();
        await stopRedis(redis).catch(() => undefined);
        await deleteLoaded(instances);
      }
    },
  );

  it(
    'the worker process reconciles periodically: C-STOREd images become searchable with no job from anyone',
    { timeout: 240_000 },
    async () => {
      const ns = uniqueName('periodic');
      const out = mkdtempSync(path.join(os.tmpdir(), 'cbmir-periodic-'));
      const place = indexPlace('embedded', ns);
      // A pass every 2 s (the first 5 s after start); it crawls the whole test PACS, so it
      // may index other leftovers too — only ours are asserted.
      const worker = spawnWorker({ ...place.env, CBMIR_RECONCILE_INTERVAL_S: '2', CBMIR_RECONCILE_RATE: '100' }, ns);
      const index = place.open();
      let instances: { studyInstanceUid: string; sopInstanceUid: string }[] = [];
      try {
        const loaded = await loadAs(ixiSampleDir, ns, '', { mode: 'write', outDir: out });
        instances = loaded.instances;
        await cStore(...listDicom(out).map((f) => path.join(out, f)));
        await waitFor('worker ready', async () => worker.output().includes('worker ready'), 90_000, 200);
        await waitFor(
          'the C-STOREd images indexed by the periodic reconciler',
          async () => (await index.has(instances.map((i) => i.sopInstanceUid))).size === 6,
          180_000,
          500,
        );
        // The pass logs when it ends, which can be after our six are indexed (it crawls the whole PACS).
        await waitFor('the pass logged', async () => /reconciler pass/.test(worker.output()), 120_000, 200);
        assert.equal(worker.child.exitCode, null);
      } finally {
        await worker.stop();
        await index.close();
        await place.cleanup();
        await dropQueues(ns);
        await deleteLoaded(instances);
        rmSync(out, { recursive: true, force: true });
      }
    },
  );

  it(
    "Orthanc's change feed (fast path): a C-STOREd series is indexed with no full crawl at all, once by two worker processes",
    { timeout: 180_000 },
    async () => {
      const ns = uniqueName('changes');
      const out = mkdtempSync(path.join(os.tmpdir(), 'cbmir-changes-'));
      const place = indexPlace('embedded', ns);
      const env = {
        ...place.env,
        CBMIR_RECONCILE_INTERVAL_S: '0',
        CBMIR_RECONCILE_CHANGES_INTERVAL_S: '1',
        CBMIR_PACS_REST_URL: testStack().orthancUrl,
        CBMIR_RECONCILE_RATE: '100',
      };
      const worker = spawnWorker(env, ns);
      const second = spawnWorker(env, ns);
      const index = place.open();
      let instances: { studyInstanceUid: string; sopInstanceUid: string }[] = [];
      try {
        const loaded = await loadAs(ixiSampleDir, ns, '', { mode: 'write', outDir: out });
        instances = loaded.instances;
        await waitFor(
          'workers ready',
          async () => worker.output().includes('worker ready') && second.output().includes('worker ready'),
          90_000,
          200,
        );
        await cStore(...listDicom(out).map((f) => path.join(out, f)));
        // The test Orthanc's StableAge is 2 s: each series becomes stable, the feed names its study.
        await waitFor(
          'indexed through the change feed',
          async () => (await index.has(instances.map((i) => i.sopInstanceUid))).size === 6,
          120_000,
          500,
        );
        const both = worker.output() + second.output();
        assert.match(both, /reconciler \(change feed\)/);
        assert.doesNotMatch(both, /reconciler pass:/, 'no full crawl ran');
        // One poller per interval and a shared cursor: each of our studies reconciled once in all.
        await new Promise((r) => setTimeout(r, 2_500)); // a few more ticks of both
        const ours = new Set(instances.map((i) => i.studyInstanceUid)).size;
        const studiesReconciled = [
          ...(worker.output() + second.output()).matchAll(/"studies":(\d+),"enqueued":(\d+)[^\n]*reconciler \(change feed\)/g),
        ]
          .map((m) => Number(m[1]))
          .reduce((a, b) => a + b, 0);
        assert.ok(studiesReconciled >= ours && studiesReconciled < 2 * ours, `studies reconciled ${studiesReconciled}, ours ${ours}`);
      } finally {
        await second.stop();
        await worker.stop();
        await index.close();
        await place.cleanup();
        await dropQueues(ns);
        await deleteLoaded(instances);
        rmSync(out, { recursive: true, force: true });
      }
    },
  );
});
