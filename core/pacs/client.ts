/**
 * The PACS as a DICOMweb server (PS3.18): the few calls workers and the
 * /similar routes make themselves (the gateway's pass-through does not use
 * this). One keep-alive pool per PACS; every call has a deadline.
 */
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import { parseMultipart, type MultipartPart } from '@remix-run/multipart-parser';
import type { DicomJsonDataset } from '../dicom-json.js';
import type { StoredFrame } from '../dicom/single-frame.js';

export interface PacsClientOptions {
  /** DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web */
  readonly url: string;
  readonly user?: string | undefined;
  readonly password?: string | undefined;
  readonly timeoutMs?: number;
  readonly connections?: number;
}

export interface CallOptions {
  /** The caller's Authorization header, passed through unchanged. */
  readonly authorization?: string | undefined;
  /** The caller's other identity headers (Cookie, a token header), passed through unchanged. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
}

/** A PACS answer that says the thing is not there (404) or not ours to see (401/403). */
export class PacsHttpError extends Error {
  constructor(
    readonly status: number,
    readonly path: string,
    /** The PACS's WWW-Authenticate: a client asked to log in must be told the PACS's scheme and realm, not ours. */
    readonly challenge?: string,
  ) {
    super(`PACS answered ${status} for ${path.split('?')[0]}`);
    this.name = 'PacsHttpError';
  }
  /** 5xx, 429 and 408 are worth retrying; 4xx are not. */
  get transient(): boolean {
    return this.status >= 500 || this.status === 429 || this.status === 408;
  }
}

/**
 * A WADO-RS answer larger than the caller will hold: refused on its declared Content-Length
 * before any of it is read, or once the bytes read pass the limit (the rest is not read).
 */
export class PacsTooLargeError extends Error {
  constructor(
    readonly limit: number,
    /** The declared size; undefined when the answer was cut off while streaming. */
    readonly declaredBytes: number | undefined,
    readonly path: string,
  ) {
    super(`PACS answer for ${path.split('?')[0]} is ${declaredBytes ?? `more than ${limit}`} bytes, over the limit of ${limit}`);
    this.name = 'PacsTooLargeError';
  }
}

export interface RetrieveOptions {
  /** Refuse (PacsTooLargeError) an answer of more bytes than this, without buffering it. */
  readonly maxBytes?: number;
}

/** The body, refused past `maxBytes`: on the declared length at once, else while it streams. */
async function readBody(body: Dispatcher.ResponseData['body'], contentLength: string | string[] | undefined, path: string, maxBytes: number | undefined): Promise<Buffer> {
  if (maxBytes === undefined) return Buffer.from(await body.arrayBuffer());
  const declared = Number(Array.isArray(contentLength) ? contentLength[0] : contentLength);
  if (contentLength !== undefined && Number.isSafeInteger(declared) && declared > maxBytes) {
    body.destroy();
    throw new PacsTooLargeError(maxBytes, declared, path);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) {
      body.destroy();
      throw new PacsTooLargeError(maxBytes, undefined, path);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/** The first part of a multipart/related answer. */
function onlyPart(r: { contentType: string; body: Buffer }, what: string): MultipartPart {
  const boundary = /boundary="?([^";]+)"?/i.exec(r.contentType)?.[1];
  if (!boundary) throw new Error(`WADO-RS answer for ${what} is not multipart (${r.contentType || 'no content-type'})`);
  for (const part of parseMultipart(new Uint8Array(r.body.buffer, r.body.byteOffset, r.body.length), { boundary, maxFileSize: 2 ** 31 - 1 })) {
    return part;
  }
  throw new Error(`WADO-RS answer for ${what} held no part`);
}

/** PS3.18 Table 8.7.3-5: the transfer syntax a frame media type means when it names none. */
const DEFAULT_FRAME_SYNTAX: Readonly<Record<string, string>> = {
  'application/octet-stream': '1.2.840.10008.1.2.1',
  'image/jpeg': '1.2.840.10008.1.2.4.70',
  'image/dicom-rle': '1.2.840.10008.1.2.5',
  'image/x-dicom-rle': '1.2.840.10008.1.2.5',
  'image/jls': '1.2.840.10008.1.2.4.80',
  'image/x-jls': '1.2.840.10008.1.2.4.80',
  'image/jp2': '1.2.840.10008.1.2.4.90',
  'image/jpx': '1.2.840.10008.1.2.4.92',
  'image/jphc': '1.2.840.10008.1.2.4.201',
};

/**
 * The transfer syntax of a frame's media type: its transfer-syntax parameter (transferSyntax in
 * DICOMweb plugins before 1.2), else the media type's default. For multipart/related, of its type
 * parameter, which Orthanc writes unquoted: `multipart/related; type=image/jls; transfer-syntax=…`.
 */
export function transferSyntaxOf(contentType: string | undefined): string | undefined {
  if (!contentType) return undefined;
  const [head = '', ...params] = contentType.split(';').map((p) => p.trim());
  const values = new Map(
    params.filter((p) => p.includes('=')).map((p) => [p.slice(0, p.indexOf('=')).trim().toLowerCase(), p.slice(p.indexOf('=') + 1).trim().replace(/^"|"$/g, '')]),
  );
  const named = values.get('transfer-syntax') ?? values.get('transfersyntax');
  if (named && named !== '*') return named;
  const type = (/^multipart\//i.test(head) ? values.get('type') : head)?.toLowerCase();
  return type ? DEFAULT_FRAME_SYNTAX[type] : undefined;
}

/**
 * Socket and name-resolution errors: the PACS is not there right now (restarting, its container's
 * name not resolving yet, a route down). undici passes these through unwrapped.
 */
const TRANSIENT_ERRNO = /^(?:ECONNREFUSED|ECONNRESET|ECONNABORTED|ETIMEDOUT|EPIPE|EHOSTUNREACH|EHOSTDOWN|ENETUNREACH|ENETDOWN|ENOTFOUND|EAI_AGAIN)$/;

export function isTransientPacsError(err: unknown): boolean {
  if (err instanceof PacsHttpError) return err.transient;
  if (err instanceof undiciErrors.UndiciError) return true;
  if (!(err instanceof Error)) return false;
  const code = (err as NodeJS.ErrnoException).code ?? ((err as { cause?: NodeJS.ErrnoException }).cause?.code ?? '');
  return TRANSIENT_ERRNO.test(code) || /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|socket|timeout/i.test(`${code} ${err.message}`);
}

export class PacsClient {
  private readonly pool: Pool;
  private readonly basePath: string;
  private readonly fallbackAuth: string | undefined;
  private readonly timeoutMs: number;

  constructor(opts: PacsClientOptions) {
    const u = new URL(opts.url);
    this.pool = new Pool(u.origin, { connections: opts.connections ?? 16, keepAliveTimeout: 30_000 });
    this.basePath = u.pathname.replace(/\/+$/, '');
    this.fallbackAuth = opts.user !== undefined ? `Basic ${Buffer.from(`${opts.user}:${opts.password ?? ''}`).toString('base64')}` : undefined;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  private async get(
    path: string,
    accept: string,
    call: CallOptions,
    maxBytes?: number,
  ): Promise<{ status: number; contentType: string; body: Buffer; challenge: string | undefined }> {
    const authorization = call.authorization ?? this.fallbackAuth;
    const res = await this.pool.request({
      method: 'GET',
      path: this.basePath + path,
      headers: { ...call.headers, accept, ...(authorization ? { authorization } : {}) },
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      ...(call.signal ? { signal: call.signal } : {}),
    });
    const body = await readBody(res.body, res.headers['content-length'], path, maxBytes);
    const ct = res.headers['content-type'];
    const wa = res.headers['www-authenticate'];
    // Several challenges are one list (RFC 9110 §11.6.1), so they travel joined.
    const challenge = Array.isArray(wa) ? wa.join(', ') : wa;
    return { status: res.statusCode, contentType: Array.isArray(ct) ? (ct[0] ?? '') : (ct ?? ''), body, challenge };
  }

  /** QIDO-RS search; `path` like "/studies" or "/studies/{uid}/instances". [] on 204. */
  async qido(path: string, params: Record<string, string | number | undefined>, call: CallOptions = {}): Promise<DicomJsonDataset[]> {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined) qs.set(k, String(v));
    const full = qs.size ? `${path}?${qs}` : path;
    const r = await this.get(full, 'application/dicom+json', call);
    if (r.status === 204 || (r.status === 200 && r.body.length === 0)) return [];
    if (r.status !== 200) throw new PacsHttpError(r.status, path, r.challenge);
    return JSON.parse(r.body.toString('utf8')) as DicomJsonDataset[];
  }

  /** WADO-RS: one instance as stored (transfer-syntax=*), Part-10 bytes. */
  async retrieveInstance(study: string, series: string, sop: string, call: CallOptions = {}, opts: RetrieveOptions = {}): Promise<Uint8Array> {
    const path = `/studies/${study}/series/${series}/instances/${sop}`;
    const r = await this.get(path, 'multipart/related; type="application/dicom"; transfer-syntax=*', call, opts.maxBytes);
    if (r.status !== 200) throw new PacsHttpError(r.status, path, r.challenge);
    return onlyPart(r, 'an instance').bytes;
  }

  /** WADO-RS Retrieve Metadata of one instance: its DICOM JSON (bulk data by BulkDataURI or InlineBinary). */
  async retrieveMetadata(study: string, series: string, sop: string, call: CallOptions = {}, opts: RetrieveOptions = {}): Promise<DicomJsonDataset> {
    const path = `/studies/${study}/series/${series}/instances/${sop}/metadata`;
    const r = await this.get(path, 'application/dicom+json', call, opts.maxBytes);
    if (r.status !== 200) throw new PacsHttpError(r.status, path, r.challenge);
    const [dataset] = JSON.parse(r.body.toString('utf8')) as DicomJsonDataset[];
    if (!dataset || typeof dataset !== 'object') throw new Error('WADO-RS metadata answer held no dataset');
    return dataset;
  }

  /**
   * WADO-RS Retrieve Frames: frame `frame` (1-based) as stored, compressed or native, and the
   * transfer syntax its media type names (Orthanc's DICOMweb plugin answers e.g.
   * `image/jls; transfer-syntax=1.2.840.10008.1.2.4.80` for transfer-syntax=*).
   */
  async retrieveFrame(study: string, series: string, sop: string, frame: number, call: CallOptions = {}, opts: RetrieveOptions = {}): Promise<StoredFrame> {
    const path = `/studies/${study}/series/${series}/instances/${sop}/frames/${frame}`;
    const r = await this.get(path, 'multipart/related; type="application/octet-stream"; transfer-syntax=*', call, opts.maxBytes);
    if (r.status !== 200) throw new PacsHttpError(r.status, path, r.challenge);
    const part = onlyPart(r, 'a frame');
    const transferSyntaxUid = transferSyntaxOf(part.headers['content-type']) ?? transferSyntaxOf(r.contentType);
    if (!transferSyntaxUid) throw new Error(`WADO-RS answer for a frame names no transfer syntax (${part.headers['content-type'] ?? r.contentType})`);
    return { bytes: part.bytes, transferSyntaxUid };
  }

  /**
   * A BulkDataURI of this PACS's metadata. Only URIs under its DICOMweb root are followed, through
   * the same pool: the PACS may write another host name into them (its configured public host).
   */
  async retrieveBulkData(uri: string, call: CallOptions = {}, opts: RetrieveOptions = {}): Promise<Uint8Array> {
    const u = new URL(uri, 'http://pacs.invalid/');
    if (!u.pathname.startsWith(`${this.basePath}/`)) throw new Error(`BulkDataURI outside the PACS's DICOMweb root: ${u.pathname}`);
    const path = u.pathname.slice(this.basePath.length) + u.search;
    const r = await this.get(path, 'multipart/related; type="application/octet-stream"', call, opts.maxBytes);
    if (r.status !== 200) throw new PacsHttpError(r.status, path, r.challenge);
    return /^multipart\//i.test(r.contentType) ? onlyPart(r, 'bulk data').bytes : new Uint8Array(r.body.buffer, r.body.byteOffset, r.body.length);
  }

  /** True when the caller may read this study (QIDO with its own credentials finds it). */
  async canReadStudy(study: string, call: CallOptions): Promise<boolean> {
    try {
      const r = await this.qido('/studies', { StudyInstanceUID: study, includefield: '00080020' }, call);
      return r.length > 0;
    } catch (err) {
      if (err instanceof PacsHttpError && (err.status === 401 || err.status === 403)) return false;
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
