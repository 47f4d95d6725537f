/**
 * The reconciler deletes documents whose instance the PACS no longer has, so /similar never
 * returns a deleted image (a 404 behind its thumbnail and viewer link) or a moved one under its
 * old series: against a scripted PACS (QIDO answers) and the test stack's Redis, with the
 * Elasticsearch and embedded indexes alike.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DicomJsonDataset } from '../../core/dicom-json.js';
import type { VectorDoc, VectorIndex } from '../../core/index/types.js';
import type { PacsClient } from '../../core/pacs/client.js';
import { IndexEnqueuer } from '../../core/queue/index-enqueuer.js';
import { indexJobId } from '../../core/jobs.js';
import { UnrecoverableError, Worker } from 'bullmq';
import { Reconciler } from '../../workers/reconciler.js';
import { testStack } from '../helpers/stack.js';
import { unitVectors } from '../unit/index-suite.js';
import { dropQueues, indexPlace, uniqueName, waitFor } from './indexing-fixture.js';

const DIMS = 8;
const VERSION = '0.0.0-prune';
const MR = '1.2.840.10008.5.1.4.1.1.4';

/** study → series → SOPs, as QIDO lists them. */
type Archive = Record<string, Record<string, string[]>>;

function scriptedPacs(archive: Archive, hidden: string[] = [], noSeries = false): PacsClient {
  const ds = (study: string, series: string, sop: string): DicomJsonDataset => ({
    '0020000D': { vr: 'UI', Value: [study] },
    ...(noSeries ? {} : { '0020000E': { vr: 'UI', Value: [series] } }),
    '00080018': { vr: 'UI', Value: [sop] },
    '00080016': { vr: 'UI', Value: [MR] },
  });
  return {
    async qido(path: string, params: Record<string, string | number | undefined>): Promise<DicomJsonDataset[]> {
      if (Number(params.offset ?? 0) > 0) return [];
      if (path === '/studies') {
        // the paged list may leave studies out (hidden); asked for by UID, the PACS has them
        const asked = params.StudyInstanceUID ? String(params.StudyInstanceUID).split(',') : undefined;
        const studies = asked
          ? Object.keys(archive).filter((s) => asked.includes(s))
          : Object.keys(archive).filter((s) => !hidden.includes(s));
        return studies.map((s) => ({ '0020000D': { vr: 'UI', Value: [s] } }));
      }
      const study = /^\/studies\/([\d.]+)\/instances$/.exec(path)?.[1];
      const series = study ? archive[study] : undefined;
      if (!study || !series) return [];
      return Object.entries(series).flatMap(([se, sops]) => sops.map((sop) => ds(study, se, sop)));
    },
  } as unknown as PacsClient;
}

function doc(study: string, series: string, sop: string, vector: Float32Array, indexedAt = '2026-01-01T00:00:00.000Z'): VectorDoc {
  return { sopInstanceUid: sop, studyInstanceUid: study, seriesInstanceUid: series, modelVersion: VERSION, indexedAt, vector };
}

for (const backend of ['embedded', 'elasticsearch'] as const) {
  describe(`reconciler: pruning what the PACS no longer has (${backend})`, () => {
    async function withSetup(fn: (ix: VectorIndex, enqueuer: IndexEnqueuer) => Promise<void>): Promise<void> {
      const ns = uniqueName(`prune-${backend}`);
      const place = indexPlace(backend, ns);
      const ix = place.open();
      const enqueuer = new IndexEnqueuer(testStack().redisUrl, VERSION, { namespace: ns });
      try {
        await ix.ensure(DIMS, VERSION);
        await fn(ix, enqueuer);
      } finally {
        await enqueuer.close();
        await ix.close();
        await place.cleanup();
        await dropQueues(ns);
      }
    }

    it('deletes instances gone from their study, moved to another series, and studies gone whole; keeps what was indexed meanwhile', async () => {
      await withSetup(async (ix, enqueuer) => {
        const v = unitVectors(8, DIMS, 3);
        const future = new Date(Date.now() + 3_600_000).toISOString(); // indexed after the PACS was listed
        await ix.upsert(
          [
            doc('2.25.1', '2.25.1.1', '2.25.1.1.1', v[0]!),
            doc('2.25.1', '2.25.1.1', '2.25.1.1.2', v[1]!),
            doc('2.25.1', '2.25.1.1', '2.25.1.1.3', v[2]!), // deleted from the PACS
            doc('2.25.1', '2.25.1.1', '2.25.1.2.4', v[3]!), // the PACS lists it in series 2.25.1.2 now
            doc('2.25.1', '2.25.1.1', '2.25.1.1.5', v[4]!, future), // stored while the pass ran
            doc('2.25.2', '2.25.2.1', '2.25.2.1.1', v[5]!), // its whole study deleted
            doc('2.25.2', '2.25.2.1', '2.25.2.1.2', v[6]!),
            doc('2.25.3', '2.25.3.1', '2.25.3.1.1', v[7]!),
          ],
          { refresh: 'wait_for' },
        );
        const pacs = scriptedPacs({
          '2.25.1': { '2.25.1.1': ['2.25.1.1.1', '2.25.1.1.2'], '2.25.1.2': ['2.25.1.2.4'] },
          '2.25.3': { '2.25.3.1': ['2.25.3.1.1'] },
        });
        const r = await new Reconciler({ pacs, index: ix, enqueuer }).run({ source: 'reconciler', maxRequestsPerSecond: 1000 });
        assert.equal(r.complete, true, JSON.stringify(r));
        assert.equal(r.pruned, 4, JSON.stringify(r));
        assert.equal(r.prunedStudies, 1);
        assert.equal(r.pruneRefused, undefined);
        if (backend === 'elasticsearch') await new Promise((res) => setTimeout(res, 1_100)); // the next refresh
        const left = await ix.has([
          '2.25.1.1.1',
          '2.25.1.1.2',
          '2.25.1.1.3',
          '2.25.1.2.4',
          '2.25.1.1.5',
          '2.25.2.1.1',
          '2.25.2.1.2',
          '2.25.3.1.1',
        ]);
        assert.deepEqual([...left].sort(), ['2.25.1.1.1', '2.25.1.1.2', '2.25.1.1.5', '2.25.3.1.1']);
        const hits = await ix.knn(v[5]!, { k: 8 });
        assert.ok(
          hits.every((h) => h.doc.studyInstanceUid !== '2.25.2'),
          'a deleted study is not found',
        );

        // The moved instance is missing now: the next pass queues it (under its new series).
        const again = await new Reconciler({ pacs, index: ix, enqueuer }).run({ source: 'reconciler', maxRequestsPerSecond: 1000 });
        assert.equal(again.enqueued, 1, JSON.stringify(again));
        assert.equal((await enqueuer.queue.getJobs(['waiting']))[0]?.data.seriesInstanceUid, '2.25.1.2');
        assert.equal(again.pruned, 0);
      });
    });

    it('nothing is deleted on a listing it cannot trust: no study at all, a study missing from the paged list only, instances listed without their series', async () => {
      await withSetup(async (ix, enqueuer) => {
        const v = unitVectors(4, DIMS, 9);
        await ix.upsert(
          [
            doc('2.25.5', '2.25.5.1', '2.25.5.1.1', v[0]!),
            doc('2.25.5', '2.25.5.1', '2.25.5.1.2', v[1]!),
            doc('2.25.6', '2.25.6.1', '2.25.6.1.1', v[2]!),
          ],
          { refresh: 'wait_for' },
        );
        const run = (pacs: PacsClient) =>
          new Reconciler({ pacs, index: ix, enqueuer }).run({ source: 'reconciler', maxRequestsPerSecond: 1000 });
        // A PACS (or a login) that lists nothing: not "every study was deleted".
        const empty = await run(scriptedPacs({}));
        assert.equal(empty.pruned, 0);
        assert.match(empty.pruneRefused ?? '', /it lists none.*nothing deleted/);
        // 2.25.6 left out of the paged list (a deletion shifted the pages) but there when asked by UID.
        const paged = await run(
          scriptedPacs({ '2.25.5': { '2.25.5.1': ['2.25.5.1.1', '2.25.5.1.2'] }, '2.25.6': { '2.25.6.1': ['2.25.6.1.1'] } }, ['2.25.6']),
        );
        assert.deepEqual([paged.pruned, paged.prunedStudies], [0, 0]);
        // Kept because the PACS confirmed it by UID, not because the pruning step gave up.
        assert.equal(paged.pruneRefused, undefined);
        assert.equal(await ix.count(), 3);
        // Instances listed without SeriesInstanceUID: still listed, so their documents stay.
        const noSeries = await run(
          scriptedPacs({ '2.25.5': { '2.25.5.1': ['2.25.5.1.1', '2.25.5.1.2'] }, '2.25.6': { '2.25.6.1': ['2.25.6.1.1'] } }, [], true),
        );
        assert.equal(noSeries.pruned, 0);
        assert.equal(await ix.count(), 3);
      });
    });

    it("a job that failed for want of a worker of its version is queued again by that version's reconciler", async () => {
      await withSetup(async (ix, enqueuer) => {
        const inst = { studyInstanceUid: '2.25.7', seriesInstanceUid: '2.25.7.1', sopInstanceUid: '2.25.7.1.1', sopClassUid: MR };
        const id = indexJobId(inst.sopInstanceUid, VERSION);
        const u = new URL(testStack().redisUrl);
        const w = new Worker(
          enqueuer.queue.name,
          async () => {
            throw new UnrecoverableError(
              `model version ${VERSION}: no worker of that version took the job (this worker runs other); run one`,
            );
          },
          { connection: { host: u.hostname, port: Number(u.port) } },
        );
        try {
          await enqueuer.enqueue([inst], 'stow');
          await waitFor('the job failed', async () => (await enqueuer.queue.getJobState(id)) === 'failed', 5_000, 50);
          assert.equal(await enqueuer.queue.getJobState(id), 'failed');
        } finally {
          await w.close();
        }
        const r = await new Reconciler({ pacs: scriptedPacs({ '2.25.7': { '2.25.7.1': ['2.25.7.1.1'] } }), index: ix, enqueuer }).run({
          source: 'reconciler',
          maxRequestsPerSecond: 1000,
        });
        assert.deepEqual([r.requeued, r.previouslyFailed], [1, 0], JSON.stringify(r));
        assert.equal(await enqueuer.queue.getJobState(id), 'waiting');
      });
    });

    it('a PACS that suddenly lists far fewer studies deletes nothing, and says why; a --match run never prunes whole studies', async () => {
      await withSetup(async (ix, enqueuer) => {
        const docs = unitVectors(30, DIMS, 5).map((vec, i) => doc(`2.25.9.${i}`, `2.25.9.${i}.1`, `2.25.9.${i}.1.1`, vec));
        await ix.upsert(docs, { refresh: 'wait_for' });
        const pacs = scriptedPacs({ '2.25.9.0': { '2.25.9.0.1': ['2.25.9.0.1.1'] } });
        const r = await new Reconciler({ pacs, index: ix, enqueuer }).run({ source: 'reconciler', maxRequestsPerSecond: 1000 });
        assert.equal(r.pruned, 0);
        assert.match(r.pruneRefused ?? '', /no longer lists 29 of the 30 indexed studies .*nothing deleted/);
        const m = await new Reconciler({ pacs, index: ix, enqueuer }).run({
          source: 'backfill',
          studyQuery: { StudyDescription: 'x' },
          maxRequestsPerSecond: 1000,
        });
        assert.equal(m.pruned, 0);
        assert.equal(m.pruneRefused, undefined);
        assert.equal(await ix.count(), 30);
      });
    });
  });
}
