/**
 * STOW → searchable, end to end with real parts: 72 real MR images (the figshare
 * sample, loaded under two dataset names so that each copy has UIDs of its own) are
 * stored through an in-process gateway with the STOW hook attached; workers consume
 * the jobs and every image becomes searchable — once with Elasticsearch, once with
 * the embedded store. "Searchable" = the instance is in the index and a kNN search
 * with its own stored vector finds it first.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createLogger } from '../../core/log.js';
import { IndexEnqueuer } from '../../core/queue/index-enqueuer.js';
import { attachStowIndexing } from '../../gateway/stow-indexing.js';
import { figshareSampleDir } from '../helpers/fixtures.js';
import { testStack } from '../helpers/stack.js';
import { startGateway } from './gateway-fixture.js';
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
  type Backend,
} from './indexing-fixture.js';

describe('indexing: STOW through the gateway → searchable', () => {
  after(closeSharedPipeline);

  for (const backend of ['elasticsearch', 'embedded'] as const satisfies readonly Backend[]) {
    it(`72 real images STOWed through the gateway are all searchable (${backend})`, { timeout: 300_000 }, async () => {
      const ns = uniqueName(`stow-${backend.slice(0, 2)}`);
      const place = indexPlace(backend, ns);
      const pipeline = await sharedPipeline();
      const enqueuer = new IndexEnqueuer(testStack().redisUrl, pipeline.modelVersion, { namespace: ns });
      const gw = await startGateway();
      attachStowIndexing(gw.gw, enqueuer, createLogger('silent', 'test'));
      const index = place.open();
      const workers = await inProcessWorkers({ namespace: ns, index });
      const loaded: { studyInstanceUid: string; sopInstanceUid: string }[] = [];
      try {
        for (const copy of ['a', 'b']) {
          const { summary, instances } = await loadAs(figshareSampleDir, `${ns}-${copy}`, `${gw.base}/dicom-web`);
          assert.deepEqual([summary.stored, summary.failed], [36, 0], JSON.stringify(summary.failures));
          loaded.push(...instances);
        }
        assert.equal(new Set(loaded.map((i) => i.sopInstanceUid)).size, 72);

        // The STOW hook runs after each answer has gone to the client, so the last
        // enqueue may still be in flight when the loader returns.
        await waitFor(
          '72 index jobs enqueued',
          async () => /cbmir_gateway_index_jobs_enqueued_total 72\b/.test(await (await fetch(`${gw.base}/metrics`)).text()),
          10_000,
          100,
        );

        await waitFor('72 indexed', async () => (await index.count()) === 72, 240_000, 500);
        const present = await index.has(loaded.map((i) => i.sopInstanceUid));
        assert.equal(present.size, 72);
        for (const inst of loaded) {
          const doc = await index.get(inst.sopInstanceUid);
          assert.ok(doc, inst.sopInstanceUid);
          assert.equal(doc.modelVersion, pipeline.modelVersion);
          assert.equal(doc.studyInstanceUid, inst.studyInstanceUid);
          assert.equal(doc.vector.length, pipeline.dims);
          const [first] = await index.knn(doc.vector, { k: 3 });
          // Two copies of one image are identical pixels: either copy may come first, at distance 0.
          assert.ok(first && first.distance < 1e-3, `nearest to ${inst.sopInstanceUid} at ${first?.distance}`);
          assert.ok(
            first.doc.sopInstanceUid === inst.sopInstanceUid ||
              (await index.knn(doc.vector, { k: 2 })).some((h) => h.doc.sopInstanceUid === inst.sopInstanceUid),
            `${inst.sopInstanceUid} is among its own nearest neighbours`,
          );
        }
        const q = workers.workers.index;
        assert.equal(await q.isRunning(), true);
      } finally {
        await workers.close();
        await gw.close();
        await enqueuer.close();
        await index.close();
        await place.cleanup();
        await dropQueues(ns);
        await deleteLoaded(loaded);
      }
    });
  }
});
