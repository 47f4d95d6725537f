/**
 * The body of POST /similar: one DICOM instance, as
 *   Content-Type: application/dicom                         (the Part-10 bytes), or
 *   Content-Type: multipart/related; type="application/dicom"; boundary=…
 *                                                           (STOW-RS shape, PS3.18 §10.5;
 *                                                            the first application/dicom part)
 * bounded by MAX_UPLOAD_BYTES (core/jobs.ts: the bytes travel in a job through Redis):
 * a Content-Length above it is refused before reading, a chunked body once it passes it.
 */
import type { IncomingMessage } from 'node:http';
import { parseMultipart } from '@remix-run/multipart-parser';
import { HttpProblem } from '../core/errors.js';

const DICM_OFFSET = 128;

/**
 * Read the request body, at most `limit` bytes (413 beyond). Past the limit it stops reading
 * and leaves the request open (paused), so the caller can answer 413 and drop the rest
 * (discardUpload): leaving a `for await` loop early would destroy the request under the answer.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let seen = 0;
    const done = (): void => {
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

function tooLarge(limit: number): HttpProblem {
  return new HttpProblem('PAYLOAD_TOO_LARGE', `a query image is at most ${limit} bytes`);
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
