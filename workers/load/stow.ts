/**
 * STOW-RS client for `cbmir load` (PS3.18 §10.5): POST {root}/studies with a
 * multipart/related; type="application/dicom" body of several instances, retried on
 * transient faults, and the answer read per instance:
 *   ReferencedSOPSequence (0008,1199) → stored; FailedSOPSequence (0008,1198) → failed
 *   with its Failure Reason (0008,1197). Orthanc answers a partial failure with 400 (and
 *   no Content-Type), so the body is parsed whatever the status says.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { sequenceItems, stringValue, TAG, type DicomJsonDataset } from '../../core/dicom-json.js';

export interface StowPart {
  readonly sopInstanceUid: string;
  readonly bytes: Uint8Array;
}

export interface StowOutcome {
  /** SOP Instance UIDs the server says it stored. */
  readonly stored: Set<string>;
  /** SOP Instance UID → reason, for every part not stored. */
  readonly failed: Map<string, string>;
  readonly status: number;
  readonly attempts: number;
  /** The last attempt got no HTTP answer (refused, reset, timed out, unknown host). */
  readonly networkError?: boolean;
}

export interface StowClientOptions {
  /** DICOMweb root, e.g. http://127.0.0.1:8080/dicom-web */
  readonly url: string;
  /** Authorization header value (sent as is). */
  readonly authorization?: string | undefined;
  readonly timeoutMs?: number;
  /** Extra attempts after the first on transient failures. */
  readonly retries?: number;
  /** First backoff; doubles each retry (with ±25 % jitter). */
  readonly backoffMs?: number;
  readonly connections?: number;
}

/** "Basic …"/"Bearer …" pass as is; "user:password" becomes Basic. */
export function authorizationHeader(value: string | undefined): string | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const v = value.trim();
  if (/^\S+\s+\S/.test(v)) return v;
  if (v.includes(':')) return `Basic ${Buffer.from(v, 'utf8').toString('base64')}`;
  throw new Error('auth must be "user:password" or a full Authorization header value such as "Bearer <token>"');
}

export function multipartBody(parts: readonly StowPart[], boundary: string): Buffer {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, 'latin1'));
    chunks.push(Buffer.from(p.bytes.buffer, p.bytes.byteOffset, p.bytes.byteLength));
    chunks.push(Buffer.from('\r\n', 'latin1'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`, 'latin1'));
  return Buffer.concat(chunks);
}

/** Failure Reason codes (PS3.4 Annex GG.4.2 / C.4.2.1.4) we may see. */
const FAILURE_REASONS: Record<string, string> = {
  '272': 'processing failure (0110H)',
  '290': 'SOP class not supported (0122H)',
  '292': 'not authorized (0124H)',
  '42752': 'out of resources (A700H)',
  '43264': 'data set does not match SOP class (A900H)',
  '49152': 'cannot understand (C000H)',
  '49442': 'transfer syntax not supported (C122H)',
};

export function parseStowResponse(body: string, sent: readonly string[], status: number): { stored: Set<string>; failed: Map<string, string> } {
  const stored = new Set<string>();
  const failed = new Map<string, string>();
  let root: DicomJsonDataset | undefined;
  try {
    const json: unknown = JSON.parse(body);
    root = (Array.isArray(json) ? json[0] : json) as DicomJsonDataset | undefined;
  } catch {
    root = undefined;
  }
  if (root && typeof root === 'object') {
    for (const item of sequenceItems(root, TAG.ReferencedSOPSequence)) {
      const uid = stringValue(item, TAG.ReferencedSOPInstanceUID);
      if (uid) stored.add(uid);
    }
    for (const item of sequenceItems(root, TAG.FailedSOPSequence)) {
      const uid = stringValue(item, TAG.ReferencedSOPInstanceUID);
      const code = stringValue(item, '00081197');
      if (uid) failed.set(uid, `PACS refused it: ${code ? (FAILURE_REASONS[code] ?? `failure reason ${code}`) : 'no reason given'}`);
    }
  }
  for (const uid of sent) {
    if (stored.has(uid) || failed.has(uid)) continue;
    // A 200 with an empty or non-JSON body still means "all stored" (PS3.18 §10.5.3.1).
    if (status === 200 && !root) stored.add(uid);
    else failed.set(uid, root ? `not listed in the STOW response (HTTP ${status})` : `HTTP ${status} without a readable STOW response`);
  }
  return { stored, failed };
}

const TRANSIENT_CODES = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EAI_AGAIN|UND_ERR_(SOCKET|CONNECT_TIMEOUT|HEADERS_TIMEOUT|BODY_TIMEOUT|CLOSED)/;

export function isTransientStatus(status: number): boolean {
  return status === 408 || status === 429 || status === 502 || status === 503 || status === 504;
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> => delay(ms, undefined, signal ? { signal } : {}).catch(() => undefined);

export class StowClient {
  private readonly agent: Agent;
  private readonly endpoint: URL;
  private readonly opts: Required<Omit<StowClientOptions, 'authorization'>> & { authorization: string | undefined };

  constructor(opts: StowClientOptions) {
    const root = new URL(opts.url);
    if (root.protocol !== 'http:' && root.protocol !== 'https:') throw new Error(`DICOMweb URL must be http(s): ${opts.url}`);
    this.endpoint = new URL(`${root.pathname.replace(/\/+$/, '')}/studies`, root);
    this.opts = {
      url: opts.url,
      authorization: opts.authorization,
      timeoutMs: opts.timeoutMs ?? 120_000,
      retries: opts.retries ?? 3,
      backoffMs: opts.backoffMs ?? 500,
      connections: opts.connections ?? 8,
    };
    this.agent = new Agent({ connections: this.opts.connections, keepAliveTimeout: 30_000 });
  }

  /**
   * Store the parts; never throws for HTTP/network failures (they become failed entries).
   * `signal` (Ctrl-C, SIGTERM) cancels the request in flight and any retry still to come.
   */
  async store(parts: readonly StowPart[], signal?: AbortSignal): Promise<StowOutcome> {
    const boundary = `cbmir-${randomBytes(12).toString('hex')}`;
    const body = multipartBody(parts, boundary);
    const sent = parts.map((p) => p.sopInstanceUid);
    let lastReason = '';
    let lastStatus = 0;
    let attempts = 0;
    let networkError = false;
    for (let attempt = 1; attempt <= this.opts.retries + 1; attempt++) {
      if (signal?.aborted) {
        lastReason = 'interrupted';
        break;
      }
      attempts = attempt;
      networkError = false;
      try {
        const res = await request(this.endpoint, {
          method: 'POST',
          dispatcher: this.agent,
          headers: {
            'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}`,
            accept: 'application/dicom+json',
            ...(this.opts.authorization ? { authorization: this.opts.authorization } : {}),
          },
          body,
          ...(signal ? { signal } : {}),
          headersTimeout: this.opts.timeoutMs,
          bodyTimeout: this.opts.timeoutMs,
        });
        const text = await res.body.text();
        lastStatus = res.statusCode;
        if (isTransientStatus(res.statusCode) && attempt <= this.opts.retries) {
          lastReason = `HTTP ${res.statusCode}`;
          await sleep(this.backoff(attempt), signal);
          continue;
        }
        if (res.statusCode === 401 || res.statusCode === 403 || res.statusCode === 404 || res.statusCode === 405 || res.statusCode === 413 || res.statusCode === 415) {
          const reason = `HTTP ${res.statusCode} from ${this.endpoint.origin}${this.endpoint.pathname}${res.statusCode === 401 ? ' (check --auth)' : ''}`;
          return { stored: new Set(), failed: new Map(sent.map((u) => [u, reason])), status: res.statusCode, attempts: attempt };
        }
        const { stored, failed } = parseStowResponse(text, sent, res.statusCode);
        return { stored, failed, status: res.statusCode, attempts: attempt };
      } catch (err) {
        if (signal?.aborted) {
          // The PACS may still have stored some of them: a re-run re-sends them, deduped by UID.
          lastReason = 'interrupted';
          break;
        }
        const code = `${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message ?? ''}`;
        lastReason = `network error: ${code.trim()}`;
        networkError = true;
        if (!TRANSIENT_CODES.test(code) || attempt > this.opts.retries) break;
        await sleep(this.backoff(attempt), signal);
      }
    }
    const reason = lastReason === 'interrupted' ? 'interrupted' : `${lastReason} after ${attempts} attempt${attempts === 1 ? '' : 's'}`;
    return { stored: new Set(), failed: new Map(sent.map((u) => [u, reason])), status: lastStatus, attempts, ...(networkError ? { networkError } : {}) };
  }

  private backoff(attempt: number): number {
    const base = this.opts.backoffMs * 2 ** (attempt - 1);
    return Math.round(base * (0.75 + Math.random() * 0.5));
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
