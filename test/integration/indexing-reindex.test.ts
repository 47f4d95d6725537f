/**
 * `cbmir reindex` with real parts: images indexed with the live model version are
 * indexed again with a new version (here: the shipped ONNX file under a manifest with
 * another version string — a new model in every way the index can see) into that
 * version's own Elasticsearch index beside the old one, the alias is swapped only when
 * the new index is complete, and --drop-old removes the old version. Searches through
 * an unbound handle follow the swap.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { DEFAULT_MANIFEST, loadModelManifest } from '../../core/model-manifest.js';
import { IndexEnqueuer } from '../../core/queue/index-enqueuer.js';
import { reindexNamespace } from '../../workers/reindex-command.js';
import { ixiSampleDir, repoRoot } from '../helpers/fixtures.js';
import { testStack } from '../helpers/stack.js';
import {
  closeSharedPipeline,
  deleteLoaded,
  dropQueues,
  indexPlace,
  inProcessWorkers,
  loadAs,
  sharedPipeline,
  uniqueName,
  waitFor,
} from './indexing-fixture.js';

const run = promisify(execFile);

describe('indexing: cbmir reindex', () => {
  after(closeSharedPipeline);

  it(
    'indexes everything with a new model version beside the live one, swaps the alias, drops the old version',
    { timeout: 300_000 },
    async () => {
      const ns = uniqueName('reindex');
      const place = indexPlace('elasticsearch', ns);
      const pipeline = await sharedPipeline();
      const oldVersion = pipeline.modelVersion;
      const newVersion = `${oldVersion}-${ns}`;
      const tmp = mkdtempSync(path.join(os.tmpdir(), 'cbmir-reindex-'));
      const shipped = loadModelManifest();
      const manifest = {
        ...(JSON.parse(readFileSync(DEFAULT_MANIFEST, 'utf8')) as Record<string, unknown>),
        version: newVersion,
        file: shipped.file,
      };
      const manifestPath = path.join(tmp, 'manifest.json');
      writeFileSync(manifestPath, JSON.stringify(manifest));
      const enqueuer = new IndexEnqueuer(testStack().redisUrl, oldVersion, { namespace: ns });
      const bound = place.open();
      const reader = place.open(); // unbound: follows the live version, like the gateway
      let instances: { studyInstanceUid: string; seriesInstanceUid: string; sopInstanceUid: string }[] = [];
      const workers = await inProcessWorkers({ namespace: ns, index: bound });
      try {
        // The live version: 6 real images indexed by the usual path.
        const loaded = await loadAs(ixiSampleDir, ns, testStack().orthancDicomWebUrl);
        instances = loaded.instances;
        await enqueuer.enqueue(
          instances.map((i) => ({ ...i, sopClassUid: undefined })),
          'stow',
        );
        await waitFor('6 indexed with the live model', async () => (await bound.count()) === 6, 120_000, 300);
        assert.equal(await reader.liveVersion(), oldVersion);

        // A reindex interrupted after creating the new storage: --swap-only (the advice after a
        // failed run) must not make an empty version live, nor --drop-old delete the full one.
        const early = place.open();
        await early.ensure(shipped.dims, newVersion);
        await early.close();
        const swapOnly = () =>
          run(
            process.execPath,
            ['--import', 'tsx', 'workers/cli.ts', 'reindex', '--model', manifestPath, '--swap-only', '--drop-old', '--json'],
            {
              cwd: repoRoot,
              env: { ...process.env, ...place.env, CBMIR_DATA_DIR: tmp, CBMIR_REDIS_URL: testStack().redisUrl, CBMIR_LOG_LEVEL: 'silent' },
              timeout: 60_000,
            },
          );
        const empty = await swapOnly().then(
          () => ({ code: 0, stderr: '', stdout: '' }),
          (e: { code: number; stderr: string; stdout: string }) => e,
        );
        assert.equal(empty.code, 1, empty.stderr);
        assert.match(empty.stderr, /not swapping .*it holds 0 documents/);
        assert.equal((JSON.parse(empty.stdout.trim().split('\n').pop()!) as { swapped: boolean }).swapped, false);
        assert.equal(await reader.liveVersion(), oldVersion);
        assert.ok((await reader.versions()).includes(oldVersion), 'the live version was dropped');
        assert.equal(await reader.count(), 6);

        const cli = await run(
          process.execPath,
          [
            '--import',
            'tsx',
            'workers/cli.ts',
            'reindex',
            '--model',
            manifestPath,
            '--match',
            `StudyDescription=${ns}`,
            '--rate',
            '50',
            '--json',
          ],
          {
            cwd: repoRoot,
            env: {
              ...process.env,
              ...place.env,
              CBMIR_DATA_DIR: tmp,
              CBMIR_PACS_URL: testStack().orthancDicomWebUrl,
              CBMIR_REDIS_URL: testStack().redisUrl,
              CBMIR_PATIENT_KEY_SECRET: 'indexing-test-secret-0123456789',
              CBMIR_WORKER_CONCURRENCY: '4',
              CBMIR_LOG_LEVEL: 'silent',
            },
            timeout: 240_000,
          },
        );
        const out = JSON.parse(cli.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
        // --match covered part of the PACS: indexed, complete, but not made live (and with nothing
        // swapped, --force or --drop-old are refused with it: test/unit/reindex-command.test.ts).
        assert.equal(out.complete, true, cli.stderr);
        assert.equal(out.swapped, false);
        assert.equal(out.dropped, null);
        assert.equal(out.indexed, 6);
        assert.equal(out.retryable, 0);
        assert.equal(await reader.liveVersion(), oldVersion);

        const swap = await swapOnly();
        const swapped = JSON.parse(swap.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
        assert.equal(swapped.swapped, true, swap.stderr);
        assert.equal(swapped.model, newVersion);
        assert.equal(swapped.previous, oldVersion);
        assert.equal(swapped.dropped, oldVersion);

        assert.equal(await reader.liveVersion(), newVersion);
        assert.deepEqual(await reader.versions(), [newVersion]);
        assert.equal(await reader.count(), 6);
        for (const i of instances) {
          const doc = await reader.get(i.sopInstanceUid);
          assert.equal(doc?.modelVersion, newVersion, i.sopInstanceUid);
        }
        // --swap-only on a version that has no storage is a usage error, not a swap.
        const bad = await run(
          process.execPath,
          ['--import', 'tsx', 'workers/cli.ts', 'reindex', '--model', DEFAULT_MANIFEST, '--swap-only'],
          {
            cwd: repoRoot,
            env: { ...process.env, ...place.env, CBMIR_REDIS_URL: testStack().redisUrl, CBMIR_LOG_LEVEL: 'silent' },
          },
        ).then(
          () => ({ code: 0, stderr: '' }),
          (e: { code: number; stderr: string }) => e,
        );
        assert.equal(bad.code, 2);
        assert.match(bad.stderr, /has no storage yet/);
        assert.equal(await reader.liveVersion(), newVersion);
      } finally {
        await workers.close();
        await enqueuer.close();
        await bound.close();
        await reader.close();
        await place.cleanup();
        await dropQueues(ns);
        await dropQueues(reindexNamespace(newVersion));
        await deleteLoaded(instances);
        rmSync(tmp, { recursive: true, force: true });
      }
    },
  );
});
