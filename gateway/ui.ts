/**
 * /ui — the retrieval web page (issue 5 "Web page"; gateway/ui/: one HTML page, plain
 * ES modules and CSS, no build step, nothing fetched from elsewhere).
 *
 *   GET /ui               → 308 to /ui/
 *   GET /ui/              index.html
 *   GET /ui/{file}        the page's assets (the files of gateway/ui/, read once at start)
 *   GET /ui/config.json   what the page needs from the configuration: viewer URL templates,
 *                         the upload bound, the largest /similar limit
 *
 * The page talks to the gateway only: QIDO/thumbnails under /dicom-web, /similar and
 * /similar/heatmap, with the user's Authorization when one is entered. A strict
 * Content-Security-Policy (self only; blob:/data: images for thumbnails fetched with
 * credentials) keeps it that way.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../core/config.js';
import { MAX_UPLOAD_BYTES } from '../core/jobs.js';
import { HttpProblem } from '../core/errors.js';
import { sendProblem } from './problem.js';
import type { Gateway } from './server.js';

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

export const UI_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

interface Asset {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
}

/** gateway/ui next to the source, or the source tree's copy when running from dist/. */
export function uiDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const d of [path.join(here, 'ui'), path.resolve(here, '../../gateway/ui')]) {
    if (existsSync(path.join(d, 'index.html'))) return d;
  }
  throw new Error('gateway/ui/index.html not found next to the gateway');
}

/** The page's files, by name (flat folder; anything else is never served). */
export function loadAssets(dir: string): Map<string, Asset> {
  const out = new Map<string, Asset>();
  for (const name of readdirSync(dir)) {
    const type = TYPES[path.extname(name)];
    const file = path.join(dir, name);
    if (!type || !/^[a-z0-9][a-z0-9._-]*$/.test(name) || !statSync(file).isFile()) continue;
    const body = readFileSync(file);
    out.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` });
  }
  return out;
}

export interface UiPageConfig {
  readonly dicomWebRoot: string;
  readonly viewerUrlTemplate: string | null;
  readonly viewerSimilarUrlTemplate: string | null;
  readonly blueLightUrlTemplate: string | null;
  readonly maxUploadBytes: number;
  /** The largest `limit` /similar accepts (CBMIR_SIMILAR_MAX_LIMIT): the page asks for no more. */
  readonly maxLimit: number;
}

/** What `GET /ui/config.json` answers. */
export function uiPageConfig(config: Config): UiPageConfig {
  return {
    // Relative to the page (…/ui/): the gateway may be published under a path prefix by a proxy.
    dicomWebRoot: '../dicom-web',
    viewerUrlTemplate: config.ui.viewerUrlTemplate ?? null,
    viewerSimilarUrlTemplate: config.ui.viewerSimilarUrlTemplate ?? null,
    blueLightUrlTemplate: config.ui.blueLightUrlTemplate ?? null,
    maxUploadBytes: MAX_UPLOAD_BYTES,
    maxLimit: config.similar.maxLimit,
  };
}

export function attachUi(gateway: Gateway, config: Config, opts: { dir?: string } = {}): void {
  const assets = loadAssets(opts.dir ?? uiDir());
  const configBody = Buffer.from(JSON.stringify(uiPageConfig(config)));

  const common = (res: ServerResponse) => {
    res.setHeader('content-security-policy', UI_CSP);
    res.setHeader('x-content-type-options', 'nosniff');
    res.setHeader('referrer-policy', 'no-referrer');
  };
  const send = (req: { headers: Record<string, unknown> }, res: ServerResponse, a: Asset) => {
    common(res);
    // Revalidated each time (the files change with a deploy), 304 when unchanged.
    res.setHeader('cache-control', 'no-cache');
    res.setHeader('etag', a.etag);
    if (req.headers['if-none-match'] === a.etag) {
      res.writeHead(304);
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': a.type, 'content-length': a.body.length });
    res.end(a.body);
  };

  const app = gateway.app;
  // Express matches /ui and /ui/ alike (non-strict routing): the slash decides.
  app.get('/ui', (req, res) => {
    if ((req.url ?? '').split('?')[0]!.endsWith('/')) send(req, res, assets.get('index.html')!);
    else res.redirect(308, 'ui/'); // relative, so a path prefix in front of the gateway is kept
  });
  app.get('/ui/config.json', (_req, res) => {
    common(res);
    res.setHeader('cache-control', 'no-store');
    res.type('application/json').send(configBody);
  });
  app.get('/ui/:file', (req, res) => {
    const a = assets.get(String(req.params.file));
    if (a) send(req, res, a);
    else sendProblem(res, new HttpProblem('NOT_FOUND', 'no such file in the web page'));
  });
}
