/**
 * Pass-through to the PACS: the request streams up, the answer streams down.
 *
 * Bodies are never buffered, with one exception: textual answers (JSON/XML —
 * QIDO results, metadata, STOW responses), which are collected up to
 * `maxRewriteBytes` so that PACS URLs inside them can be mapped to the gateway
 * (see url-rewrite.ts). WADO-RS/URI bodies (multipart DICOM, frames, images)
 * are piped untouched with their Content-Type — and so their multipart
 * boundary — and Content-Length as the PACS sent them.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
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
  /** JSON/XML answers expected (QIDO, metadata, STOW): ask the PACS for identity encoding so URLs can be mapped. */
  readonly rewritable: boolean;
  /** Stream the request body up (STOW). */
  readonly withBody: boolean;
  /** Receives the PACS's raw answer once the client's response is finished (STOW hook). */
  readonly onAnswered?: (status: number, contentType: string | undefined, body: Buffer) => void;
}

export function forward(ctx: ProxyContext, req: IncomingMessage, res: ServerResponse, spec: ForwardSpec): void {
  const headers = upstreamRequestHeaders(req.headers, {
    host: spec.endpoint.hostHeader,
    defaultAuthorization: ctx.defaultAuthorization,
    accept: spec.accept,
    hasBody: spec.withBody,
  });
  // Answers we may rewrite must come back uncompressed; the rest (WADO bodies) keep the client's choice.
  if (spec.rewritable) delete headers['accept-encoding'];
  if (spec.sendForwarded && ctx.quirks.honoursForwarded) {
    headers.forwarded = `host=${spec.publicBase.host};proto=${spec.publicBase.proto}`;
  }

  let limiter: ByteLimit | null = null;
  let uploaded = false;
  if (spec.withBody) {
    limiter = new ByteLimit(ctx.maxBodyBytes);
    limiter.once('finish', () => (uploaded = true));
    req.pipe(limiter);
  }

  const abort = ctx.upstream.send(
    { endpoint: spec.endpoint, method: req.method ?? 'GET', path: spec.path, headers, body: limiter },
    (err, ures) => {
      if (err || !ures) {
        // The PACS is gone mid-upload: read and drop the rest, or an uploader that sends its
        // whole body before reading gets a reset instead of this answer.
        if (limiter) discardUpload(req, limiter);
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
    // A client that leaves after its whole STOW upload (a short client timeout on a slow store)
    // does not cancel the store: the PACS has every byte. Its answer is still read, for the STOW
    // hook that queues the stored instances; cancelling left them to the reconciler.
    if (!res.writableFinished && !(spec.onAnswered && uploaded)) abort();
  });
}

function upstreamFailed(ctx: ProxyContext, res: ServerResponse, err: UpstreamError): void {
  ctx.onUpstreamError(err.kind);
  if (res.writableEnded || res.destroyed) return;
  sendProblem(res, new HttpProblem(err.kind === 'timeout' ? 'UPSTREAM_TIMEOUT' : 'UPSTREAM_UNREACHABLE', err.message));
}

function respond(ctx: ProxyContext, res: ServerResponse, ures: IncomingMessage, spec: ForwardSpec, head = false): void {
  // The client is gone. A STOW's answer is still read (below) for its hook, which queues what the
  // PACS stored; nothing else is worth reading.
  if (res.destroyed && !spec.onAnswered) {
    ures.destroy();
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
  const contentType = ures.headers['content-type'];
  const declared = ures.headers['content-length'] === undefined ? -1 : Number(ures.headers['content-length']);
  // A compressed answer cannot be rewritten: pass it on as it is.
  const encoded = ures.headers['content-encoding'] !== undefined && ures.headers['content-encoding'] !== 'identity';
  // A HEAD answer has no body to rewrite: its headers (Content-Length included) pass as they are.
  const collect =
    !head && (spec.onAnswered !== undefined || (!encoded && isRewritableType(contentType) && declared <= ctx.maxRewriteBytes));

  // Nothing moving mid-body for the PACS timeout: cut both sides rather than
  // hang (the status is already sent). Paused means the client is not reading:
  // not the PACS's fault, so not counted as an upstream error.
  const idle = setTimeout(() => {
    if (!ures.isPaused()) ctx.onUpstreamError('timeout');
    ures.destroy();
    res.destroy();
  }, ctx.upstream.timeoutMs);
  ures.on('data', () => idle.refresh());
  res.on('drain', () => idle.refresh());
  ures.on('end', () => clearTimeout(idle));
  ures.on('close', () => clearTimeout(idle));
  ures.on('error', () => {
    ctx.onUpstreamError('body');
    res.destroy();
  });
  ures.on('aborted', () => res.destroy());

  if (!collect || declared > ctx.maxRewriteBytes) {
    if (res.destroyed) return void ures.destroy(); // too large to hold for a hook without a client
    res.writeHead(status, out);
    ures.pipe(res);
    return;
  }

  const chunks: Buffer[] = [];
  let size = 0;
  let spilled = false;
  const onData = (chunk: Buffer): void => {
    size += chunk.length;
    chunks.push(chunk);
    if (size > ctx.maxRewriteBytes) {
      // Larger than we are willing to hold: give up rewriting, stream the rest as is.
      spilled = true;
      ures.off('data', onData);
      if (res.destroyed) return void ures.destroy();
      ures.pause();
      delete out['content-length'];
      res.writeHead(status, out);
      for (const c of chunks) res.write(c);
      chunks.length = 0;
      ures.pipe(res);
    }
  };
  ures.on('data', onData);
  ures.on('end', () => {
    if (spilled) return;
    const raw = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
    if (res.destroyed) {
      // the client left meanwhile: nobody to answer, the hook still queues what was stored
      spec.onAnswered?.(status, typeof contentType === 'string' ? contentType : undefined, raw);
      return;
    }
    const body = (encoded ? null : ctx.rewriter.mapBody(raw, base)) ?? raw;
    const headers: OutgoingHttpHeaders = { ...out, 'content-length': body.length };
    res.writeHead(status, headers);
    res.end(body);
    if (spec.onAnswered) {
      const done = spec.onAnswered;
      res.once('finish', () => done(status, typeof contentType === 'string' ? contentType : undefined, raw));
    }
  });
}
