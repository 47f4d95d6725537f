/**
 * Any viewer, one URL (issue 5): an unmodified OHIF v3 (npm @ohif/app, built dist/),
 * served as `npm start` serves it (deploy/ohif, against the gateway's /dicom-web), opened
 * as /ui's "Similar studies in the viewer" link opens it: `/?configUrl=/similar-to/{sop}/app-config.json`,
 * so that its only DICOMweb root becomes the virtual root /similar-to/{sop}/dicom-web of one
 * figshare slice (gateway/virtual-root.ts), in Debian's headless Chromium. Its
 * worklist must be the studies most similar to that slice, in the rank order
 * GET /similar?groupBy=study answers, without the query's own study; a study opened
 * from the list shows its image, fetched through the virtual root.
 *
 * Real parts only: the test stack's Orthanc, Redis and Elasticsearch, the gateway and
 * workers in-process with the shipped model, OHIF's own code in Chromium.
 * Screenshots: test-artifacts/ohif-similar/ (study-list.png, viewer.png, viewport.png;
 * failure-*.png when something fails).
 *
 *   bash scripts/test.sh test/e2e/ohif-similar.test.ts
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { similarConfigPath } from '../../deploy/ohif/app-config.js';
import type { OhifServer } from '../../deploy/ohif/server.js';
import { attachVirtualRoot } from '../../gateway/virtual-root.js';
import { EmbeddingPipeline } from '../../workers/embedding-pipeline.js';
import { readDataset, type PlannedInstance } from '../../workers/load/dataset.js';
import { runLoad } from '../../workers/load.js';
import { figshareSampleDir } from '../helpers/fixtures.js';
import { openViewer, saveArtifact, startOhif, type Viewer } from '../helpers/ohif.js';
import { freePort } from '../helpers/ports.js';
import { testStack } from '../helpers/stack.js';
import { deleteStudies, json, raw } from '../integration/gateway-fixture.js';
import {
  dropQueues,
  silent,
  startSimilarGateway,
  startTestWorkers,
  uniqueName,
  waitFor,
  type SimilarGateway,
  type WorkerSet,
} from '../integration/similar-fixture.js';

const TEST_TIMEOUT_MS = 4 * 60_000;

interface Hit {
  rank: number;
  studyInstanceUid: string;
}

describe('OHIF v3 on a virtual root /similar-to/{sop}/dicom-web, by configUrl (headless Chromium)', { timeout: 14 * 60_000 }, () => {
  const stack = testStack();
  const artifacts = path.join(stack.artifactsDir, 'ohif-similar');
  const ns = uniqueName('ohifsim');
  const esBase = uniqueName('cbmir-test-ohifsim');
  let pipeline: EmbeddingPipeline;
  let workers: WorkerSet;
  let sys: SimilarGateway;
  let ohif: OhifServer;
  let viewer: Viewer;
  let plan: PlannedInstance[];
  let q: PlannedInstance;
  let vroot: string;
  /** The worklist URL's query that puts the viewer on the virtual root (what /ui links to). */
  let similarEntry: string;
  /** Patient IDs of the similar studies, most similar first. */
  let rankedPatients: string[];
  let ranking: Hit[];

  async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const shot = await viewer?.screenshot(`failure-${name}`).catch(() => undefined);
      const e = err as Error;
      e.message += `${shot ? `\nscreenshot: ${shot}` : ''}${viewer ? viewer.failureReport() : ''}`;
      throw e;
    }
  }

  before(async () => {
    pipeline = await EmbeddingPipeline.create({ batchSize: 8, batchWaitMs: 10 });
    workers = await startTestWorkers({ ns, esBase, pipeline });
    const ohifPort = await freePort();
    sys = await startSimilarGateway({
      ns,
      esBase,
      env: { CBMIR_SHUTDOWN_GRACE_MS: '1000', CBMIR_CORS_ORIGINS: `http://127.0.0.1:${ohifPort}` },
    });
    attachVirtualRoot(sys.gw, { config: sys.config, index: sys.index, search: sys.similar.search, logger: silent });
    plan = (await readDataset(figshareSampleDir)).instances;
    q = plan.find((i) => i.file === 'images/1310.jpg')!;
    const s = await runLoad({
      dir: figshareSampleDir,
      mode: 'send',
      url: `${sys.base}/dicom-web`,
      studyDate: '20250101',
      batchSize: 12,
      concurrency: 2,
    });
    assert.equal(s.stored, 36, JSON.stringify(s.failures));
    await waitFor('36 instances indexed', async () => (await workers.index.count()) === 36, 180_000, 500);

    const r = await raw(
      `${sys.base}/similar?StudyInstanceUID=${q.studyInstanceUid}&SeriesInstanceUID=${q.seriesInstanceUid}&SOPInstanceUID=${q.sopInstanceUid}&groupBy=study&limit=100`,
    );
    assert.equal(r.status, 200, r.body.toString());
    ranking = json<{ results: Hit[] }>(r).results;
    const patientOf = new Map(plan.map((i) => [i.studyInstanceUid, i.patientId]));
    rankedPatients = ranking.map((h) => patientOf.get(h.studyInstanceUid)!);
    assert.equal(rankedPatients.length, 8);

    vroot = `${sys.base}/similar-to/${q.sopInstanceUid}/dicom-web`;
    ohif = await startOhif(`${sys.base}/dicom-web`, ohifPort);
    similarEntry = `?configUrl=${encodeURIComponent(similarConfigPath(q.sopInstanceUid))}`;
    viewer = await openViewer({ artifactsDir: artifacts });
  });

  after(async () => {
    await viewer?.close();
    await ohif?.close();
    await sys?.close();
    await workers?.close();
    await pipeline?.close();
    await deleteStudies(stack.orthancUrl, new Set(plan?.map((i) => i.studyInstanceUid) ?? []));
    const idx = workers?.index;
    if (idx) for (const v of await idx.versions().catch(() => [] as string[])) await idx.dropVersion(v).catch(() => undefined);
    const es = new (await import('@elastic/elasticsearch')).Client({ node: stack.esUrl });
    await es.indices.delete({ index: `${esBase}*`, ignore_unavailable: true, allow_no_indices: true }).catch(() => undefined);
    await es.close();
    await dropQueues(ns);
  });

  test('the worklist is the similar studies, most similar first, without the query’s own study', { timeout: TEST_TIMEOUT_MS }, async () => {
    const rows = await step('study-list', () =>
      viewer.studyList(ohif.url, { minRows: rankedPatients.length, timeoutMs: 120_000, query: similarEntry }),
    );
    await viewer.screenshot('study-list');
    const report = () => `rows shown:\n${rows.map((r) => r.cells.join(' | ')).join('\n')}${viewer.failureReport(20)}`;
    // OHIF formats the PN figshare-cheng^<id> as "figshare-cheng, <id>". OHIF 3.13's worklist
    // sorts client-side by study date/time (stable sort): the sample's studies share one date,
    // so the order shown is the order the virtual root answered. With differing dates OHIF
    // would re-sort them (docs/api.md, "Virtual roots").
    assert.deepEqual(
      rows.map((r) => r.cells[0]),
      rankedPatients.map((p) => `figshare-cheng, ${p}`),
      report(),
    );
    assert.ok(!rows.some((r) => r.cells[0] === `figshare-cheng, ${q.patientId}`), 'the query’s patient is not listed');
    // The PACS's own records: description (OHIF's encoded includefield, fixed by the gateway), modality, 4 instances.
    for (const r of rows) {
      assert.ok(r.cells.includes('figshare-cheng'), `study description: ${r.cells.join(' | ')}`);
      assert.ok(r.cells.includes('MR') && r.cells.includes('4'), r.cells.join(' | '));
    }
    const qido = viewer.responses.filter((r) => r.url === `${vroot}/studies`);
    assert.ok(qido.length > 0 && qido.every((r) => r.status === 200), `QIDO through the virtual root: ${JSON.stringify(qido)}`);
  });

  test(
    'a similar study opens from the worklist and its image is rendered through the virtual root',
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      await step('study-list-again', () =>
        viewer.studyList(ohif.url, { minRows: rankedPatients.length, timeoutMs: 120_000, query: similarEntry }),
      );
      const before = viewer.responses.length;
      const top = ranking[0]!;
      await step('open-study', () => viewer.openStudyFromList(`figshare-cheng, ${rankedPatients[0]}`, { timeoutMs: 120_000 }));
      assert.ok(viewer.page.url().includes(top.studyInstanceUid), `viewer URL ${viewer.page.url()} names the rank-1 study`);
      const image = await step('render', () => viewer.waitForRenderedImage({ timeoutMs: 150_000 }));
      await viewer.screenshot('viewer');
      const viewportPng = await saveArtifact(artifacts, 'viewport.png', image.png);
      assert.ok(image.stddev > 20, `viewport contrast too low: stddev ${image.stddev.toFixed(1)} (${viewportPng})`);
      assert.ok(image.litFraction > 0.2 && image.litFraction < 0.98, `lit share ${image.litFraction.toFixed(3)} (${viewportPng})`);

      const mine = viewer.responses.slice(before).filter((r) => r.url.startsWith(`${vroot}/studies/${top.studyInstanceUid}/`));
      const frames = mine.filter((r) => /\/frames\/1$/.test(r.url));
      assert.ok(
        frames.length >= 1 && frames.every((r) => r.status === 200),
        `frame requests: ${JSON.stringify(frames)}${viewer.failureReport(20)}`,
      );
      const failed = viewer.responses.slice(before).filter((r) => r.url.startsWith(sys.base) && r.status >= 400);
      assert.deepEqual(failed, [], 'no gateway request failed');
      const elsewhere = viewer.responses.slice(before).filter((r) => r.url.startsWith(`${sys.base}/dicom-web`));
      assert.deepEqual(elsewhere, [], 'the viewer stayed on its root');
    },
  );
});
