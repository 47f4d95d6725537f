/**
 * The PACS side of the proxy: opens one upstream request over the keep-alive
 * agent, with a bounded wait for the response head (→ 504) and a single retry
 * for a request whose reused socket the PACS had already closed, as long as no
 * body byte was sent. Request bodies go with `Expect: 100-continue` to a PACS
 * that honours it, so it can refuse before the upload. Connection failures
 * surface as UpstreamError (→ 502) — never a hang.
 */
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { createUpstreamAgent } from './upstream-agent.js';

/** One PACS endpoint (DICOMweb root or WADO-URI), pre-parsed once. */
export interface Endpoint {
  readonly url: string;
  readonly protocol: 'http:' | 'https:';
  readonly hostname: string;
  readonly port: number;
  /** `host[:port]` as sent in the Host header. */
  readonly hostHeader: string;
  /** Path of the root without trailing slash, e.g. "/dicom-web". */
  readonly basePath: string;
}

export function parseEndpoint(raw: string): Endpoint {
  const u = new URL(raw);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`PACS URL must be http(s): ${raw}`);
  const port = u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
  return {
    url: `${u.origin}${u.pathname.replace(/\/+$/, '')}`,
    protocol: u.protocol,
    hostname: u.hostname.replace(/^\[|\]$/g, ''),
    port,
    hostHeader: u.host,
    basePath: u.pathname.replace(/\/+$/, ''),
  };
}

export type UpstreamFailure = 'unreachable' | 'timeout';

export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamFailure,
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

export interface UpstreamRequest {
  readonly endpoint: Endpoint;
  readonly method: string;
  /** Path and query on the PACS (already joined with the endpoint's basePath). */
  readonly path: string;
  readonly headers: http.OutgoingHttpHeaders;
  /** Request body to stream; null for body-less requests (which may be retried). */
  readonly body: Readable | null;
  /**
   * For a request with a body: receives an answer that comes after the wait for it timed out
   * (`done` already had the timeout). Without it the request is cut at the timeout; with it,
   * it is kept open for one more stowTimeoutMs, as the PACS has the whole body and may
   * still store it.
   */
  readonly onLateAnswer?: (res: http.IncomingMessage) => void;
}

export interface UpstreamOptions {
  readonly timeoutMs: number;
  readonly maxSockets: number;
  readonly keepAliveMs: number;
  /** Wait for the answer once a request body has been sent in full (a STOW: the PACS stores every instance first); default 600 000. */
  readonly stowTimeoutMs?: number;
  /** Wait for the PACS's `100 Continue` before a body is sent anyway (curl waits 1 s); 0 sends no `Expect`. Default 1000. */
  readonly expectContinueMs?: number;
}

const RETRYABLE = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);
const DEFAULT_STOW_TIMEOUT_MS = 600_000;
const DEFAULT_EXPECT_CONTINUE_MS = 1000;

type Done = (err: UpstreamError | null, res?: http.IncomingMessage) => void;

/**
 * Per PACS origin: whether it answers `Expect: 100-continue` (true), ignores it (false: it read a
 * body it never asked for), or is not known yet. Waiting on one that ignores it would delay every
 * upload by expectContinueMs (Orthanc: civetweb sends no 100 to its request handlers), so its
 * uploads go without `Expect`; an answer that comes before the body is done still reaches the
 * client (passthrough.ts).
 */
class ContinueSupport {
  private readonly known = new Map<string, boolean>();

  expects(e: Endpoint): boolean {
    return this.known.get(originOf(e)) !== false;
  }

  learn(e: Endpoint, sendsContinue: boolean): void {
    this.known.set(originOf(e), sendsContinue);
  }
}

function originOf(e: Endpoint): string {
  return `${e.protocol}//${e.hostname}:${e.port}`;
}

interface CallSettings {
  readonly agent: http.Agent;
  readonly timeoutMs: number;
  readonly stowTimeoutMs: number;
  readonly expectContinueMs: number;
  readonly continueSupport: ContinueSupport;
}

export class Upstream {
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: http.Agent;
  private readonly continueSupport = new ContinueSupport();

  constructor(private readonly opts: UpstreamOptions) {
    this.httpAgent = createUpstreamAgent('http:', opts);
    this.httpsAgent = createUpstreamAgent('https:', opts);
  }

  get timeoutMs(): number {
    return this.opts.timeoutMs;
  }

  /**
   * Send `r` and call `done` exactly once: with the response (head received,
   * body not yet read) or with an UpstreamError. Returns an abort function for
   * when the client goes away first.
   */
  send(r: UpstreamRequest, done: Done): () => void {
    const call = new UpstreamCall(
      {
        agent: r.endpoint.protocol === 'https:' ? this.httpsAgent : this.httpAgent,
        timeoutMs: this.opts.timeoutMs,
        stowTimeoutMs: this.opts.stowTimeoutMs ?? DEFAULT_STOW_TIMEOUT_MS,
        expectContinueMs: this.opts.expectContinueMs ?? DEFAULT_EXPECT_CONTINUE_MS,
        continueSupport: this.continueSupport,
      },
      r,
      done,
    );
    call.start();
    return () => call.abort();
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}

/**
 * One request to the PACS, retries included. The wait for the PACS is bounded from the start
 * (connect included) until the answer head arrives — except while a request body (STOW) is being
 * uploaded: that takes as long as the client needs, and the PACS answers only after the last
 * byte. The clock restarts once the body is sent, with the STOW limit: by then the PACS is
 * storing every instance.
 */
class UpstreamCall {
  private finished = false;
  private current: http.ClientRequest | null = null;
  private timer: NodeJS.Timeout | undefined;
  /** Set when the wait after a complete upload timed out: until it fires, a late answer goes to r.onLateAnswer. */
  private lateUntil: NodeJS.Timeout | undefined;

  constructor(
    private readonly s: CallSettings,
    private readonly r: UpstreamRequest,
    private readonly done: Done,
  ) {}

  start(): void {
    this.arm(this.s.timeoutMs, false);
    const expect = this.r.body !== null && this.s.expectContinueMs > 0 && this.s.continueSupport.expects(this.r.endpoint);
    this.attempt(true, expect);
  }

  abort(): void {
    if (!this.finished) {
      this.finished = true;
      this.disarm();
    }
    clearTimeout(this.lateUntil);
    this.current?.destroy();
  }

  private finish(err: UpstreamError | null, res?: http.IncomingMessage): void {
    if (this.finished) {
      if (res && this.lateUntil && this.r.onLateAnswer) {
        clearTimeout(this.lateUntil);
        this.r.onLateAnswer(res);
      } else res?.resume();
      return;
    }
    this.finished = true;
    this.disarm();
    this.done(err, res);
  }

  private disarm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(ms: number, afterUpload: boolean): void {
    this.disarm();
    this.timer = setTimeout(() => {
      this.finish(new UpstreamError('timeout', `PACS did not answer within ${ms} ms`));
      if (afterUpload && this.r.onLateAnswer) {
        // The PACS has the whole body and may still store it: its answer is worth reading.
        this.lateUntil = setTimeout(() => this.current?.destroy(), ms);
        this.lateUntil.unref();
      } else this.current?.destroy();
    }, ms);
  }

  private attempt(retry: boolean, withExpect: boolean): void {
    const { r } = this;
    let creq: http.ClientRequest;
    try {
      creq = (r.endpoint.protocol === 'https:' ? https : http).request({
        protocol: r.endpoint.protocol,
        hostname: r.endpoint.hostname,
        port: r.endpoint.port,
        method: r.method,
        path: r.path,
        headers: withExpect ? { ...r.headers, expect: '100-continue' } : r.headers,
        agent: this.s.agent,
        setHost: false,
      });
    } catch (err) {
      // e.g. a header value Node refuses to send: a bad request, but never a crash.
      this.finish(new UpstreamError('unreachable', `request to the PACS could not be built: ${(err as Error).message}`));
      return;
    }
    this.current = creq;
    const upload = r.body ? new Upload(this.s, r.endpoint, creq, r.body, withExpect) : null;
    creq.on('response', (res) => {
      // A PACS that refuses `Expect` before any of the body was sent: ask again without it.
      if (upload && withExpect && res.statusCode === 417 && !upload.started && !this.finished) {
        this.s.continueSupport.learn(r.endpoint, false);
        res.resume();
        creq.destroy();
        this.retry(retry, false);
        return;
      }
      upload?.answered(res);
      this.finish(null, res);
    });
    creq.once('close', () => clearTimeout(this.lateUntil));
    creq.on('error', (err: NodeJS.ErrnoException) => {
      if (this.finished || this.current !== creq) return;
      // A reused keep-alive socket the PACS closed while idle: safe to replay a request
      // exactly once on a fresh connection, as long as none of its body was sent.
      if (retry && creq.reusedSocket && err.code && RETRYABLE.has(err.code) && !upload?.started) {
        this.retry(false, withExpect);
        return;
      }
      this.finish(new UpstreamError('unreachable', `PACS connection failed: ${err.code ?? err.message}`, err.code));
    });
    if (!upload) {
      creq.end();
      return;
    }
    // The upload is not timed (it takes as long as the client needs); the answer is, once it is sent.
    creq.once('socket', (socket) => (socket.connecting ? socket.once('connect', () => this.disarm()) : this.disarm()));
    creq.once('finish', () => {
      if (!this.finished) this.arm(this.s.stowTimeoutMs, true);
    });
  }

  private retry(again: boolean, withExpect: boolean): void {
    // An upload's first wait ended at its connect: the new connection gets its own.
    if (this.r.body) this.arm(this.s.timeoutMs, false);
    this.attempt(again, withExpect);
  }
}

/**
 * A request body streamed into `creq`. With `Expect: 100-continue` it waits for the PACS's
 * `100 Continue`, at most expectContinueMs from the connection (then it goes anyway, as curl
 * does), so a PACS that refuses the request from its head (401, 413) answers before any of it
 * is sent.
 */
class Upload {
  started = false;
  private waitedOut = false;
  private gotContinue = false;
  private wait: NodeJS.Timeout | undefined;

  constructor(
    private readonly s: CallSettings,
    private readonly endpoint: Endpoint,
    private readonly creq: http.ClientRequest,
    private readonly body: Readable,
    private readonly withExpect: boolean,
  ) {
    if (!withExpect) {
      this.start();
      return;
    }
    creq.once('continue', () => {
      this.gotContinue = true;
      s.continueSupport.learn(endpoint, true);
      this.start();
    });
    creq.once('socket', (socket) => {
      const waitForContinue = (): void => {
        this.wait = setTimeout(() => {
          this.waitedOut = true;
          this.start();
        }, s.expectContinueMs);
      };
      if (!socket.connecting) waitForContinue();
      else socket.once('encrypted' in socket ? 'secureConnect' : 'connect', waitForContinue);
    });
    creq.once('close', () => clearTimeout(this.wait));
  }

  /** The PACS's final answer: learn what it does with `Expect`, and end a request whose body it did not wait for. */
  answered(res: http.IncomingMessage): void {
    clearTimeout(this.wait);
    if (this.withExpect && this.waitedOut && !this.gotContinue) this.s.continueSupport.learn(this.endpoint, false);
    if (this.creq.writableEnded) return;
    // Answered before the whole body was sent: the connection is out of step (the PACS may
    // take what is left for a next request), so it is closed once the answer is read.
    this.body.unpipe(this.creq);
    const close = (): void => void this.creq.destroy();
    res.once('end', close);
    res.once('close', close);
  }

  private start(): void {
    clearTimeout(this.wait);
    if (this.started || this.creq.destroyed) return;
    this.started = true;
    this.body.pipe(this.creq);
  }
}
