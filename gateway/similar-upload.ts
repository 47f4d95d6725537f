/**
 * The body of POST /similar: one DICOM instance, as
 *   Content-Type: application/dicom                         (the Part-10 bytes), or
 *   Content-Type: multipart/related; type="application/dicom"; boundary=…
 *                                                           (STOW-RS shape, PS3.18 §10.5;
 *                                                            the first application/dicom part)
 * bounded by MAX_UPLOAD_BYTES (core/jobs.ts: the bytes travel in a job through Redis):
 * a Content-Length above it is refused before reading, a chunked body once it passes it;
 * and in time (UPLOAD_PACE): a body read while it holds one of the few upload slots must
 * keep coming, or a client sending a byte a minute would hold its slot for ever.
 */
import type { IncomingMessage } from 'node:http';
import { parseMultipart } from '@remix-run/multipart-parser';
import { HttpProblem } from '../core/errors.js';

const DICM_OFFSET = 128;

/** How fast an upload must come: `graceMs` for free, then a second more per `minBytesPerSecond` bytes received. */
export interface UploadPace {
  readonly graceMs: number;
  readonly minBytesPerSecond: number;
}

/**
 * 10 s, then 64 KiB/s on average (512 kbit/s: a 64 MiB image may take 17 min, a 5 MB one
 * 86 s). The deadline moves on with what has arrived rather than being one fixed bound, so
 * that a slot is held only by a client really sending: one that trickles (a byte every
 * 100 s keeps the idle timer off) loses it after the grace, while a slow but steady upload of
 * any size up to the limit still gets through. A total bound short enough to stop a trickle
 * (60 s) would refuse a large image over a modest link instead.
 */
export const UPLOAD_PACE: UploadPace = Object.freeze({ graceMs: 10_000, minBytesPerSecond: 64 * 1024 });

/**
 * Read the request body, at most `limit` bytes (413 beyond), at the `pace` (408
 * UPLOAD_TIMEOUT when it falls behind). Past the limit or the deadline it stops reading and
 * leaves the request open (paused), so the caller can answer and drop the rest
 * (discardUpload): leaving a `for await` loop early would destroy the request under the answer.
 */
function readBody(req: IncomingMessage, limit: number, pace: UploadPace): Promise<Buffer> {
  // A declared length over the limit was refused by the route (refuseDeclaredTooLarge), before
  // anything else; a body that passes it while streaming is cut here.
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let seen = 0;
    const started = performance.now();
    const deadline = (): number => started + pace.graceMs + (seen / pace.minBytesPerSecond) * 1000;
    // One timer, looked at again when it fires: rescheduling on every chunk would cost a timer per chunk.
    const check = (): void => {
      const left = deadline() - performance.now();
      if (left > 0) {
        timer = setTimeout(check, left).unref();
        return;
      }
      done();
      req.pause();
      chunks.length = 0;
      reject(tooSlow(pace));
    };
    let timer = setTimeout(check, pace.graceMs).unref();
    const done = (): void => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      seen += chunk.length;
      if (seen > limit) {
        done();
        req.pause();
        chunks.length = 0;
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      done();
      resolve(Buffer.concat(chunks, seen));
    };
    const onError = (err: Error): void => {
      done();
      reject(err);
    };
    // The client went away mid-upload: nobody is left to answer, and it is not our failure.
    const onClose = (): void => {
      done();
      reject(new HttpProblem('BAD_PARAM', 'the upload ended before its body was complete'));
    };
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onError);
    req.once('close', onClose);
  });
}

/**
 * 413 for a Content-Length above `limit`, before anything else is asked: a client told to wait
 * for a slot (503 + Retry-After) would otherwise retry a body that can only ever be refused.
 */
export function refuseDeclaredTooLarge(req: IncomingMessage, limit: number): void {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge(limit);
}

function tooLarge(limit: number): HttpProblem {
  return new HttpProblem('PAYLOAD_TOO_LARGE', `a query image is at most ${limit} bytes`);
}

function tooSlow(pace: UploadPace): HttpProblem {
  return new HttpProblem(
    'UPLOAD_TIMEOUT',
    `the upload came too slowly: after its first ${pace.graceMs / 1000} s a query image must arrive at ${pace.minBytesPerSecond} bytes a second on average`,
  );
}

/**
 * What a POST /similar Content-Type allows, checked before a byte of the body is read:
 * undefined for application/dicom, the boundary for multipart/related; a problem otherwise.
 */
export function uploadBoundary(contentType: string | undefined): string | undefined {
  const media = (contentType ?? '').toLowerCase().split(';')[0]?.trim() ?? '';
  if (media === 'application/dicom') return undefined;
  if (media !== 'multipart/related') {
    throw new HttpProblem('UNSUPPORTED_MEDIA_TYPE', 'POST /similar takes application/dicom or multipart/related; type="application/dicom"');
  }
  const type = /;\s*type="?([^";]+)"?/i.exec(contentType ?? '')?.[1]?.toLowerCase();
  if (type !== undefined && type !== 'application/dicom') {
    throw new HttpProblem('UNSUPPORTED_MEDIA_TYPE', 'multipart/related must carry type="application/dicom"');
  }
  const boundary = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType ?? '');
  const b = boundary?.[1] ?? boundary?.[2];
  if (!b) throw new HttpProblem('BAD_PARAM', 'multipart/related without a boundary');
  return b;
}

/** The uploaded instance: the body read within `limit` and at the `pace`, then its DICOM by Content-Type. */
export async function readUploadedDicom(req: IncomingMessage, limit: number, pace: UploadPace = UPLOAD_PACE): Promise<Uint8Array> {
  return extractDicom(req.headers['content-type'], await readBody(req, limit, pace), limit);
}

/** The DICOM instance in a POST /similar body, by Content-Type. */
export function extractDicom(contentType: string | undefined, body: Buffer, limit: number): Uint8Array {
  const b = uploadBoundary(contentType);
  let bytes: Uint8Array | undefined;
  if (b === undefined) {
    bytes = body;
  } else {
    try {
      for (const part of parseMultipart(body, {
        boundary: b,
        maxFileSize: limit,
        maxTotalSize: limit + 1024 * 1024,
      })) {
        const pt = part.mediaType?.toLowerCase();
        if (pt === undefined || pt === 'application/dicom') {
          bytes = part.bytes;
          break;
        }
      }
    } catch (err) {
      throw new HttpProblem('BAD_PARAM', `malformed multipart body: ${(err as Error).message.slice(0, 200)}`);
    }
    if (!bytes) throw new HttpProblem('BAD_PARAM', 'the multipart body holds no application/dicom part');
  }
  // Cheap sanity check here; the worker's decoder is the judge of everything else.
  if (bytes.length < DICM_OFFSET + 4 || Buffer.from(bytes.buffer, bytes.byteOffset + DICM_OFFSET, 4).toString('latin1') !== 'DICM') {
    throw new HttpProblem('NOT_EMBEDDABLE', 'not a DICOM Part-10 file (no "DICM" preamble)');
  }
  return bytes;
}
