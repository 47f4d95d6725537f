/**
 * The /ui page in headless Chromium against the real stack: a gateway in-process with
 * the STOW indexing hook, /similar, /similar/heatmap and /ui, in-process workers with
 * the shipped model; the figshare sample (36 real MR slices) loaded through it. What a
 * radiologist does: pick study → series → image, read the ranked results, open a
 * result's whole series, toggle the heatmap, drop a DICOM file, drop an SR or a folder, lose
 * the network, supersede a search or heatmap (the earlier request is cancelled).
 * Screenshots go to test-artifacts/ui/.
 *
 * The shipped model may be untrained: nothing asserts retrieval quality. The page must
 * show what the API answers (same order, scores, labels) and draw what the heatmap
 * route computes (colour and place of the strongest cell).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Queue } from 'bullmq';
import type { Page } from 'playwright-core';
import { loadConfig } from '../../core/config.js';
import { queueName } from '../../core/jobs.js';
import { createGateway } from '../../gateway/server.js';
import { attachSimilarHeatmap } from '../../gateway/similar-heatmap.js';
import { attachUi, UI_CSP } from '../../gateway/ui.js';
import { EmbeddingPipeline } from '../../workers/embedding-pipeline.js';
import { runLoad } from '../../workers/load.js';
import { readDataset, type PlannedInstance } from '../../workers/load/dataset.js';
import { dicomFixturesDir, figshareSampleDir } from '../helpers/fixtures.js';
import { openViewer, type Viewer } from '../helpers/ohif.js';
import { orthancAuthHeader, testStack } from '../helpers/stack.js';
import { json, raw } from '../integration/gateway-fixture.js';
import { startSimilarGateway, startTestWorkers, silent, uniqueName, waitFor, type SimilarGateway, type WorkerSet } from '../integration/similar-fixture.js';

interface Hit {
  rank: number;
  score: number;
  label?: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  sopInstanceUid: string;
}
interface HeatmapAnswer {
  query: { grid: number[][] };
  result: { grid: number[][] };
  similarity: number;
  score: number;
  height: number;
  width: number;
}

const MOSAIC = path.join(dicomFixturesDir, 'transfer-syntax', 'siemens_mosaic_1.dcm');
const SR = path.join(dicomFixturesDir, 'non-image', 'comprehensive_sr_test-SR.dcm');
const VIEWER_TEMPLATE = 'http://127.0.0.1:3000/viewer?StudyInstanceUIDs={study}&initialSeriesInstanceUID={series}&initialSOPInstanceUID={instance}';
const SIMILAR_TEMPLATE = 'http://127.0.0.1:3000/?configUrl=%2Fsimilar-to%2F{instance}%2Fapp-config.json';

/** Pixels of an overlay canvas: share drawn, and the colour at a point given in grid cells. */
async function overlayProbe(page: Page, canvasSel: string, cell?: { i: number; j: number; h: number; w: number }) {
  return page.$eval(
    canvasSel,
    (c, cell) => {
      const canvas = c as HTMLCanvasElement;
      const ctx = canvas.getContext('2d')!;
      const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      let lit = 0;
      let red = 0;
      let blue = 0;
      for (let k = 0; k < d.length; k += 4) {
        if (d[k + 3]! > 0) {
          lit++;
          if (d[k]! > d[k + 2]!) red++;
          else blue++;
        }
      }
      let at: number[] | undefined;
      if (cell) {
        // Centre of grid cell (i, j): the thumbnail boxes are square, so the model's input square is the whole canvas.
        const x = Math.floor(((cell.j + 0.5) * canvas.width) / cell.w);
        const y = Math.floor(((cell.i + 0.5) * canvas.height) / cell.h);
        at = Array.from(ctx.getImageData(x, y, 1, 1).data);
      }
      return { width: canvas.width, height: canvas.height, lit: lit / (canvas.width * canvas.height), red, blue, at, hidden: canvas.hidden };
    },
    cell,
  );
}

function strongest(grid: number[][]): { i: number; j: number; v: number } {
  let best = { i: 0, j: 0, v: 0 };
  grid.forEach((row, i) => row.forEach((v, j) => Math.abs(v) > Math.abs(best.v) && (best = { i, j, v })));
  return best;
}

describe('/ui in headless Chromium', () => {
  const stack = testStack();
  const artifactsDir = path.join(stack.artifactsDir, 'ui');
  const ns = uniqueName('ui');
  const esBase = uniqueName('cbmir-test-ui');
  let pipeline: EmbeddingPipeline;
  let workers: WorkerSet;
  let sys: SimilarGateway;
  let viewer: Viewer;
  let page: Page;
  let plan: PlannedInstance[];
  let q: PlannedInstance;
  const classes = new Set<string>();

  before(async () => {
    pipeline = await EmbeddingPipeline.create({ batchSize: 8, batchWaitMs: 10 });
    workers = await startTestWorkers({ ns, esBase, pipeline });
    sys = await startSimilarGateway({
      ns,
      esBase,
      env: { CBMIR_VIEWER_URL_TEMPLATE: VIEWER_TEMPLATE, CBMIR_VIEWER_SIMILAR_URL_TEMPLATE: SIMILAR_TEMPLATE },
    });
    attachSimilarHeatmap(sys.gw, { config: sys.config, access: sys.similar.access, index: sys.index, modelVersion: pipeline.modelVersion, logger: silent, queueNamespace: ns });
    attachUi(sys.gw, sys.config);
    plan = (await readDataset(figshareSampleDir)).instances;
    for (const i of plan) if (i.className) classes.add(i.className);
    q = plan.find((i) => i.file === 'images/1310.jpg')!;
    const s = await runLoad({ dir: figshareSampleDir, mode: 'send', url: `${sys.base}/dicom-web`, studyDate: '20250101', batchSize: 12, concurrency: 2 });
    assert.equal(s.stored, 36, JSON.stringify(s.failures));
    await waitFor('36 instances indexed', async () => (await workers.index.count()) === 36, 180_000, 500);
    // Warm the upload path's event reader once. core/similar/embed-requester.ts reads job
    // events from BullMQ's default '$' and can miss the completion of the first upload after a
    // busy start (same cause as documented in core/heatmap/requester.ts; reported to its owner):
    // the page would rightly show "busy, try again", which is not what this test is about.
    const mosaic = await readFile(MOSAIC);
    for (let i = 0; i < 2; i++) {
      const w = await raw(`${sys.base}/similar?limit=1`, { method: 'POST', headers: { 'content-type': 'application/dicom' }, body: mosaic });
      if (w.status === 200) break;
      assert.equal(w.status, 503, w.body.toString());
    }
    viewer = await openViewer({ artifactsDir, width: 1400, height: 1000 });
    page = viewer.page;
  });

  after(async () => {
    await viewer?.close();
    await sys?.close();
    await workers?.close();
    await pipeline?.close();
    const idx = workers?.index;
    if (idx) for (const v of await idx.versions().catch(() => [] as string[])) await idx.dropVersion(v).catch(() => undefined);
    const cleanup = new (await import('@elastic/elasticsearch')).Client({ node: stack.esUrl });
    await cleanup.indices.delete({ index: `${esBase}*`, ignore_unavailable: true, allow_no_indices: true }).catch(() => undefined);
    await cleanup.close();
    for (const kind of ['index', 'embed'] as const) {
      const qu = new Queue(queueName(kind, ns), { connection: { url: stack.redisUrl } });
      await qu.obliterate({ force: true }).catch(() => undefined);
      await qu.close();
    }
  });

  test('the page and its config are served with a strict CSP; unknown files are 404', async () => {
    const r = await raw(`${sys.base}/ui/`);
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'] ?? '', /^text\/html/);
    assert.equal(r.headers['content-security-policy'], UI_CSP);
    const cfg = json<{ viewerUrlTemplate: string; dicomWebRoot: string; maxLimit: number }>(await raw(`${sys.base}/ui/config.json`));
    assert.equal(cfg.viewerUrlTemplate, VIEWER_TEMPLATE);
    assert.equal(cfg.maxLimit, sys.config.similar.maxLimit, "the largest /similar limit, which bounds the page's Results field");
    assert.equal(cfg.dicomWebRoot, '../dicom-web', 'relative to the page: a path prefix in front of the gateway is kept');
    assert.equal((await raw(`${sys.base}/ui/nothing.js`)).status, 404);
    // An encoded traversal never reaches the page's files (the gateway's path guard answers 400).
    assert.ok([400, 404].includes((await raw(`${sys.base}/ui/..%2Fui.ts`)).status));
    assert.equal((await raw(`${sys.base}/ui`)).status, 308);
  });

  test('pick study → series → image: the results the API ranks, with rank, score and label', async () => {
    await page.goto(`${sys.base}/ui/`, { waitUntil: 'domcontentloaded' });
    await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
    // The file chooser shows every file (DICOM files often have no extension: IM000001).
    assert.equal(await page.getAttribute('#file', 'accept'), null);
    // The Authorization field: a text field drawn masked (no password manager offers to save it).
    assert.deepEqual(
      await page.$eval('#token', (i) => [
        (i as HTMLInputElement).type,
        getComputedStyle(i).getPropertyValue('-webkit-text-security'),
        i.getAttribute('autocomplete'),
      ]),
      ['text', 'disc', 'off'],
    );
    // The Results field within the gateway's bound (CBMIR_SIMILAR_MAX_LIMIT, default 100) and the page's own 50.
    assert.equal(await page.getAttribute('#limit', 'max'), String(Math.min(50, sys.config.similar.maxLimit)));
    await page.click(`#studies button[data-study="${q.studyInstanceUid}"]`);
    // One series per study: the page opens it by itself.
    await page.click(`#instances button[data-sop="${q.sopInstanceUid}"]`, { timeout: 30_000 });
    await page.waitForSelector('#results li.card', { timeout: 60_000 });
    const api = json<{ results: Hit[] }>(
      await raw(`${sys.base}/similar?StudyInstanceUID=${q.studyInstanceUid}&SeriesInstanceUID=${q.seriesInstanceUid}&SOPInstanceUID=${q.sopInstanceUid}&limit=10`),
    );
    const cards = await page.$$eval('#results li.card', (lis) =>
      lis.map((li) => ({
        sop: li.getAttribute('data-sop'),
        rank: li.querySelector('.rank')?.textContent,
        score: li.querySelector('.score')?.textContent,
        label: li.querySelector('.label')?.textContent,
        viewer: li.querySelector('a.viewer-link')?.getAttribute('href'),
      })),
    );
    assert.ok(cards.length >= 1, viewer.failureReport());
    // The query's own link: its similar studies as the viewer's worklist (e2e/ohif-similar follows it).
    assert.equal(
      await page.getAttribute('#query a.similar-in-viewer', 'href'),
      SIMILAR_TEMPLATE.replace('{instance}', q.sopInstanceUid),
    );
    assert.deepEqual(
      cards.map((c) => c.sop),
      api.results.map((h) => h.sopInstanceUid),
    );
    for (const [k, c] of cards.entries()) {
      const h = api.results[k]!;
      assert.equal(c.rank, `#${h.rank}`);
      assert.equal(c.score, `score ${h.score.toFixed(3)}`);
      assert.ok(classes.has(c.label ?? ''), `label ${c.label}`);
      assert.equal(c.label, h.label);
      assert.equal(
        c.viewer,
        VIEWER_TEMPLATE.replace('{study}', h.studyInstanceUid).replace('{series}', h.seriesInstanceUid).replace('{instance}', h.sopInstanceUid),
      );
    }
    // The thumbnails arrived (fetched through the gateway's /dicom-web).
    await page.waitForFunction(() => {
      const imgs = [document.querySelector('#query img'), document.querySelector('#results li.card img')] as (HTMLImageElement | null)[];
      return imgs.every((i) => i && i.complete && i.naturalWidth > 0);
    }, undefined, { timeout: 30_000 });
    await viewer.screenshot('ui-results');
  });

  test('a result expands to its whole series', async () => {
    const first = page.locator('#results li.card').first();
    const sop = (await first.getAttribute('data-sop'))!;
    const p = plan.find((i) => i.sopInstanceUid === sop)!;
    const inSeries = plan.filter((i) => i.seriesInstanceUid === p.seriesInstanceUid);
    await first.locator('button.series-toggle').click();
    assert.equal(await first.locator('button.series-toggle').getAttribute('aria-expanded'), 'true');
    await page.waitForFunction(
      (n) => document.querySelectorAll('#results li.card.expanded .strip li[data-sop] img').length === n,
      inSeries.length,
      { timeout: 30_000 },
    );
    const stripSops = await first.locator('.strip li[data-sop]').evaluateAll((lis) => lis.map((l) => l.getAttribute('data-sop')));
    assert.deepEqual(new Set(stripSops), new Set(inSeries.map((i) => i.sopInstanceUid)));
    assert.equal(await first.locator('.strip li[aria-current="true"]').getAttribute('data-sop'), sop);
    await page.waitForFunction(() => Array.from(document.querySelectorAll('.strip img')).every((i) => (i as HTMLImageElement).naturalWidth > 0), undefined, { timeout: 30_000 });
    await viewer.screenshot('ui-series');
    await first.locator('button.series-toggle').click();
    assert.equal(await first.locator('.strip').isHidden(), true);
  });

  test('heatmap toggle overlays the pair: drawn where the route says, red for similar, blue against', async () => {
    const first = page.locator('#results li.card').first();
    const sop = (await first.getAttribute('data-sop'))!;
    const r = plan.find((i) => i.sopInstanceUid === sop)!;
    const res = await raw(
      `${sys.base}/similar/heatmap?StudyInstanceUID=${q.studyInstanceUid}&SeriesInstanceUID=${q.seriesInstanceUid}&SOPInstanceUID=${q.sopInstanceUid}` +
        `&ResultStudyInstanceUID=${r.studyInstanceUid}&ResultSeriesInstanceUID=${r.seriesInstanceUid}&ResultSOPInstanceUID=${r.sopInstanceUid}`,
    );
    assert.equal(res.status, 200, res.body.toString());
    const hm = json<HeatmapAnswer>(res);
    assert.equal(hm.height, 7);
    // /similar's score and rounding, even where the float32 dot product passes ±1 by a hair.
    assert.ok(hm.score >= 0 && hm.score <= 1 && hm.similarity >= -1 && hm.similarity <= 1, `score ${hm.score}, similarity ${hm.similarity}`);
    for (const v of [hm.score, hm.similarity]) assert.match(String(v), /^-?\d+(\.\d{1,6})?$/, 'rounded to 6 decimals');
    assert.equal(hm.query.grid.length, 7);
    assert.equal(hm.result.grid[0]!.length, 7);
    // From the keyboard: the button keeps the focus while the heatmap is computed (aria-disabled,
    // not disabled, which would drop it on the page's body).
    await first.locator('button.heatmap-toggle').press('Enter');
    await page.waitForSelector('#results li.card canvas.overlay[data-drawn="true"]', { timeout: 60_000 });
    await page.waitForSelector('#query canvas.overlay[data-drawn="true"]', { timeout: 10_000 });
    assert.equal(await first.locator('button.heatmap-toggle').getAttribute('aria-pressed'), 'true');
    assert.equal(
      await first.locator('button.heatmap-toggle').evaluate((b) => b === document.activeElement),
      true,
      'focus stays on the Heatmap button',
    );
    assert.equal(await first.locator('button.heatmap-toggle').getAttribute('aria-disabled'), null, 'usable again once drawn');
    for (const [sel, grid] of [
      ['#results li.card canvas.overlay[data-drawn="true"]', hm.result.grid],
      ['#query canvas.overlay', hm.query.grid],
    ] as const) {
      const s = strongest(grid);
      const probe = await overlayProbe(page, sel, { i: s.i, j: s.j, h: 7, w: 7 });
      assert.ok(probe.lit > 0.3, `${sel}: ${(probe.lit * 100).toFixed(1)}% drawn`);
      const [R, , B, A] = probe.at!;
      // The strongest cell of the pair's shared scale is drawn at (nearly) full alpha in its sign's colour.
      if (s.v > 0) assert.ok(R! > B!, `${sel}: strongest cell ${s.v} should be red, got ${probe.at}`);
      else assert.ok(B! > R!, `${sel}: strongest cell ${s.v} should be blue, got ${probe.at}`);
      assert.ok(A! > 60, `${sel}: alpha ${A}`);
    }
    assert.match((await page.textContent('#legend')) ?? '', /red.*similar/);
    await viewer.screenshot('ui-heatmap');
    await first.locator('button.heatmap-toggle').click();
    assert.equal((await overlayProbe(page, '#results li.card canvas.overlay')).hidden, true);
  });

  test('a dropped DICOM file is searched by upload (preview drawn in the page) and gets a heatmap', async () => {
    await page.setInputFiles('#file', MOSAIC);
    await page.waitForFunction(() => /Dropped file: siemens_mosaic_1\.dcm/.test(document.querySelector('#query')?.textContent ?? ''), undefined, { timeout: 10_000 });
    await page.waitForSelector('#results li.card, #error:not([hidden])', { timeout: 60_000 });
    assert.equal(await page.isHidden('#error'), true, `${await page.textContent('#error')}${viewer.failureReport(20)}`);
    // The in-page preview decoded the 384×384 16-bit frame.
    assert.equal(await page.$eval('#query img', (i) => (i as HTMLImageElement).naturalWidth), 384);
    const api = json<{ results: Hit[] }>(
      await raw(`${sys.base}/similar?limit=10`, { method: 'POST', headers: { 'content-type': 'application/dicom' }, body: await readFile(MOSAIC) }),
    );
    const sops = await page.$$eval('#results li.card', (lis) => lis.map((l) => l.getAttribute('data-sop')));
    assert.deepEqual(sops, api.results.map((h) => h.sopInstanceUid));
    await page.locator('#results li.card button.heatmap-toggle').first().click();
    await page.waitForSelector('#query canvas.overlay[data-drawn="true"]', { timeout: 60_000 });
    await viewer.screenshot('ui-upload-heatmap');
  });

  test('a dropped SR is refused with a clear message', async () => {
    await page.setInputFiles('#file', SR);
    await page.waitForSelector('#error:not([hidden])', { timeout: 60_000 });
    const msg = (await page.textContent('#error')) ?? '';
    assert.match(msg, /^comprehensive_sr_test-SR\.dcm: This image cannot be searched/);
    assert.match(msg, /not an image: Comprehensive SR/i);
    assert.equal(await page.locator('#results li.card').count(), 0);
    await viewer.screenshot('ui-sr-refused');
  });

  test('a dropped folder (or a file that cannot be read) is refused with a clear message', async () => {
    // What a browser hands over for a dropped folder: a File whose read fails (Chromium: NotFoundError).
    // A script, not a function: tsx would name the object's arrow function with a helper the page lacks.
    await page.evaluate(`(() => {
      const folder = {
        name: 'IMAGES',
        size: 0,
        type: '',
        arrayBuffer: () => Promise.reject(new DOMException('A requested file or directory could not be found', 'NotFoundError')),
      };
      const e = new Event('drop', { bubbles: true, cancelable: true });
      Object.defineProperty(e, 'dataTransfer', { value: { files: [folder], types: ['Files'] } });
      document.querySelector('#drop').dispatchEvent(e);
    })()`);
    // (The error shown before, the SR's, is replaced.)
    await page.waitForFunction(() => /cannot be read/.test(document.querySelector('#error:not([hidden])')?.textContent ?? ''), undefined, {
      timeout: 10_000,
    });
    assert.match((await page.textContent('#error')) ?? '', /^IMAGES cannot be read: drop a single DICOM file/);
  });

  test('a gateway that cannot be reached: the page says so, not "Failed to fetch"', async () => {
    const similar = (u: URL) => u.pathname === '/similar';
    await page.route(similar, (route) => route.abort('internetdisconnected'));
    try {
      await page.click(`#instances button[data-sop="${q.sopInstanceUid}"]`, { timeout: 30_000 });
      await page.waitForFunction(() => /Cannot reach/.test(document.querySelector('#error:not([hidden])')?.textContent ?? ''), undefined, {
        timeout: 30_000,
      });
      assert.equal(await page.textContent('#error'), 'Cannot reach the gateway (network error): check the connection and try again.');
    } finally {
      await page.unroute(similar);
    }
  });

  test('a superseded search or heatmap is cancelled, and says nothing', async () => {
    // Every request's signal, as the page passes it to fetch.
    await page.evaluate(() => {
      const w = window as unknown as { fetch: typeof fetch; sent: Array<{ url: string; method: string; signal?: AbortSignal | null }> };
      const real = w.fetch.bind(window);
      w.sent = [];
      w.fetch = (url, init) => {
        w.sent.push({ url: String(url), method: init?.method ?? 'GET', signal: init?.signal });
        return real(url, init);
      };
    });
    const sent = (pathname: string, method: string) =>
      page.evaluate(
        ([p, m]) =>
          (window as unknown as { sent: Array<{ url: string; method: string; signal?: AbortSignal | null }> }).sent
            .filter((r) => new URL(r.url, location.href).pathname === p && r.method === m)
            .map((r) => ({ hasSignal: Boolean(r.signal), aborted: Boolean(r.signal?.aborted) })),
        [pathname, method],
      );
    // An upload under way, then an image picked from the archive: the upload is cancelled.
    await page.setInputFiles('#file', MOSAIC);
    await page.waitForFunction(
      () => (window as unknown as { sent: Array<{ method: string }> }).sent.some((r) => r.method === 'POST'),
      undefined,
      { timeout: 10_000 },
    );
    await page.click(`#instances button[data-sop="${q.sopInstanceUid}"]`, { timeout: 30_000 });
    await page.waitForSelector('#results li.card', { timeout: 60_000 });
    assert.deepEqual(await sent('/similar', 'POST'), [{ hasSignal: true, aborted: true }], 'the superseded upload');
    assert.deepEqual(await sent('/similar', 'GET'), [{ hasSignal: true, aborted: false }], 'the search shown');
    // A heatmap, then another result's: the first is cancelled, the second drawn, no error.
    const cards = page.locator('#results li.card');
    assert.ok((await cards.count()) >= 2, viewer.failureReport());
    await cards.nth(0).locator('button.heatmap-toggle').click();
    await cards.nth(1).locator('button.heatmap-toggle').click();
    await page.waitForSelector('#results li.card:nth-child(2) canvas.overlay[data-drawn="true"]', { timeout: 60_000 });
    assert.deepEqual(await sent('/similar/heatmap', 'GET'), [
      { hasSignal: true, aborted: true },
      { hasSignal: true, aborted: false },
    ]);
    assert.equal(await cards.nth(0).locator('button.heatmap-toggle').getAttribute('aria-pressed'), 'false');
    assert.equal(await page.isHidden('#error'), true, viewer.failureReport());
    await cards.nth(1).locator('button.heatmap-toggle').click();
  });

  test('an entered token goes out as Authorization on QIDO and /similar', async () => {
    const seen: Record<string, string | undefined> = {};
    page.on('request', (req) => {
      const u = new URL(req.url());
      const kind = u.pathname.startsWith('/dicom-web/') ? 'dicomweb' : u.pathname === '/similar' ? 'similar' : undefined;
      if (kind) seen[kind] = req.headers().authorization;
    });
    await page.fill('#token', 'ui-test-token');
    await page.press('#token', 'Tab');
    await page.click(`#studies button[data-study="${q.studyInstanceUid}"]`);
    await page.click(`#instances button[data-sop="${q.sopInstanceUid}"]`, { timeout: 30_000 });
    await page.waitForSelector('#results li.card', { timeout: 60_000 });
    assert.equal(seen.dicomweb, 'Bearer ui-test-token');
    assert.equal(seen.similar, 'Bearer ui-test-token');
  });

  test('an archive that asks for credentials: a clear message, then the entered credentials open it', async () => {
    // A gateway with no PACS credentials of its own in front of the Orthanc that requires them.
    // A low CBMIR_SIMILAR_MAX_LIMIT besides: the page's Results field keeps within it (a search above it is a 400).
    const config = loadConfig({
      CBMIR_PACS_URL: stack.orthancAuthDicomWebUrl,
      CBMIR_REDIS_URL: stack.redisUrl,
      CBMIR_LOG_LEVEL: 'silent',
      CBMIR_SHUTDOWN_GRACE_MS: '200',
      CBMIR_SIMILAR_MAX_LIMIT: '5',
    });
    const gw = createGateway(config, { defaultMetrics: false, logger: silent });
    attachUi(gw, config);
    const addr = await gw.listen(0, '127.0.0.1');
    // The gateway passes the PACS's Basic challenge through, so a browser first offers its own
    // login prompt (headless Chromium would wait on it forever). Wrong prompt credentials make
    // Chromium give up after one try, as a user cancelling the prompt does: the page gets the 401.
    await viewer.context.setHTTPCredentials({ username: 'cancelled', password: 'prompt' });
    try {
      await page.goto(`http://127.0.0.1:${addr.port}/ui/`, { waitUntil: 'domcontentloaded' });
      await page.waitForSelector('#error:not([hidden])', { timeout: 15_000 }).catch(async (e: Error) => {
        await viewer.screenshot('ui-credentials-failed');
        throw new Error(`${e.message}${viewer.failureReport(20)}`);
      });
      assert.match((await page.textContent('#error')) ?? '', /asks for credentials: enter an Authorization token above/);
      assert.deepEqual([await page.getAttribute('#limit', 'max'), await page.inputValue('#limit')], ['5', '5']);
      await page.fill('#token', orthancAuthHeader());
      await page.press('#token', 'Tab');
      // (.pending: the hint shown while the field is edited, before it is left.)
      await page.waitForFunction(
        () =>
          (document.querySelector('#error') as HTMLElement).hidden &&
          document.querySelectorAll('#studies li:not(.loading):not(.pending)').length > 0,
        undefined,
        { timeout: 30_000 },
      );
      await viewer.screenshot('ui-credentials');
    } finally {
      await viewer.context.setHTTPCredentials(null);
      await gw.close();
    }
  });

  test('/similar/heatmap validates its input', async () => {
    const base = `${sys.base}/similar/heatmap`;
    const bad = await raw(`${base}?StudyInstanceUID=1.2&SeriesInstanceUID=1.3&SOPInstanceUID=x.y&ResultStudyInstanceUID=1&ResultSeriesInstanceUID=1&ResultSOPInstanceUID=1`);
    assert.equal(bad.status, 400);
    assert.equal(json<{ code: string }>(bad).code, 'BAD_UID');
    const unknown = await raw(`${base}?foo=1`);
    assert.equal(unknown.status, 400);
    assert.match(json<{ detail: string }>(unknown).detail, /unknown parameter "foo"/);
    const missing = await raw(`${base}?StudyInstanceUID=${q.studyInstanceUid}&SeriesInstanceUID=${q.seriesInstanceUid}&SOPInstanceUID=${q.sopInstanceUid}`);
    assert.equal(missing.status, 400);
    const absent = await raw(
      `${base}?StudyInstanceUID=${q.studyInstanceUid}&SeriesInstanceUID=${q.seriesInstanceUid}&SOPInstanceUID=${q.sopInstanceUid}&ResultStudyInstanceUID=1.2.3.999&ResultSeriesInstanceUID=1.2.3.999.1&ResultSOPInstanceUID=1.2.3.999.1.1`,
    );
    assert.equal(absent.status, 404);
    // A readable study with an instance that is not in it: 404 from the caller's own QIDO, as for
    // /similar, before a worker fetches anything with the service's credentials (it was a 422).
    const foreign = await raw(
      `${base}?StudyInstanceUID=${q.studyInstanceUid}&SeriesInstanceUID=${q.seriesInstanceUid}&SOPInstanceUID=${q.sopInstanceUid}` +
        `&ResultStudyInstanceUID=${q.studyInstanceUid}&ResultSeriesInstanceUID=${q.seriesInstanceUid}&ResultSOPInstanceUID=1.2.3.999.1.1`,
    );
    assert.equal(foreign.status, 404, foreign.body.toString());
    // A multipart upload without a boundary is refused before its body is read.
    const noBoundary = await raw(`${base}?ResultStudyInstanceUID=${q.studyInstanceUid}&ResultSeriesInstanceUID=${q.seriesInstanceUid}&ResultSOPInstanceUID=${q.sopInstanceUid}`, {
      method: 'POST',
      headers: { 'content-type': 'multipart/related; type="application/dicom"' },
      body: Buffer.alloc(16),
    });
    assert.equal(noBoundary.status, 400);
    const sr = await raw(`${base}?ResultStudyInstanceUID=${q.studyInstanceUid}&ResultSeriesInstanceUID=${q.seriesInstanceUid}&ResultSOPInstanceUID=${q.sopInstanceUid}`, {
      method: 'POST',
      headers: { 'content-type': 'application/dicom' },
      body: await readFile(SR),
    });
    assert.equal(sr.status, 422);
    assert.match(json<{ detail: string }>(sr).detail, /query: not an image/);
    assert.equal((await raw(base, { method: 'DELETE' })).status, 405);
  });

  test('behind a proxy that publishes the gateway under a path prefix, the page works and asks nothing outside it', async () => {
    const target = new URL(sys.base);
    const outside: string[] = [];
    const proxy = http.createServer((req, res) => {
      if (!(req.url ?? '').startsWith('/cbmir/')) {
        outside.push(req.url ?? '');
        res.writeHead(404).end();
        return;
      }
      const up = http.request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url!.slice('/cbmir'.length), headers: req.headers },
        (ures) => {
          res.writeHead(ures.statusCode ?? 502, ures.headers);
          ures.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/cbmir`;
    try {
      await page.goto(`${base}/ui`, { waitUntil: 'domcontentloaded' });
      assert.equal(page.url(), `${base}/ui/`, 'the redirect keeps the prefix');
      await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
      await page.click(`#studies button[data-study="${q.studyInstanceUid}"]`, { timeout: 30_000 });
      await page.click(`#instances button[data-sop="${q.sopInstanceUid}"]`, { timeout: 30_000 });
      await page.waitForSelector('#results li.card', { timeout: 60_000 });
      await page.waitForFunction(() => {
        const img = document.querySelector('#results li.card img') as HTMLImageElement | null;
        return img !== null && img.complete && img.naturalWidth > 0;
      }, undefined, { timeout: 30_000 });
      assert.deepEqual(outside, [], 'requests outside the prefix');
    } finally {
      proxy.closeAllConnections();
      await new Promise<void>((r) => proxy.close(() => r()));
    }
  });
});
