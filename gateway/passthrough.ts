/**
 * Pass-through to the PACS: the request streams up, the answer streams down.
 *
 * No body is held whole. JSON/XML answers (QIDO results, metadata, STOW
 * responses, errors) stream through a byte-level rewriter that maps PACS URLs
 * onto the gateway (url-rewrite.ts). Their first REWRITE_WINDOW_BYTES are held
 * before the head is sent: an answer that fits keeps an exact Content-Length,
 * and a PACS that fails within it still gets a 502/504 problem instead of a cut
 * connection. WADO-RS/URI bodies (multipart DICOM, frames, images) are piped
 * untouched with their Content-Type — and so their multipart boundary — and
 * Content-Length as the PACS sent them. A STOW answer is also kept, up to
 * maxRewriteBytes, for the STOW hook.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { HttpProblem } from '../core/errors.js';
import { BodyTooLarge, ByteLimit, discardUpload } from './body-limit.js';
import { downstreamResponseHeaders, upstreamRequestHeaders } from './headers.js';
import type { PacsQuirks } from './pacs-quirks.js';
import { sendProblem } from './problem.js';
import type { PublicBase } from './public-url.js';
import { isRewritableType, type UrlRewriter } from './url-rewrite.js';
import { type Endpoint, type Upstream, type UpstreamError, type UpstreamFailure } from './upstream.js';

export interface ProxyContext {
  readonly upstream: Upstream;
  readonly rewriter: UrlRewriter;
  readonly quirks: PacsQuirks;
  readonly defaultAuthorization: string | undefined;
  readonly maxBodyBytes: number;
  /** Largest STOW answer kept for the STOW hook (the answer itself streams to the client whatever its size). */
  readonly maxRewriteBytes: number;
  readonly onUpstreamError: (kind: UpstreamFailure | 'body') => void;
}

export interface ForwardSpec {
  readonly endpoint: Endpoint;
  /** Path + query on the PACS. */
  readonly path: string;
  /** Accept header to send instead of the client's (negotiation fixes); undefined keeps it. */
  readonly accept: string | undefined;
  readonly publicBase: PublicBase;
  /** Ask the PACS to build gateway URLs itself (RFC 7239 Forwarded) — only when the root paths agree. */
  readonly sendForwarded: boolean;
  /** JSON/XML answers expected (QIDO, metadata, STOW): ask the PACS for whole, uncompressed answers so URLs can be mapped. */
  readonly rewritable: boolean;
  /** Stream the request body up (STOW). */
  readonly withBody: boolean;
  /** Receives the PACS's raw answer once the client's response is finished (STOW hook). */
  readonly onAnswered?: (status: number, contentType: string | undefined, body: Buffer) => void;
}

/** Held before a rewritable answer's head is sent (see the top of this file). */
const REWRITE_WINDOW_BYTES = 64 * 1024;
/** Headers that describe the PACS's bytes, not the mapped ones. */
const BYTE_HEADERS = ['content-length', 'etag', 'content-md5'] as const;

export function forward(ctx: ProxyContext, req: IncomingMessage, res: ServerResponse, spec: ForwardSpec): void {
  const headers = requestHeaders(ctx, req, spec);
  const idle = clientIdleTimeout(req);
  const limiter = spec.withBody ? new ByteLimit(ctx.maxBodyBytes) : null;
  // The client's whole body has gone through the limiter (its 'finish').
  const uploaded = (): boolean => limiter?.writableFinished === true;
  if (!limiter) idle.suspend();

  const hook = spec.onAnswered;
  const abort = ctx.upstream.send(
    {
      endpoint: spec.endpoint,
      method: req.method ?? 'GET',
      path: spec.path,
      headers,
      body: limiter,
      ...(limiter
        ? {
            // Read only once the PACS is to get it: a client that sent `Expect: 100-continue` is told
            // to go on (server.ts) only then, and one the PACS refuses from the head never sends a byte.
            onBodyWanted: () => void req.pipe(limiter),
            // From here the wait is for the PACS's answer, timed by the STOW timeout, not the client's.
            onBodySent: () => idle.suspend(),
          }
        : {}),
      // A STOW answer that comes after the 504 still feeds the hook: the PACS stored the instances.
      ...(hook ? { onLateAnswer: (ures: IncomingMessage) => readForHook(ctx, ures, hook) } : {}),
    },
    (err, ures) => {
      idle.restore();
      // The PACS is gone mid-upload, or answered before it had the whole body (a 401 or 413 from
      // the head): the rest is read and dropped, or an uploader that sends its whole body before
      // reading gets a reset instead of this answer (one still waiting for its 100 sends nothing).
      if (limiter && !uploaded()) discardUpload(req, limiter);
      if (err || !ures) {
        upstreamFailed(ctx, res, err as UpstreamError);
        return;
      }
      respond(ctx, res, ures, spec, req.method === 'HEAD');
    },
  );

  limiter?.on('error', (err) => {
    abort();
    if (err instanceof BodyTooLarge) {
      // No 'Connection: close' here: with it Node closes the socket as soon as the 413 is
      // written, and the client's next chunk draws a TCP reset that can discard the 413
      // before the client reads it. Instead the rest of the upload is read and discarded
      // for a grace period, then the socket is closed.
      discardUpload(req, limiter as ByteLimit);
      sendProblem(res, new HttpProblem('PAYLOAD_TOO_LARGE', err.message));
    } else {
      res.destroy();
    }
  });
  res.on('close', () => {
    idle.restore(); // an aborted call never reaches the callback above
    // A client that leaves after its whole STOW upload (a short client timeout on a slow store)
    // does not cancel the store: the PACS has every byte. Its answer is still read, for the STOW
    // hook that queues the stored instances; cancelling left them to the reconciler.
    if (!res.writableFinished && !(hook && uploaded())) abort();
  });
}

function requestHeaders(ctx: ProxyContext, req: IncomingMessage, spec: ForwardSpec): OutgoingHttpHeaders {
  const headers = upstreamRequestHeaders(req.headers, {
    host: spec.endpoint.hostHeader,
    defaultAuthorization: ctx.defaultAuthorization,
    accept: spec.accept,
    hasBody: spec.withBody,
  });
  if (spec.rewritable) {
    // Answers we may rewrite must come back uncompressed (the rest, WADO bodies, keep the
    // client's choice), and whole: a range of the PACS's bytes is no range of the mapped ones.
    delete headers['accept-encoding'];
    delete headers.range;
    delete headers['if-range'];
  }
  if (spec.sendForwarded && ctx.quirks.honoursForwarded) {
    headers.forwarded = `host=${spec.publicBase.host};proto=${spec.publicBase.proto}`;
  }
  return headers;
}

/** Per client connection: how many of its requests wait for the PACS, and its idle timeout meanwhile. */
const waitingOnPacs = new WeakMap<Socket, { count: number; saved: number }>();

/**
 * The client connection's idle timeout (server.setTimeout) is for a client that sends nothing;
 * while it waits for the PACS's answer no byte moves on its socket, so the timeout is off from
 * the end of the request (of an upload: once the PACS has all of it) until the answer's head,
 * then back to what it was — once no other request on the connection (pipelined) still waits.
 */
function clientIdleTimeout(req: IncomingMessage): { suspend(): void; restore(): void } {
  const socket = req.socket;
  let state: 'before' | 'waiting' | 'over' = 'before';
  return {
    suspend: () => {
      if (state !== 'before') return;
      state = 'waiting';
      const w = waitingOnPacs.get(socket);
      if (w) return void w.count++;
      waitingOnPacs.set(socket, { count: 1, saved: socket.timeout ?? 0 });
      if (socket.timeout) socket.setTimeout(0);
    },
    restore: () => {
      const waited = state === 'waiting';
      state = 'over';
      const w = waitingOnPacs.get(socket);
      if (!waited || !w || --w.count > 0) return;
      waitingOnPacs.delete(socket);
      if (w.saved && !socket.destroyed) socket.setTimeout(w.saved);
    },
  };
}

function upstreamFailed(ctx: ProxyContext, res: ServerResponse, err: UpstreamError): void {
  ctx.onUpstreamError(err.kind);
  if (res.writableEnded || res.destroyed) return;
  sendProblem(res, new HttpProblem(err.kind === 'timeout' ? 'UPSTREAM_TIMEOUT' : 'UPSTREAM_UNREACHABLE', err.message));
}

function single(v: string | string[] | undefined): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function respond(ctx: ProxyContext, res: ServerResponse, ures: IncomingMessage, spec: ForwardSpec, head: boolean): void {
  const hook = spec.onAnswered;
  if (res.destroyed) {
    // The client is gone. A STOW's answer is still read for its hook, which queues what the
    // PACS stored; nothing else is worth reading.
    if (hook) readForHook(ctx, ures, hook);
    else ures.destroy();
    return;
  }
  const status = ures.statusCode ?? 502;
  const base = spec.publicBase.base;
  const ownVary = res.getHeader('vary');
  const out = downstreamResponseHeaders(
    ures.headers,
    (v) => ctx.rewriter.mapUrl(v, base),
    ownVary === undefined ? undefined : String(ownVary),
  );
  const encoded = ures.headers['content-encoding'] !== undefined && ures.headers['content-encoding'] !== 'identity';
  // A compressed answer cannot be mapped, and a 206 is a range of the PACS's bytes: both pass as they are.
  const mappable = !encoded && status !== 206 && isRewritableType(single(ures.headers['content-type']));
  const bodyless = head || status === 204 || status === 304;

  watchAnswer(ctx, res, ures);
  if (hook) {
    keepForHook(ctx, ures, res, hook);
    // A client that leaves mid-answer: the rest is still read, for the hook.
    res.once('close', () => {
      if (res.writableFinished) return;
      ures.unpipe();
      ures.resume();
    });
  }
  if (bodyless || !mappable) {
    // HEAD tells what GET would send: its body may be mapped, so the PACS's length and tags would not describe it.
    if (head && mappable) for (const h of BYTE_HEADERS) delete out[h];
    res.writeHead(status, out);
    ures.pipe(res);
    return;
  }
  const declared = Number(single(ures.headers['content-length']) ?? -1);
  // Most answers (QIDO pages, series metadata) are small and say so: mapped whole, without a stream per answer.
  if (declared >= 0 && declared <= REWRITE_WINDOW_BYTES) mapWhole(ctx, res, ures, status, out, base);
  else streamMapped(ctx, res, ures, status, out, base);
}

/** An answer of a declared length within REWRITE_WINDOW_BYTES: read, mapped and sent with its exact length. */
function mapWhole(ctx: ProxyContext, res: ServerResponse, ures: IncomingMessage, status: number, out: OutgoingHttpHeaders, base: string) {
  const chunks: Buffer[] = [];
  let size = 0;
  ures.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    size += chunk.length;
  });
  ures.once('end', () => {
    if (res.headersSent || res.destroyed) return;
    const raw = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
    const mapped = ctx.rewriter.mapBody(raw, base);
    sendWhole(res, status, out, mapped ?? raw, mapped !== null);
  });
}

/** A whole (mapped) answer with its exact length; the PACS's byte headers only if its bytes are unchanged. */
function sendWhole(res: ServerResponse, status: number, out: OutgoingHttpHeaders, body: Buffer, changed: boolean): void {
  if (changed) for (const h of BYTE_HEADERS) delete out[h];
  res.writeHead(status, { ...out, 'content-length': body.length });
  res.end(body);
}

/**
 * Map the answer as it streams. Its first REWRITE_WINDOW_BYTES are held: one that ends within
 * them goes out with its exact length; a longer one goes out chunked as it comes.
 */
function streamMapped(
  ctx: ProxyContext,
  res: ServerResponse,
  ures: IncomingMessage,
  status: number,
  out: OutgoingHttpHeaders,
  base: string,
) {
  const mapper = ctx.rewriter.bodyRewriter(base);
  const held: Buffer[] = [];
  let heldBytes = 0;
  const hold = (chunk: Buffer): void => {
    held.push(chunk);
    heldBytes += chunk.length;
    if (heldBytes <= REWRITE_WINDOW_BYTES) return;
    mapper.off('data', hold);
    for (const h of BYTE_HEADERS) delete out[h];
    res.writeHead(status, out);
    for (const c of held) res.write(c);
    held.length = 0;
    mapper.pipe(res);
  };
  mapper.on('data', hold);
  mapper.once('end', () => {
    if (res.headersSent || res.destroyed) return;
    sendWhole(res, status, out, Buffer.concat(held, heldBytes), mapper.replaced > 0);
  });
  ures.pipe(mapper);
}

/**
 * Bound the answer's body: nothing moving for the PACS timeout, or the PACS's connection lost
 * mid-body. Before the head is sent that is a 504/502 problem; after it, the connection is cut
 * (the client must not take a truncated body for whole). Paused means the client is not
 * reading: not the PACS's fault, so not counted as an upstream error.
 */
function watchAnswer(ctx: ProxyContext, res: ServerResponse, ures: IncomingMessage): void {
  let settled = false;
  const fail = (kind: 'timeout' | 'body', count: boolean): void => {
    if (settled) return;
    settled = true;
    if (count && !res.destroyed) ctx.onUpstreamError(kind); // destroyed: the client left, and the answer was cut for it
    ures.destroy();
    if (res.destroyed) return;
    const problem =
      kind === 'timeout'
        ? new HttpProblem('UPSTREAM_TIMEOUT', `the PACS sent nothing for ${ctx.upstream.timeoutMs} ms mid-answer`)
        : new HttpProblem('UPSTREAM_UNREACHABLE', 'the PACS connection failed mid-answer');
    sendProblem(res, problem); // cuts the connection when the head is already out
  };
  const idle = setTimeout(() => fail('timeout', !ures.isPaused()), ctx.upstream.timeoutMs);
  ures.on('data', () => idle.refresh());
  res.on('drain', () => idle.refresh());
  ures.once('end', () => {
    settled = true;
    clearTimeout(idle);
  });
  ures.on('error', () => undefined); // reported through 'close' below
  ures.once('close', () => {
    clearTimeout(idle);
    if (!ures.complete) fail('body', true);
  });
}

/** Keep the raw answer (bounded) and hand it to the hook once the client's response is done. */
function keepForHook(
  ctx: ProxyContext,
  ures: IncomingMessage,
  res: ServerResponse | null,
  hook: NonNullable<ForwardSpec['onAnswered']>,
): void {
  const status = ures.statusCode ?? 502;
  const contentType = single(ures.headers['content-type']);
  const chunks: Buffer[] = [];
  let size = 0;
  const onData = (chunk: Buffer): void => {
    size += chunk.length;
    if (size <= ctx.maxRewriteBytes) chunks.push(chunk);
    else {
      // Too large to keep: the hook gets nothing, the reconciler finds what was stored.
      ures.off('data', onData);
      chunks.length = 0;
      if (res === null) ures.destroy();
    }
  };
  ures.on('data', onData);
  ures.once('end', () => {
    if (size > ctx.maxRewriteBytes) return;
    const deliver = (): void => hook(status, contentType, Buffer.concat(chunks, size));
    if (res === null || res.writableFinished || res.destroyed) deliver();
    else res.once('close', deliver);
  });
}

/** An answer nobody else reads (the client left, or already had its 504): only for the hook. */
function readForHook(ctx: ProxyContext, ures: IncomingMessage, hook: NonNullable<ForwardSpec['onAnswered']>): void {
  const idle = setTimeout(() => ures.destroy(), ctx.upstream.timeoutMs);
  ures.on('data', () => idle.refresh());
  ures.once('close', () => clearTimeout(idle));
  ures.on('error', () => undefined);
  keepForHook(ctx, ures, null, hook);
}
