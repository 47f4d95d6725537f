/**
 * The gateway's HTTP edge.
 *
 * Request path, in order (one node:http listener; see docs/api.md):
 *   1. request id, timing, metrics + access log on completion (no PHI: route class, status, duration)
 *   2. CORS (preflights answered here)
 *   3. draining → 503
 *   4. path guard (path-guard.ts): traversal and near-miss roots → 400
 *   5. DICOMweb route table (routes.ts) → pass-through / STOW / thumbnail
 *      /wado (WADO-URI) → pass-through
 *      virtual roots /similar-to/{sop}/dicom-web|wado (virtual-root.ts): the same
 *      table and pass-through with the prefix stripped, except QIDO …/studies
 *      (the ranked similar studies) and STOW (405: a virtual root is read-only)
 *   6. everything else → the express app: /healthz, /readyz, /metrics, and
 *      whatever later code registers (app.get('/similar', …), UI) → else 404
 * `Expect: 100-continue` is answered when the body is first read, so after every
 * check above that refuses a request without reading it, and for STOW only once
 * the PACS takes the body (passthrough.ts).
 *
 * The DICOMweb hot path runs on node:http directly, not through express or
 * http-proxy-middleware: measured on this machine, http-proxy-middleware 3
 * reached 0.4 of direct Orthanc throughput on WADO-RS and a plain node:http
 * forwarder 0.7, before the keep-alive fix (docs/benchmarks.md).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Config } from '../core/config.js';
import { HttpProblem } from '../core/errors.js';
import { createLogger, type Logger } from '../core/log.js';
import { negotiate } from './accept.js';
import { continueOnFirstRead, settleUnreadBody } from './body-limit.js';
import { Cors } from './cors.js';
import { checkHost } from './host-guard.js';
import { basicAuthorization, mergeVary, upstreamRequestHeaders } from './headers.js';
import { notReady, runChecks, type ReadinessCheck } from './health.js';
import { GatewayMetrics } from './metrics.js';
import { normaliseQidoQuery, normaliseWadoUriQuery, ORTHANC_DICOMWEB_1_7, type PacsQuirks } from './pacs-quirks.js';
import { forward, type ProxyContext } from './passthrough.js';
import { DICOMWEB_ROOT, guardTarget, SIMILAR_TO_ROOT, WADO_URI_ROOT } from './path-guard.js';
import { MethodNotAllowed, requestProblem, sendProblem } from './problem.js';
import { DERIVED_BASE_VARY, derivePublicBase, fallbackHost, fixedPublicBase, type PublicBase } from './public-url.js';
import { allowedMethods, matchDicomweb } from './routes.js';
import { serveStow } from './stow.js';
import { StowHooks, type StowResponseListener } from './stow-hooks.js';
import { ThumbnailService } from './thumbnail.js';
import { Upstream, parseEndpoint } from './upstream.js';
import { UrlRewriter } from './url-rewrite.js';
import { checkWadoUriQuery } from './wado-uri.js';

export interface GatewayDeps {
  readonly logger?: Logger;
  /** Extra readiness checks (Redis, vector index …); the PACS check is built in. */
  readonly readinessChecks?: readonly ReadinessCheck[];
  readonly quirks?: PacsQuirks;
  /** Run last on close(), in order (close Redis/ES clients here). */
  readonly closeHooks?: ReadonlyArray<() => Promise<void> | void>;
  /** Collect Node default metrics (process, GC, event loop); default true. */
  readonly defaultMetrics?: boolean;
}

/**
 * Serves QIDO `GET /similar-to/{sop}/dicom-web/studies` (virtual-root.ts). `publicBase`
 * is the virtual root's base (`…/similar-to/{sop}`; append "/dicom-web"), `query` the
 * raw query string. Handles its own errors.
 */
export type VirtualStudiesHandler = (
  req: http.IncomingMessage,
  res: http.ServerResponse,
  ctx: { readonly sopInstanceUid: string; readonly query: string; readonly publicBase: PublicBase },
) => void;

export interface Gateway {
  /** Express app for routes outside the DICOMweb surface (/similar, UI …). */
  readonly app: express.Express;
  readonly server: http.Server;
  readonly metrics: GatewayMetrics;
  /** Listen on config host/port (or the given ones); resolves with the bound address. */
  listen(port?: number, host?: string): Promise<AddressInfo>;
  /** Graceful shutdown: stop accepting (503) → drain → close upstream agents and clients. */
  close(): Promise<void>;
  /** Subscribe to the PACS's STOW answers (see stow-hooks.ts); returns an unsubscribe function. */
  onStowResponse(listener: StowResponseListener): () => void;
  addReadinessCheck(check: ReadinessCheck): void;
  addCloseHook(hook: () => Promise<void> | void): void;
  /** Serve the virtual roots' study lists (without one, /similar-to/… answers 404). */
  setVirtualStudies(handler: VirtualStudiesHandler): void;
}

/** Largest STOW answer kept for the STOW hook (answers themselves stream, URL-mapped, whatever their size). */
const MAX_REWRITE_BYTES = 64 * 1024 * 1024;
const READINESS_TIMEOUT_MS = 2000;
/** Bound on each close hook during shutdown. */
const CLOSE_HOOK_TIMEOUT_MS = 5000;
const REQ_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;
/** Replies to requests Node could not parse (anything else: 400). */
const CLIENT_ERROR_REPLIES: Readonly<Record<string, string>> = {
  HPE_HEADER_OVERFLOW: '431 Request Header Fields Too Large',
  ERR_HTTP_REQUEST_TIMEOUT: '408 Request Timeout',
};

export function createGateway(config: Config, deps: GatewayDeps = {}): Gateway {
  const log = deps.logger ?? createLogger(config.logLevel, 'gateway');
  const quirks = deps.quirks ?? ORTHANC_DICOMWEB_1_7;
  const metrics = new GatewayMetrics({ defaultMetrics: deps.defaultMetrics });
  const dicomweb = parseEndpoint(config.pacs.url);
  const wadoUri = parseEndpoint(config.pacs.wadoUriUrl);
  const upstream = new Upstream({
    timeoutMs: config.pacs.timeoutMs,
    stowTimeoutMs: config.pacs.stowTimeoutMs,
    maxSockets: config.pacs.maxSockets,
    keepAliveMs: config.pacs.keepAliveMs,
  });
  const ctx: ProxyContext = {
    upstream,
    rewriter: new UrlRewriter(dicomweb, wadoUri, DICOMWEB_ROOT, WADO_URI_ROOT),
    quirks,
    defaultAuthorization: basicAuthorization(config.pacs.user, config.pacs.password),
    maxBodyBytes: config.maxBodyBytes,
    maxRewriteBytes: MAX_REWRITE_BYTES,
    onUpstreamError: (kind) => metrics.upstreamError(kind),
  };
  const cors = new Cors(config.corsOrigins);
  const stowHooks = new StowHooks(log);
  const thumbnails = new ThumbnailService(ctx, dicomweb, quirks.thumbnailViewport, config.thumbnailCacheEntries);
  const fixedBase = config.publicUrl ? fixedPublicBase(config.publicUrl) : undefined;
  const checks: ReadinessCheck[] = [pacsCheck(upstream, dicomweb, ctx.defaultAuthorization), ...(deps.readinessChecks ?? [])];
  const closeHooks = [...(deps.closeHooks ?? [])];
  let virtualStudies: VirtualStudiesHandler | undefined;
  let draining = false;
  let seq = 0;
  const idPrefix = `${process.pid.toString(36)}-${Date.now().toString(36)}-`;

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use((req: Request, res: Response, next: NextFunction) => {
    res.locals.log = log.child({ reqId: res.getHeader('x-request-id') });
    next();
  });
  // The operations endpoints answer at their exact paths only: express's default routing would
  // also serve /METRICS and /metrics/, which slip past a proxy rule for /metrics (`location =`).
  const ops = express.Router({ caseSensitive: true, strict: true });
  app.use(ops);
  ops.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  ops.get('/readyz', async (_req, res) => {
    if (draining) {
      sendProblem(res, new HttpProblem('NOT_READY', 'shutting down'));
      return;
    }
    const outcome = await runChecks(checks, READINESS_TIMEOUT_MS);
    const failed = Object.entries(outcome)
      .filter(([, o]) => !o.ok)
      .map(([n]) => n);
    if (failed.length) sendProblem(res, notReady(outcome, `not ready: ${failed.join(', ')}`));
    else res.json({ status: 'ready', checks: outcome });
  });
  ops.get('/metrics', async (_req, res) => {
    const m = await metrics.render();
    res.type(m.contentType).send(m.body);
  });

  // Where the gateway listens, for derived URLs when a client sends no usable Host (set once listening; address() is a syscall).
  let bind = { host: config.host, port: config.port };
  const publicBaseOf = (req: http.IncomingMessage): PublicBase =>
    fixedBase ?? derivePublicBase(req.headers, fallbackHost(bind.host, bind.port, req.socket));
  /** URLs in this answer will be built from X-Forwarded-* (no CBMIR_PUBLIC_URL): a shared cache must key on them. */
  const varyOnDerivedBase = (res: http.ServerResponse): void => {
    if (!fixedBase) res.setHeader('vary', mergeVary(res.getHeader('vary'), DERIVED_BASE_VARY));
  };
  /**
   * A virtual root's base: the gateway's with /similar-to/{sop} appended, so URLs the
   * rewriter maps (base + "/dicom-web" or "/wado") land under the virtual root. Its
   * path is never empty, so no `Forwarded` goes to the PACS (it would write /dicom-web
   * URLs itself) and the PACS's own URLs are mapped instead.
   */
  const baseFor = (req: http.IncomingMessage, virtualSop: string | undefined): PublicBase => {
    const b = publicBaseOf(req);
    if (virtualSop === undefined) return b;
    const suffix = `${SIMILAR_TO_ROOT}/${virtualSop}`;
    return { ...b, base: b.base + suffix, path: b.path + suffix };
  };

  // Responses not yet finished, per connection (see clientError below).
  const unfinished = new WeakMap<Duplex, Set<http.ServerResponse>>();

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const t0 = performance.now();
    const inboundId = req.headers['x-request-id'];
    const reqId = typeof inboundId === 'string' && REQ_ID_RE.test(inboundId) ? inboundId : idPrefix + (++seq).toString(36);
    res.setHeader('x-request-id', reqId);
    let routeClass = 'other';
    const open = unfinished.get(req.socket) ?? new Set();
    unfinished.set(req.socket, open.add(res));
    res.once('close', () => {
      open.delete(res);
      const ms = performance.now() - t0;
      const status = res.statusCode;
      metrics.observeRequest(routeClass, req.method ?? '?', status, ms / 1000);
      const aborted = !res.writableFinished;
      // A failing /readyz (503) is an answer, not a fault of ours: probes would flood the error log.
      const level = status >= 500 && routeClass !== 'health' ? 'error' : 'info';
      if (log.isLevelEnabled(level)) {
        // Route class, never the URL: query strings carry PatientName and other PHI.
        log[level](
          { reqId, route: routeClass, method: req.method, status, ms: Math.round(ms * 10) / 10, ...(aborted ? { aborted } : {}) },
          'request',
        );
      }
    });

    try {
      checkHost(req.headers.host, config.allowedHosts);
      if (cors.handle(req, res)) {
        routeClass = 'preflight';
        return;
      }
      if (draining) throw new HttpProblem('NOT_READY', 'shutting down');
      const target = guardTarget(req.url ?? '', config.maxQueryBytes);
      const method = req.method ?? 'GET';

      if (target.kind === 'dicomweb') {
        routeClass = 'dicomweb';
        const readOnly = target.virtualSop !== undefined;
        if (method === 'OPTIONS') {
          const allow = allowedMethods(target.segments, readOnly);
          if (allow.length === 0) throw new HttpProblem('NOT_FOUND', 'no such DICOMweb resource');
          res.writeHead(204, { allow: allow.join(', '), 'content-length': '0' });
          res.end();
          return;
        }
        const match = matchDicomweb(method, target.segments, readOnly);
        if (!match) throw new HttpProblem('NOT_FOUND', 'no such DICOMweb resource');
        routeClass = match.route.routeClass;
        const publicBase = baseFor(req, target.virtualSop);
        if (target.virtualSop !== undefined) {
          if (match.route.handler === 'stow')
            throw new MethodNotAllowed(allowedMethods(target.segments, readOnly), 'a virtual root is read-only: store through /dicom-web');
          if (match.route.routeClass === 'qido' && target.segments.length === 1 && target.segments[0] === 'studies') {
            if (!virtualStudies) throw new HttpProblem('NOT_FOUND', 'virtual roots are not enabled');
            varyOnDerivedBase(res);
            virtualStudies(req, res, { sopInstanceUid: target.virtualSop, query: target.query, publicBase });
            return;
          }
        }
        if (match.route.handler === 'thumbnail' && !quirks.hasThumbnail) {
          thumbnails.serve(req, res, target.segments, target.query);
          return;
        }
        const negotiated = negotiate(match.route.routeClass, req.headers.accept, target.query);
        const accept = negotiated.accept;
        const query = match.route.routeClass === 'qido' ? normaliseQidoQuery(negotiated.query, quirks) : negotiated.query;
        const spec = {
          endpoint: dicomweb,
          path: `${dicomweb.basePath}/${target.segments.join('/')}${query ? `?${query}` : ''}`,
          accept,
          publicBase,
          sendForwarded: publicBase.path === '' && dicomweb.basePath === DICOMWEB_ROOT,
          rewritable: match.route.routeClass === 'qido' || match.route.routeClass === 'metadata' || match.route.routeClass === 'stow',
        };
        varyOnDerivedBase(res);
        if (match.route.handler === 'stow') {
          serveStow(ctx, stowHooks, req, res, spec, { studyUid: match.params.study, reqId });
        } else {
          forward(ctx, req, res, { ...spec, withBody: false });
        }
        return;
      }

      if (target.kind === 'wado-uri') {
        routeClass = 'wado-uri';
        if (method !== 'GET' && method !== 'HEAD') throw new MethodNotAllowed(['GET', 'HEAD'], 'WADO-URI supports GET (and HEAD) only');
        checkWadoUriQuery(target.query);
        varyOnDerivedBase(res);
        forward(ctx, req, res, {
          endpoint: wadoUri,
          path: `${wadoUri.basePath}?${normaliseWadoUriQuery(target.query, quirks)}`,
          accept: undefined,
          publicBase: baseFor(req, target.virtualSop),
          sendForwarded: false,
          rewritable: false,
          withBody: false,
        });
        return;
      }

      routeClass = target.path === '/healthz' || target.path === '/readyz' ? 'health' : target.path === '/metrics' ? 'metrics' : 'app';
      app(req as Request, res as Response, (err?: unknown) => {
        if (err) fail(req, res, err);
        else sendProblem(res, new HttpProblem('NOT_FOUND', 'no such resource'));
      });
    } catch (err) {
      fail(req, res, err);
    }
  };

  const fail = (req: http.IncomingMessage, res: http.ServerResponse, err: unknown): void => {
    const problem = requestProblem(err);
    if (problem.status >= 500 && !(err instanceof HttpProblem)) log.error({ err: (err as Error)?.message }, 'unhandled error');
    const headers: Record<string, string> = {};
    // An upload still coming (a STOW during shutdown, say) is read and dropped rather than cut,
    // or the client gets a reset instead of this answer; the drain closes it afterwards. A body
    // never asked for (no 100 Continue sent) may never come: that connection is closed instead.
    if (problem.code === 'PAYLOAD_TOO_LARGE' || problem.code === 'NOT_READY') settleUnreadBody(req, headers);
    sendProblem(res, problem, headers);
  };

  /**
   * `Expect: 100-continue`: the client holds its body back until told to send it. That go is sent
   * when the body is first read (body-limit.ts), so every check that refuses a request without
   * reading it (host, draining, path, route, method, declared length, /similar's upload checks,
   * a PACS that refuses a STOW from its head) has run by then.
   */
  const onCheckContinue = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    continueOnFirstRead(req, res);
    onRequest(req, res);
  };

  // requestTimeout 0: an upload or download may take as long as it moves. That also switched off
  // Node's 60 s limit on receiving the request head, which keeps slow-header clients out.
  const server = http.createServer({ maxHeaderSize: config.maxHeaderBytes, requestTimeout: 0, headersTimeout: 60_000 }, onRequest);
  // Idle sockets (no bytes either way) are closed after 2 minutes; uploads and downloads in progress are not idle,
  // and neither is a request waiting for the PACS's answer (passthrough.ts lifts the timeout meanwhile).
  server.setTimeout(120_000);
  server.on('checkContinue', onCheckContinue);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // A reset peer reads nothing. A reply must not be spliced into a response under way (a
    // pipelined bad request behind a WADO body), nor taken for the answer to an earlier request
    // whose head and body are all in; a request whose own body is malformed does get its 400.
    const busy = [...(unfinished.get(socket) ?? [])].some((r) => r.headersSent || r.req.complete);
    if (err.code === 'ECONNRESET' || !socket.writable || busy) {
      socket.destroy();
      return;
    }
    const status = CLIENT_ERROR_REPLIES[err.code ?? ''] ?? '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  });

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      // 1. stop accepting: new requests get 503, /readyz fails, no new connections
      draining = true;
      const drained = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // A keep-alive connection whose request finishes during the drain would otherwise stay
      // open until its keep-alive timeout (5 s), holding the drain open with it.
      const idleSweep = setInterval(() => server.closeIdleConnections(), 100);
      // 2. drain in-flight requests, bounded
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([drained, new Promise<void>((r) => (timer = setTimeout(r, config.shutdownGraceMs)))]);
      clearTimeout(timer);
      clearInterval(idleSweep);
      server.closeAllConnections();
      // 3. let STOW listeners finish (the enqueue of index jobs for what the PACS stored), bounded
      if (!(await stowHooks.settle(CLOSE_HOOK_TIMEOUT_MS)))
        log.warn('STOW listeners still running at shutdown; the reconciler will find what they missed');
      // 4. close clients: PACS agents, then whatever later code registered
      upstream.close();
      // Each hook is bounded: a client stuck reconnecting to a service that is
      // gone (Redis, Elasticsearch) must not keep the process from exiting.
      for (const [i, hook] of closeHooks.entries()) {
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            Promise.resolve().then(hook),
            new Promise<never>((_, reject) => {
              timer = setTimeout(() => reject(new Error(`did not finish within ${CLOSE_HOOK_TIMEOUT_MS} ms`)), CLOSE_HOOK_TIMEOUT_MS);
            }),
          ]);
        } catch (err) {
          log.warn({ hook: i, err: (err as Error).message }, 'close hook failed');
        } finally {
          clearTimeout(timer);
        }
      }
    })();
    return closing;
  };

  return {
    app,
    server,
    metrics,
    listen: (port = config.port, host = config.host) =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const addr = server.address() as AddressInfo;
          bind = { host, port: addr.port };
          resolve(addr);
        });
      }),
    close,
    onStowResponse: (listener) => stowHooks.add(listener),
    addReadinessCheck: (check) => {
      checks.push(check);
    },
    addCloseHook: (hook) => {
      closeHooks.push(hook);
    },
    setVirtualStudies: (handler) => {
      virtualStudies = handler;
    },
  };
}

/** PACS reachable: a QIDO for one study answers with any status below 500 (401 still proves it is up). */
function pacsCheck(upstream: Upstream, endpoint: ReturnType<typeof parseEndpoint>, auth: string | undefined): ReadinessCheck {
  return {
    name: 'pacs',
    check: (signal) =>
      new Promise<void>((resolve, reject) => {
        const headers = upstreamRequestHeaders(
          {},
          { host: endpoint.hostHeader, defaultAuthorization: auth, accept: 'application/dicom+json', hasBody: false },
        );
        const abort = upstream.send(
          { endpoint, method: 'GET', path: `${endpoint.basePath}/studies?limit=1`, headers, body: null },
          (err, res) => {
            if (err || !res) return reject(new Error(err?.message ?? 'no answer'));
            res.resume();
            if ((res.statusCode ?? 500) >= 500) reject(new Error(`PACS answered ${res.statusCode}`));
            else resolve();
          },
        );
        signal.addEventListener('abort', abort, { once: true });
      }),
  };
}
