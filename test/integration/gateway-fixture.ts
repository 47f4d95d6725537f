/**
 * Shared pieces of the gateway integration tests (test/integration/gateway-*.test.ts):
 * start a gateway in-process on an ephemeral port in front of the test stack's
 * Orthanc, send raw HTTP (no URL normalisation: traversal tests need the bytes
 * as written), build STOW bodies from real sample files, compare answers with
 * the PACS's own, and delete what a test stored (Orthanc REST, not the gateway).
 */
import net from 'node:net';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { loadConfig } from '../../core/config.js';
import { createGateway, type Gateway, type GatewayDeps } from '../../gateway/server.js';
import { testStack } from '../helpers/stack.js';

export const SAMPLES = process.env.CBMIR_DICOM_SAMPLES ?? path.resolve(import.meta.dirname, '../../../shared/dicom-samples');

export function sample(rel: string): Buffer {
  return readFileSync(path.join(SAMPLES, rel));
}

export interface Running {
  readonly gw: Gateway;
  readonly port: number;
  readonly base: string;
  close(): Promise<void>;
}

/** A gateway in front of the test Orthanc; `env` overrides CBMIR_* settings. */
export async function startGateway(env: Record<string, string> = {}, deps: GatewayDeps = {}): Promise<Running> {
  const config = loadConfig({
    CBMIR_PACS_URL: testStack().orthancDicomWebUrl,
    CBMIR_LOG_LEVEL: 'silent',
    CBMIR_PACS_TIMEOUT_MS: '5000',
    CBMIR_SHUTDOWN_GRACE_MS: '1000',
    ...env,
  });
  const gw = createGateway(config, { defaultMetrics: false, ...deps });
  const addr = await gw.listen(0, '127.0.0.1');
  return { gw, port: addr.port, base: `http://127.0.0.1:${addr.port}`, close: () => gw.close() };
}

export interface RawResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
  readonly ms: number;
}

/** One HTTP request with the path sent exactly as given. */
export function raw(
  url: string,
  opts: { method?: string; path?: string; headers?: Record<string, string>; body?: Buffer; timeoutMs?: number } = {},
): Promise<RawResponse> {
  const u = new URL(url);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        method: opts.method ?? 'GET',
        path: opts.path ?? u.pathname + u.search,
        headers: opts.headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), ms: performance.now() - t0 }),
        );
        res.on('error', reject);
      },
    );
    req.setTimeout(opts.timeoutMs ?? 30_000, () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end(opts.body);
  });
}

export function json<T = unknown>(r: RawResponse): T {
  return JSON.parse(r.body.toString('utf8')) as T;
}

/** STOW-RS request body: one application/dicom part per file. */
export function stowBody(files: readonly Buffer[], boundary = 'cbmir-test-boundary-7c1f'): { body: Buffer; contentType: string } {
  const parts: Buffer[] = [];
  for (const f of files) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), f, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(parts), contentType: `multipart/related; type="application/dicom"; boundary=${boundary}` };
}

/** The multipart boundary of a Content-Type, if any. */
export function boundaryOf(contentType: string | undefined): string | undefined {
  return /boundary=("?)([^";]+)\1/i.exec(contentType ?? '')?.[2];
}

/**
 * Make a gateway answer and a direct answer comparable: the multipart boundary
 * (random per answer) and the DICOMweb root each side writes into URLs.
 */
export function normalise(r: RawResponse, roots: readonly string[]): { status: number; contentType: string; body: string } {
  const ct = r.headers['content-type'] ?? '';
  const b = boundaryOf(ct);
  let body = r.body.toString('latin1');
  let contentType = ct;
  if (b) {
    body = body.split(b).join('BOUNDARY');
    contentType = contentType.split(b).join('BOUNDARY');
  }
  for (const root of roots) body = body.split(root).join('ROOT');
  return { status: r.status, contentType, body };
}

export interface StoredUids {
  readonly study: string;
  readonly series: string;
  readonly instance: string;
}

/** Store a file directly in Orthanc (REST API) and read its UIDs back. */
export async function storeDirect(orthancUrl: string, file: Buffer, auth?: string): Promise<StoredUids> {
  const headers: Record<string, string> = { 'content-type': 'application/dicom', ...(auth ? { authorization: auth } : {}) };
  const r = await raw(`${orthancUrl}/instances`, { method: 'POST', headers, body: file });
  if (r.status !== 200) throw new Error(`Orthanc refused the upload: ${r.status}`);
  const id = json<{ ID: string }>(r).ID;
  const tags = json<Record<string, string>>(
    await raw(`${orthancUrl}/instances/${id}/tags?simplify`, { headers: auth ? { authorization: auth } : undefined }),
  );
  return { study: tags.StudyInstanceUID as string, series: tags.SeriesInstanceUID as string, instance: tags.SOPInstanceUID as string };
}

/** Delete studies by Study Instance UID through Orthanc's REST API (never through the gateway). */
export async function deleteStudies(orthancUrl: string, studyUids: Iterable<string>, auth?: string): Promise<void> {
  const headers: Record<string, string> = auth ? { authorization: auth } : {};
  for (const uid of new Set(studyUids)) {
    const r = await raw(`${orthancUrl}/tools/lookup`, { method: 'POST', headers, body: Buffer.from(uid) });
    if (r.status !== 200) continue;
    for (const hit of json<{ ID: string; Type: string }[]>(r)) {
      if (hit.Type === 'Study') await raw(`${orthancUrl}/studies/${hit.ID}`, { method: 'DELETE', headers });
    }
  }
}

/** SOP Instance UIDs listed in a STOW-RS JSON answer (ReferencedSOPSequence 0008,1199 → 0008,1155). */
export function referencedSops(stowJson: unknown): string[] {
  const seq = (stowJson as Record<string, { Value?: Record<string, { Value?: string[] }>[] }>)['00081199']?.Value ?? [];
  return seq.map((item) => item['00081155']?.Value?.[0]).filter((v): v is string => typeof v === 'string');
}

/**
 * POST a body of `size` bytes the way many DICOMweb uploaders do: the whole body first, the
 * answer read only afterwards. Resolves with the raw answer text; rejects on a connection
 * reset (what a server that closes under an unread upload causes).
 */
export function uploadThenRead(base: string, path: string, size: number): Promise<string> {
  const { port } = new URL(base);
  return new Promise<string>((resolve, reject) => {
    const sock = net.connect(Number(port), '127.0.0.1');
    sock.on('error', reject);
    sock.pause();
    const chunk = Buffer.alloc(1 << 20, 0x41);
    let sent = 0;
    const pump = (): void => {
      while (sent < size) {
        const n = Math.min(chunk.length, size - sent);
        sent += n;
        if (!sock.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void sock.once('drain', pump);
      }
      let got = '';
      sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
      sock.on('end', () => resolve(got));
      sock.resume();
      setTimeout(() => sock.end(), 200);
    };
    sock.write(
      `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
        `Content-Type: multipart/related; type="application/dicom"; boundary=b\r\nContent-Length: ${size}\r\n\r\n`,
    );
    pump();
  });
}

/**
 * The same with `Transfer-Encoding: chunked` (no Content-Length to refuse up front): sends
 * `size` bytes in 1 MiB chunks, reading whatever the gateway answers meanwhile, and resolves
 * with it once the connection ends or is closed.
 */
export function uploadChunkedThenRead(base: string, path: string, size: number): Promise<string> {
  const { port } = new URL(base);
  return new Promise<string>((resolve) => {
    const sock = net.connect(Number(port), '127.0.0.1');
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
    sock.on('error', () => undefined); // a reset after the answer is allowed; the answer is what counts
    sock.on('close', () => resolve(got));
    const chunk = Buffer.alloc(1 << 20, 0x41);
    let sent = 0;
    const pump = (): void => {
      while (sent < size && !sock.destroyed) {
        const n = Math.min(chunk.length, size - sent);
        sent += n;
        const framed = Buffer.concat([
          Buffer.from(`${n.toString(16)}\r\n`),
          n === chunk.length ? chunk : chunk.subarray(0, n),
          Buffer.from('\r\n'),
        ]);
        if (!sock.write(framed)) return void sock.once('drain', pump);
      }
      if (!sock.destroyed) sock.write('0\r\n\r\n');
      setTimeout(() => sock.end(), 200);
    };
    sock.write(`POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/dicom\r\nTransfer-Encoding: chunked\r\n\r\n`);
    pump();
  });
}
