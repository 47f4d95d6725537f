/**
 * A real OHIF v3 viewer in headless Chromium, for tests that check what a
 * radiologist would see: the study list of a DICOMweb root and a study's images.
 *
 * Reusable for any DICOMweb root: the gateway's `/dicom-web`, or a virtual root
 * (`/similar-to/{uid}/dicom-web`). Typical use:
 *
 *   const ohif = await startOhif(`${gateway}/dicom-web`);      // own origin, own port
 *   const viewer = await openViewer({ artifactsDir });           // Chromium, fresh profile
 *   const rows = await viewer.studyList(ohif.url);               // rows as OHIF shows them
 *   await viewer.openStudy(ohif.url, studyUid);
 *   const shot = await viewer.waitForRenderedImage();            // non-blank viewport
 *   …  viewer.failureReport() in assertion messages  …
 *   await viewer.close(); await ohif.close();
 *
 * Chromium: CBMIR_CHROMIUM (exported by `npm test`) or /usr/bin/chromium (Debian's
 * package; scripts/test.sh installs it when test/e2e has tests). The browser runs
 * with a new, empty user-data-dir each time, no network beyond what the page asks
 * for (no component updates, no sync, no QUIC).
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PNG } from 'pngjs';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { ensureOhifDist } from '../../deploy/ohif/dist.js';
import { startOhifServer, type OhifServer } from '../../deploy/ohif/server.js';

export const CHROMIUM_ARGS: readonly string[] = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Chromium's path, or a clear error saying how to get it. */
export function chromiumPath(env: NodeJS.ProcessEnv = process.env): string {
  const p = env.CBMIR_CHROMIUM?.trim() || '/usr/bin/chromium';
  if (!existsSync(p)) {
    throw new Error(`Chromium not found at ${p}: install Debian's chromium (apt-get install chromium; npm test does it) or set CBMIR_CHROMIUM`);
  }
  return p;
}

/** Serve OHIF (fetched into the cache on first use) against a DICOMweb root, on its own port. */
export async function startOhif(dicomWebRoot: string, port = 0): Promise<OhifServer> {
  const distDir = await ensureOhifDist();
  return startOhifServer({ distDir, dicomWebRoot, investigationalUseDialog: 'never', port });
}

export interface StudyRow {
  /** Cell texts of the row as shown (patient name, MRN, date, description, modality, accession, instances). */
  readonly cells: string[];
  readonly text: string;
}

export interface RenderedImage {
  /** PNG of the viewport element. */
  readonly png: Buffer;
  readonly width: number;
  readonly height: number;
  /** Standard deviation of the luminance over the viewport (0 = blank). */
  readonly stddev: number;
  /** Share of pixels brighter than near-black (overlay text alone stays far below image content). */
  readonly litFraction: number;
}

export interface Viewer {
  readonly page: Page;
  readonly context: BrowserContext;
  /** Page console, page errors, failed requests and HTTP ≥ 400 answers, in order. */
  readonly log: string[];
  /** Every response the page received: method, URL (path only) and status. */
  readonly responses: { method: string; url: string; status: number; contentType: string }[];
  /** Load OHIF's study list and return its rows once at least `minRows` are shown. */
  /** `query`: the worklist URL's query string, with its `?` (e.g. OHIF's `?configUrl=…`). */
  studyList(ohifUrl: string, opts?: { minRows?: number; timeoutMs?: number; query?: string }): Promise<StudyRow[]>;
  /** Open a study in OHIF's basic viewer by URL (/viewer?StudyInstanceUIDs=…). */
  openStudy(ohifUrl: string, studyInstanceUid: string, opts?: { timeoutMs?: number }): Promise<void>;
  /**
   * Open a study the way a user does, on the study list already shown: click the
   * row whose first cell (patient) is `patientCell`, then the "Basic Viewer" workflow.
   */
  openStudyFromList(patientCell: string, opts?: { timeoutMs?: number }): Promise<void>;
  /** Wait until the first viewport shows an image (pixel variance, not just overlays); returns it. */
  waitForRenderedImage(opts?: { timeoutMs?: number; minStddev?: number }): Promise<RenderedImage>;
  /** Full-page screenshot to artifactsDir/name (.png); returns the path. */
  screenshot(name: string): Promise<string>;
  /** The last lines of the log, for assertion messages. */
  failureReport(lines?: number): string;
  close(): Promise<void>;
}

export interface OpenViewerOptions {
  /** Where screenshots go (test-artifacts/, git-ignored). */
  readonly artifactsDir: string;
  readonly width?: number;
  readonly height?: number;
  /** Mark OHIF's onboarding tour as seen so its pop-ups do not cover the viewport (default true). */
  readonly skipTours?: boolean;
}

/**
 * Rows of OHIF's study list. 3.13's work list (ui-next) is a plain table whose
 * body rows carry aria-selected; older builds (ui) mark the body data-cy="study-list-results".
 */
const STUDY_ROW = 'tbody tr[aria-selected], [data-cy="study-list-results"] > tr';

/** Launch Chromium with a fresh profile and a page that records everything worth seeing on failure. */
export async function openViewer(o: OpenViewerOptions): Promise<Viewer> {
  const profile = await mkdtemp(path.join(os.tmpdir(), 'cbmir-chromium-'));
  await mkdir(o.artifactsDir, { recursive: true });
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath(),
      headless: true,
      args: [...CHROMIUM_ARGS],
      viewport: { width: o.width ?? 1400, height: o.height ?? 900 },
      timeout: 60_000,
    });
  } catch (err) {
    await rm(profile, { recursive: true, force: true });
    throw err;
  }
  if (o.skipTours ?? true) {
    // OHIF 3.13 remembers shown tours in localStorage 'shownTours' (core TourManager).
    await context.addInitScript(() => {
      try {
        if (!localStorage.getItem('shownTours')) localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']));
      } catch {
        /* storage disabled: the tour shows, nothing else changes */
      }
    });
  }
  const page = context.pages()[0] ?? (await context.newPage());
  const log: string[] = [];
  const responses: Viewer['responses'] = [];
  const stamp = () => new Date().toISOString().slice(11, 23);
  const pathOf = (u: string) => {
    try {
      const x = new URL(u);
      return x.protocol === 'data:' || x.protocol === 'blob:' ? `${x.protocol}…` : `${x.origin}${x.pathname}`;
    } catch {
      return u.slice(0, 120);
    }
  };
  page.on('console', (m) => log.push(`${stamp()} console.${m.type()}: ${m.text().slice(0, 500)}`));
  page.on('pageerror', (e) => log.push(`${stamp()} pageerror: ${e.message.slice(0, 500)}`));
  page.on('requestfailed', (r) => log.push(`${stamp()} requestfailed: ${r.method()} ${pathOf(r.url())} ${r.failure()?.errorText ?? ''}`));
  page.on('response', (r) => {
    const entry = { method: r.request().method(), url: pathOf(r.url()), status: r.status(), contentType: r.headers()['content-type'] ?? '' };
    responses.push(entry);
    if (entry.status >= 400) log.push(`${stamp()} http ${entry.status}: ${entry.method} ${entry.url}`);
  });

  const viewer: Viewer = {
    page,
    context,
    log,
    responses,

    async studyList(ohifUrl, opts = {}) {
      const minRows = opts.minRows ?? 1;
      const timeout = opts.timeoutMs ?? 90_000;
      await page.goto(`${ohifUrl}/${opts.query ?? ''}`, { waitUntil: 'domcontentloaded', timeout });
      await page.waitForFunction(
        ([sel, n]) => document.querySelectorAll(sel as string).length >= (n as number),
        [STUDY_ROW, minRows] as const,
        { timeout, polling: 250 },
      );
      return page.$$eval(STUDY_ROW, (rows) =>
        rows.map((r) => {
          const cells = Array.from(r.querySelectorAll('td, [role="cell"]')).map((c) => (c.textContent ?? '').trim());
          return { cells, text: (r.textContent ?? '').trim() };
        }),
      );
    },

    async openStudy(ohifUrl, studyInstanceUid, opts = {}) {
      const timeout = opts.timeoutMs ?? 90_000;
      await page.goto(`${ohifUrl}/viewer?StudyInstanceUIDs=${encodeURIComponent(studyInstanceUid)}`, { waitUntil: 'domcontentloaded', timeout });
      await page.waitForSelector('[data-viewport-uid], .viewport-element, canvas.cornerstone-canvas', { timeout, state: 'attached' });
    },

    async openStudyFromList(patientCell, opts = {}) {
      const timeout = opts.timeoutMs ?? 90_000;
      const row = page.locator(STUDY_ROW).filter({ has: page.locator('td', { hasText: new RegExp(`^\\s*${escapeRegExp(patientCell)}\\s*$`) }) });
      const n = await row.count();
      if (n !== 1) throw new Error(`expected one study-list row for ${JSON.stringify(patientCell)}, found ${n}`);
      await row.click({ timeout });
      await page.getByRole('button', { name: 'Basic Viewer', exact: true }).click({ timeout });
      await page.waitForURL(/\/viewer/, { timeout });
      await page.waitForSelector(VIEWPORT_CANVAS, { timeout, state: 'attached' });
    },

    async waitForRenderedImage(opts = {}) {
      const timeoutMs = opts.timeoutMs ?? 120_000;
      const deadline = Date.now() + timeoutMs;
      const minStddev = opts.minStddev ?? 10;
      let last: RenderedImage | undefined;
      let lastState = 'no viewport canvas';
      while (Date.now() < deadline) {
        const probe = await readViewportCanvas(page).catch((e: Error) => ({ state: `evaluate failed: ${e.message}` }) as CanvasProbe);
        lastState = probe.state;
        let shot: RenderedImage | undefined;
        if (probe.state === 'ok' && probe.dataUrl) {
          shot = measure(Buffer.from(probe.dataUrl.slice(probe.dataUrl.indexOf(',') + 1), 'base64'));
        } else if (probe.state === 'not-2d') {
          // A WebGL canvas cannot be read back after compositing: measure a screenshot
          // of it instead (this includes overlays, hence the lit-area threshold).
          const el = await page.$(VIEWPORT_CANVAS);
          const png = await el?.screenshot({ timeout: 20_000 }).catch(() => undefined);
          if (png) shot = measure(png);
        }
        if (shot) {
          last = shot;
          if (shot.stddev >= minStddev && shot.litFraction >= 0.05) return shot;
        }
        await page.waitForTimeout(1000);
      }
      throw new Error(
        `no image rendered in the viewport within ${timeoutMs} ms` +
          (last
            ? ` (last viewport: ${last.width}x${last.height}, stddev ${last.stddev.toFixed(1)}, lit ${(last.litFraction * 100).toFixed(1)}%)`
            : ` (${lastState})`),
      );
    },

    async screenshot(name) {
      const file = path.join(o.artifactsDir, name.endsWith('.png') ? name : `${name}.png`);
      await page.screenshot({ path: file, fullPage: false, timeout: 30_000 });
      return file;
    },

    failureReport(lines = 60) {
      const tail = log.slice(-lines);
      return tail.length ? `\n--- browser log (last ${tail.length} of ${log.length}) ---\n${tail.join('\n')}` : '\n(browser log empty)';
    },

    async close() {
      await context.close().catch(() => undefined);
      await rm(profile, { recursive: true, force: true });
    },
  };
  return viewer;
}

/** Cornerstone3D draws each viewport into a 2D canvas (copied from its offscreen WebGL one). */
const VIEWPORT_CANVAS = 'canvas.cornerstone-canvas';

interface CanvasProbe {
  state: string;
  dataUrl?: string;
}

/** The first viewport canvas as a PNG data URL, when it has a size and a 2D context. */
async function readViewportCanvas(page: Page): Promise<CanvasProbe> {
  return page.evaluate((sel) => {
    const c = document.querySelector(sel);
    if (!(c instanceof HTMLCanvasElement)) return { state: 'no viewport canvas' };
    if (c.width < 50 || c.height < 50) return { state: `viewport canvas too small (${c.width}x${c.height})` };
    if (!c.getContext('2d')) return { state: 'not-2d' };
    return { state: 'ok', dataUrl: c.toDataURL('image/png') };
  }, VIEWPORT_CANVAS);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Luminance statistics of a PNG. */
export function measure(png: Buffer): RenderedImage {
  const img = PNG.sync.read(png);
  const n = img.width * img.height;
  let sum = 0;
  let sum2 = 0;
  let lit = 0;
  for (let i = 0; i < n; i++) {
    const o = i * 4;
    const y = 0.2126 * img.data[o]! + 0.7152 * img.data[o + 1]! + 0.0722 * img.data[o + 2]!;
    sum += y;
    sum2 += y * y;
    if (y > 24) lit++;
  }
  const mean = sum / n;
  return { png, width: img.width, height: img.height, stddev: Math.sqrt(Math.max(0, sum2 / n - mean * mean)), litFraction: lit / n };
}

/** Write a buffer under the artifacts dir (e.g. the viewport PNG); returns the path. */
export async function saveArtifact(artifactsDir: string, name: string, data: Buffer | string): Promise<string> {
  await mkdir(artifactsDir, { recursive: true });
  const file = path.join(artifactsDir, name);
  await writeFile(file, data);
  return file;
}
