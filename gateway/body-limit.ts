/**
 * Counts request-body bytes as they stream to the PACS (chunked uploads have
 * no Content-Length to check up front) and fails once the limit is passed; and
 * what becomes of a body the gateway does not read: `100 Continue` only when it
 * is read, the rest of one it answers without using read and dropped.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform, type TransformCallback, type Writable } from 'node:stream';

/** How long the rest of an upload we will not use is read and dropped before the socket is closed. */
const DISCARD_GRACE_MS = 1000;

/** Requests whose client holds its body back until told `100 Continue`, not told yet. */
const awaitingContinue = new WeakSet<IncomingMessage>();

/**
 * `Expect: 100-continue` (server.ts's checkContinue): the 100 goes out when the body is first
 * read, so everything that refuses a request without reading its body (the gateway's own checks,
 * a PACS that refuses from the head) answers without it, and the body is never sent. Node closes
 * a connection answered without the 100: the body may still come, or never.
 */
export function continueOnFirstRead(req: IncomingMessage, res: ServerResponse): void {
  awaitingContinue.add(req);
  const read = req._read;
  req._read = function (this: IncomingMessage, size: number): void {
    req._read = read;
    if (awaitingContinue.delete(req) && !res.headersSent) res.writeContinue();
    read.call(this, size);
  };
}

/**
 * Read and drop what is left of a request body we answer without using (413, 502, 503), and
 * close the connection if it has not ended within the grace period. Closing with unread bytes
 * makes the kernel send a reset, which can discard our answer before the client reads it.
 */
export function discardUpload(req: IncomingMessage, pipedTo?: Writable): void {
  if (pipedTo) req.unpipe(pipedTo);
  if (req.destroyed) return; // nothing left to read, and no socket to close
  // Reading would ask for the body (the 100 goes out on the first read); nothing is coming.
  if (awaitingContinue.has(req)) return;
  req.resume();
  if (req.readableEnded) return;
  // req.socket is null once the request is destroyed (the client went away meanwhile)
  const t = setTimeout(() => req.socket?.destroy(), DISCARD_GRACE_MS);
  t.unref();
  req.once('end', () => clearTimeout(t));
}

/**
 * Before answering a request whose body we will not read (an error mid-upload): read and drop
 * what is still coming (discardUpload), or, when nothing is, have the connection closed, so
 * that unread bytes are never taken for the next request on it. Adds to `headers`.
 */
export function settleUnreadBody(req: IncomingMessage, headers: Record<string, string>): void {
  if (hasPendingBody(req) && !awaitingContinue.has(req)) discardUpload(req);
  else headers.connection = 'close';
}

/** A request that still has body bytes to come. */
export function hasPendingBody(req: IncomingMessage): boolean {
  if (req.readableEnded) return false;
  const len = req.headers['content-length'];
  return (len !== undefined && len !== '0') || req.headers['transfer-encoding'] !== undefined;
}

export class BodyTooLarge extends Error {
  constructor(readonly limitBytes: number) {
    super(`request body exceeds ${limitBytes} bytes`);
    this.name = 'BodyTooLarge';
  }
}

export class ByteLimit extends Transform {
  private seen = 0;

  constructor(private readonly limitBytes: number) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.limitBytes) {
      cb(new BodyTooLarge(this.limitBytes));
      return;
    }
    cb(null, chunk);
  }
}
