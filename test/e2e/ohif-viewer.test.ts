/**
 * The real-viewer test (issue 2, item 6): an unmodified OHIF v3 (npm @ohif/app,
 * built dist/) served from its own origin against the gateway, driven in Debian's
 * headless Chromium. After `cbmir load` of the repo's figshare sample through the
 * gateway, OHIF's study list shows the 9 sample studies, and a study opened from
 * the list (row → "Basic Viewer") shows its image (viewport pixels read back, not
 * just a canvas present), fetched through the gateway across origins.
 *
 * Real parts only: the test stack's Orthanc, the gateway in-process, OHIF's own
 * code in Chromium. Screenshots: test-artifacts/ohif/ (study-list.png,
 * viewer.png, viewport.png; failure.png when something fails).
 *
 *   bash scripts/test.sh test/e2e/ohif-viewer.test.ts
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../core/config.js';
import type { OhifServer } from '../../deploy/ohif/server.js';
import { createGateway, type Gateway } from '../../gateway/server.js';
import { readDataset, type PlannedInstance } from '../../workers/load/dataset.js';
import { runLoad } from '../../workers/load.js';
import { deleteStudies } from '../integration/gateway-fixture.js';
import { figshareSampleDir } from '../helpers/fixtures.js';
import { openViewer, saveArtifact, startOhif, type Viewer } from '../helpers/ohif.js';
import { freePort } from '../helpers/ports.js';
import { testStack } from '../helpers/stack.js';

const TEST_TIMEOUT_MS = 4 * 60_000;

describe('OHIF v3 against the gateway (headless Chromium)', { timeout: 12 * 60_000 }, () => {
  const stack = testStack();
  const artifacts = path.join(stack.artifactsDir, 'ohif');
  let gw: Gateway;
  let gatewayBase: string;
  let ohif: OhifServer;
  let viewer: Viewer;
  let instances: PlannedInstance[];
  const studyUids = new Set<string>();

  /** Run a step; on failure keep a screenshot and append the browser's log to the error. */
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
    const ohifPort = await freePort();
    const config = loadConfig({
      CBMIR_PACS_URL: stack.orthancDicomWebUrl,
      CBMIR_CORS_ORIGINS: `http://127.0.0.1:${ohifPort}`,
      CBMIR_LOG_LEVEL: 'silent',
      CBMIR_SHUTDOWN_GRACE_MS: '1000',
    });
    gw = createGateway(config, { defaultMetrics: false });
    const addr = await gw.listen(0, '127.0.0.1');
    gatewayBase = `http://127.0.0.1:${addr.port}`;

    const plan = await readDataset(figshareSampleDir);
    instances = plan.instances;
    for (const i of instances) studyUids.add(i.studyInstanceUid);
    const summary = await runLoad({ dir: figshareSampleDir, mode: 'send', url: `${gatewayBase}/dicom-web`, studyDate: '20250101' });
    assert.deepEqual([summary.stored, summary.failed, summary.studies], [36, 0, 9], JSON.stringify(summary.failures));

    // Its own origin (another port): the realistic set-up, so CORS is exercised.
    ohif = await startOhif(`${gatewayBase}/dicom-web`, ohifPort);
    assert.equal(new URL(ohif.url).origin, `http://127.0.0.1:${ohifPort}`);
    assert.notEqual(new URL(ohif.url).origin, new URL(gatewayBase).origin);
    viewer = await openViewer({ artifactsDir: artifacts });
  });

  after(async () => {
    await viewer?.close();
    await ohif?.close();
    await gw?.close();
    await deleteStudies(stack.orthancUrl, studyUids);
  });

  test('the study list shows the loaded studies', { timeout: TEST_TIMEOUT_MS }, async () => {
    const patients = [...new Set(instances.map((i) => i.patientId))].sort();
    assert.equal(patients.length, 9);
    const rows = await step('study-list', () => viewer.studyList(ohif.url, { minRows: patients.length, timeoutMs: 120_000 }));
    await viewer.screenshot('study-list');
    const report = () => `rows shown:\n${rows.map((r) => r.cells.join(' | ')).join('\n')}${viewer.failureReport(20)}`;
    // OHIF formats the PN figshare-cheng^<id> as "figshare-cheng, <id>".
    const ours = rows.filter((r) => r.cells[0]?.startsWith('figshare-cheng, '));
    assert.equal(ours.length, patients.length, report());
    for (const pid of patients) {
      const row = ours.find((r) => r.cells[0] === `figshare-cheng, ${pid}`);
      assert.ok(row, `no row for patient ${pid}\n${report()}`);
      assert.ok(row.cells.includes('MR'), `modality of ${pid}: ${row.cells.join(' | ')}`);
      // 4 slices per patient in the sample: OHIF's instance count column.
      assert.ok(row.cells.includes('4'), `instance count of ${pid}: ${row.cells.join(' | ')}`);
    }
    // The list came from the gateway, across origins.
    const qido = viewer.responses.filter((r) => r.url === `${gatewayBase}/dicom-web/studies`);
    assert.ok(qido.length > 0 && qido.every((r) => r.status === 200), `QIDO through the gateway: ${JSON.stringify(qido)}`);
  });

  test('a study opens from the list and its image is rendered', { timeout: TEST_TIMEOUT_MS }, async () => {
    const one = instances.find((i) => i.file === 'images/1310.jpg');
    assert.ok(one, 'images/1310.jpg is in the sample');
    await step('study-list-again', () => viewer.studyList(ohif.url, { minRows: 9, timeoutMs: 120_000 }));
    const before = viewer.responses.length;
    // As a user does: click the patient's row, then the "Basic Viewer" workflow.
    await step('open-study', () => viewer.openStudyFromList(`figshare-cheng, ${one.patientId}`, { timeoutMs: 120_000 }));
    assert.ok(viewer.page.url().includes(one.studyInstanceUid), `viewer URL ${viewer.page.url()} names the study`);
    const image = await step('render', () => viewer.waitForRenderedImage({ timeoutMs: 150_000 }));
    await viewer.screenshot('viewer');
    const viewportPng = await saveArtifact(artifacts, 'viewport.png', image.png);

    // A real MR slice, not an empty or uniform canvas: strong contrast over a large area.
    assert.ok(image.stddev > 20, `viewport contrast too low: stddev ${image.stddev.toFixed(1)} (${viewportPng})`);
    assert.ok(image.litFraction > 0.2 && image.litFraction < 0.98, `lit share ${image.litFraction.toFixed(3)} (${viewportPng})`);

    // OHIF's overlay names the series it shows: ours, "<dataset> <class>".
    const text = await viewer.page.locator('body').innerText();
    assert.ok(text.includes(`figshare-cheng ${one.className}`), `series description not shown${viewer.failureReport(20)}`);

    // Frames came from the gateway (WADO-RS, pixel data) and the thumbnail from its /thumbnail.
    const mine = viewer.responses.slice(before).filter((r) => r.url.startsWith(`${gatewayBase}/dicom-web/studies/${one.studyInstanceUid}/`));
    const frames = mine.filter((r) => /\/frames\/1$/.test(r.url));
    assert.ok(frames.length >= 1 && frames.every((r) => r.status === 200), `frame requests: ${JSON.stringify(frames)}${viewer.failureReport(20)}`);
    assert.ok(frames.every((r) => r.contentType.startsWith('multipart/related')), JSON.stringify(frames));
    const thumbs = mine.filter((r) => r.url.endsWith('/thumbnail'));
    assert.ok(thumbs.length >= 1 && thumbs.every((r) => r.status === 200 && r.contentType === 'image/jpeg'), `thumbnails: ${JSON.stringify(thumbs)}`);
    const failed = viewer.responses.slice(before).filter((r) => r.url.startsWith(gatewayBase) && r.status >= 400);
    assert.deepEqual(failed, [], 'no gateway request failed');

    // Frame requests carry a quoted multipart Accept: they were preflighted, and the gateway answered.
    const metrics = (await gw.metrics.render()).body;
    const preflights = metrics
      .split('\n')
      .filter((l) => l.startsWith('cbmir_gateway_http_request_duration_seconds_count{') && l.includes('route="preflight"') && l.includes('status="204"'))
      .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
    assert.ok(preflights > 0, 'the gateway answered CORS preflights');
  });
});
