/**
 * A small static server for the built OHIF viewer (deploy/ohif/dist.ts) with a
 * generated app-config.js (deploy/ohif/app-config.ts).
 *
 *   GET /app-config.js     the generated config (never the package's own)
 *   GET /similar-to/{SOP}/app-config.json
 *                          the same config on the gateway's virtual root of that query image
 *                          (OHIF loads it for `/?configUrl=…`: the similar studies in this viewer)
 *   GET /<file>            a file of dist/ (path confined to dist/)
 *   GET /<route>           index.html (OHIF is a single-page app: /, /viewer?…,
 *                          /viewer/dicomweb?… are client-side routes)
 *   other methods          405
 *
 * A missing file that looks like an asset (has an extension other than .html)
 * is a 404, not index.html: a broken chunk must fail loudly, not load HTML as JS.
 * Hashed bundles are cacheable; index.html and app-config.js are not (the config
 * changes with the DICOMweb root). Binds 127.0.0.1 unless told otherwise.
 */
import { createReadStream } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { ohifConfig, ohifConfigScript, SIMILAR_CONFIG_URL_RE, similarRootBeside, type OhifConfigOptions } from './app-config.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.gif': 'image/gif',
  '.ico': 'image/x-icon',
  '.webp': 'image/webp',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.txt': 'text/plain; charset=utf-8',
  '.xml': 'application/xml',
  '.webmanifest': 'application/manifest+json',
  '.onnx': 'application/octet-stream',
};
/** webpack's content-hashed names (`app.bundle.0f6159c501addfe9.js`, `5130ccb17e3f3f5b.wasm`) never change content. */
const HASHED_RE = /(?:^|[.])[0-9a-f]{16,}\.[a-z0-9]+$/;
const MAX_URL_BYTES = 8192;
/** A query image's config, the path OHIF may load (its SOP Instance UID captured; ≤ 64 characters checked below). */
const SIMILAR_CONFIG_PATH = new RegExp(SIMILAR_CONFIG_URL_RE);

export interface OhifServerOptions extends OhifConfigOptions {
  /** OHIF's dist/ folder (ensureOhifDist()). */
  readonly distDir: string;
  readonly host?: string;
  /** 0 = any free port. */
  readonly port?: number;
  /** Called for each request with its outcome (for logs); no query strings (they can hold PHI). */
  readonly onRequest?: (line: { method: string; path: string; status: number }) => void;
}

export interface OhifServer {
  readonly server: http.Server;
  /** e.g. http://127.0.0.1:3000 (no trailing slash). */
  readonly url: string;
  /** The DICOMweb root the viewer uses. */
  readonly dicomWebRoot: string;
  close(): Promise<void>;
}

function send(res: http.ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

/** Start serving; resolves once listening. */
export async function startOhifServer(o: OhifServerOptions): Promise<OhifServer> {
  const root = await realpath(o.distDir);
  const indexHtml = await readFile(path.join(root, 'index.html'));
  const configJs = Buffer.from(ohifConfigScript(o));
  const dicomWebRoot = o.dicomWebRoot.replace(/\/+$/, '');

  const serveFile = async (res: http.ServerResponse, rel: string, head: boolean): Promise<boolean> => {
    // Resolve inside dist/, following symlinks only when they stay inside.
    const candidate = path.resolve(root, '.' + path.posix.normalize('/' + rel));
    if (candidate !== root && !candidate.startsWith(root + path.sep)) return false;
    let real: string;
    try {
      real = await realpath(candidate);
    } catch {
      return false;
    }
    if (!real.startsWith(root + path.sep)) return false;
    const st = await stat(real);
    if (!st.isFile()) return false;
    const ext = path.extname(real).toLowerCase();
    res.writeHead(200, {
      'content-type': TYPES[ext] ?? 'application/octet-stream',
      'content-length': st.size,
      'cache-control': HASHED_RE.test(path.basename(real)) ? 'public, max-age=31536000, immutable' : 'no-cache',
    });
    if (head) {
      res.end();
      return true;
    }
    await new Promise<void>((resolve, reject) => {
      const stream = createReadStream(real);
      stream.on('error', reject);
      res.on('close', () => {
        stream.destroy();
        resolve();
      });
      stream.pipe(res);
    });
    return true;
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    // Every answer: the viewer shows patient data, so no other site may frame it (clickjacking)
    // or learn its URLs (which carry study UIDs) through Referer; no content sniffing.
    res.setHeader('x-frame-options', 'DENY');
    res.setHeader('content-security-policy', "frame-ancestors 'none'");
    res.setHeader('referrer-policy', 'no-referrer');
    res.setHeader('x-content-type-options', 'nosniff');
    const method = req.method ?? 'GET';
    const rawUrl = req.url ?? '/';
    if (method !== 'GET' && method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      send(res, 405, 'method not allowed\n');
      return;
    }
    if (Buffer.byteLength(rawUrl) > MAX_URL_BYTES) {
      send(res, 414, 'URL too long\n');
      return;
    }
    let pathname: string;
    try {
      pathname = decodeURIComponent(new URL(rawUrl, 'http://x').pathname);
    } catch {
      send(res, 400, 'bad URL\n');
      return;
    }
    if (pathname.includes('\0')) {
      send(res, 400, 'bad URL\n');
      return;
    }
    const head = method === 'HEAD';
    if (pathname === '/app-config.js') {
      res.writeHead(200, { 'content-type': TYPES['.js']!, 'content-length': configJs.length, 'cache-control': 'no-store' });
      res.end(head ? undefined : configJs);
      return;
    }
    const similar = SIMILAR_CONFIG_PATH.exec(pathname);
    if (similar) {
      const sop = similar[1]!;
      const similarRoot = sop.length <= 64 ? similarRootBeside(dicomWebRoot, sop) : undefined;
      if (!similarRoot) {
        send(res, 404, 'no similar-studies config for this viewer\n');
        return;
      }
      // A virtual root's config turns no dynamic config on (ohifConfig): it cannot load another.
      const body = Buffer.from(JSON.stringify(ohifConfig({ ...o, dicomWebRoot: similarRoot })));
      res.writeHead(200, { 'content-type': TYPES['.json']!, 'content-length': body.length, 'cache-control': 'no-store' });
      res.end(head ? undefined : body);
      return;
    }
    if (pathname !== '/' && pathname !== '/index.html' && (await serveFile(res, pathname, head))) return;
    const ext = path.extname(pathname).toLowerCase();
    if (ext && ext !== '.html' && pathname !== '/') {
      send(res, 404, 'not found\n');
      return;
    }
    // SPA fallback: every client-side route gets index.html.
    res.writeHead(200, { 'content-type': TYPES['.html']!, 'content-length': indexHtml.length, 'cache-control': 'no-cache' });
    res.end(head ? undefined : indexHtml);
  };

  const server = http.createServer((req, res) => {
    handle(req, res)
      .catch(() => {
        if (!res.headersSent) send(res, 500, 'internal error\n');
        else res.destroy();
      })
      .finally(() => {
        o.onRequest?.({ method: req.method ?? '?', path: (req.url ?? '').split('?')[0] ?? '', status: res.statusCode });
      });
  });
  server.headersTimeout = 20_000;
  server.requestTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, o.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    server,
    url: `http://${host}:${addr.port}`,
    dicomWebRoot,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
