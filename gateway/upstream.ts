/**
 * The PACS side of the proxy: opens one upstream request over the keep-alive
 * agent, with a bounded wait for the response head (→ 504) and a single retry
 * for a request whose reused socket the PACS had already closed, as long as no
 * body byte was sent. Request bodies go with `Expect: 100-continue`, so the
 * PACS can refuse before the upload. Connection failures surface as
 * UpstreamError (→ 502), and every wait is timed (→ 504) — never a hang.
 */
import http from 'node:http';
import https from 'node:https';
import type { Readable, Writable } from 'node:stream';
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
  /**
   * Request body to stream; null for body-less requests (which may be retried). Once its source
   * has ended (a Transform's writable side, else the stream itself), the PACS must keep taking
   * the rest: timeoutMs without progress is a 504.
   */
  readonly body: Readable | null;
  /**
   * For a request with a body: called once, when the PACS is to get it (its `100 Continue`, the
   * wait for one over, or at once without `Expect`). Feed `body` from then on, not before: the
   * client then sends nothing (and is told no `100 Continue`) while the PACS may still refuse.
   */
  readonly onBodyWanted?: () => void;
  /** For a request with a body: called once all of it is handed to the PACS's connection, when the wait for the answer starts. */
  readonly onBodySent?: () => void;
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
  /** The wait instead for a PACS seen to let it run out (DEFAULT_CONTINUE_HEAD_START_MS); at most expectContinueMs. */
  readonly continueHeadStartMs?: number;
}

const RETRYABLE = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);
const DEFAULT_STOW_TIMEOUT_MS = 600_000;
const DEFAULT_EXPECT_CONTINUE_MS = 1000;
/**
 * A PACS that never sends 100 (Orthanc: civetweb sends none to its request handlers) still gets
 * `Expect`, and its body this long after the head instead of expectContinueMs: a full wait would
 * slow every upload by a second, and none at all loses its refusals. Orthanc answers 401 as soon
 * as it has the head and closes with the body unread, which resets the connection: a body write
 * that meets the reset loses the 401 (a 502 instead). This head start lets the refusal come first.
 */
const DEFAULT_CONTINUE_HEAD_START_MS = 100;

type Done = (err: UpstreamError | null, res?: http.IncomingMessage) => void;

/** What a PACS does with `Expect: 100-continue`, as last seen: sends 100, lets the wait for it run out, or answers 417. */
type ContinueHabit = 'sends' | 'ignores' | 'refuses';

/**
 * Per PACS origin, learnt as soon as it shows: a 100 (whenever it comes) makes it 'sends', a wait
 * that runs out 'ignores', so uploads that start meanwhile get the short wait and the next 100
 * puts the full one back. Both still send `Expect`; only 'refuses' goes without.
 */
class ContinueSupport {
  private readonly seen = new Map<string, ContinueHabit>();

  habit(e: Endpoint): ContinueHabit | undefined {
    return this.seen.get(originOf(e));
  }

  learn(e: Endpoint, habit: ContinueHabit): void {
    this.seen.set(originOf(e), habit);
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
  readonly continueHeadStartMs: number;
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
        continueHeadStartMs: this.opts.continueHeadStartMs ?? DEFAULT_CONTINUE_HEAD_START_MS,
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
 * byte. Once the client has sent all of it, the PACS must keep taking the rest (timeoutMs without
 * progress); once the PACS has it all, the clock restarts with the STOW limit: by then the PACS
 * is storing every instance.
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
    this.attempt(true, this.continueWait());
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

  /** How long an upload waits for the PACS's `100 Continue`; null: it goes without `Expect`. */
  private continueWait(): number | null {
    if (!this.r.body || this.s.expectContinueMs <= 0) return null;
    const habit = this.s.continueSupport.habit(this.r.endpoint);
    if (habit === 'refuses') return null;
    return habit === 'ignores' ? Math.min(this.s.continueHeadStartMs, this.s.expectContinueMs) : this.s.expectContinueMs;
  }

  /**
   * From the connection until all of the body is handed over: not timed while the body's source
   * (the client) is still sending, as that takes as long as it needs; once it has sent everything,
   * timeoutMs without a byte leaving Node's buffers for the PACS is a stalled PACS (504), which
   * must not hold the upload forever. Polled a quarter of the limit apart: no event marks either.
   */
  private watchUpload(creq: http.ClientRequest, body: Readable): void {
    if (this.finished || creq !== this.current) return; // aborted or retried meanwhile
    const ms = this.s.timeoutMs;
    let last = handedOver(creq);
    let lastAt = performance.now();
    this.disarm();
    this.timer = setInterval(
      () => {
        const now = handedOver(creq);
        const t = performance.now();
        if (now !== last || !sourceEnded(body)) {
          last = now;
          lastAt = t;
        } else if (t - lastAt >= ms) {
          this.finish(new UpstreamError('timeout', `the PACS took none of the upload for ${ms} ms`));
          creq.destroy();
        }
      },
      Math.max(1, Math.ceil(ms / 4)),
    );
  }

  private attempt(retry: boolean, continueWait: number | null): void {
    const { r } = this;
    let creq: http.ClientRequest;
    try {
      creq = (r.endpoint.protocol === 'https:' ? https : http).request({
        protocol: r.endpoint.protocol,
        hostname: r.endpoint.hostname,
        port: r.endpoint.port,
        method: r.method,
        path: r.path,
        headers: continueWait === null ? r.headers : { ...r.headers, expect: '100-continue' },
        agent: this.s.agent,
        setHost: false,
      });
    } catch (err) {
      // e.g. a header value Node refuses to send: a bad request, but never a crash.
      this.finish(new UpstreamError('unreachable', `request to the PACS could not be built: ${(err as Error).message}`));
      return;
    }
    this.current = creq;
    const upload = r.body ? new Upload(this.s.continueSupport, r.endpoint, creq, r.body, continueWait, r.onBodyWanted) : null;
    creq.on('response', (res) => {
      // A PACS that refuses `Expect` before any of the body was sent: ask again without it.
      if (upload && continueWait !== null && res.statusCode === 417 && !upload.started && !this.finished) {
        this.s.continueSupport.learn(r.endpoint, 'refuses');
        res.resume();
        creq.destroy();
        this.retry(retry, null);
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
        this.retry(false, continueWait);
        return;
      }
      this.finish(new UpstreamError('unreachable', `PACS connection failed: ${err.code ?? err.message}`, err.code));
    });
    const body = r.body;
    if (!upload || !body) {
      creq.end();
      return;
    }
    creq.once('socket', (socket) => {
      if (!socket.connecting) this.watchUpload(creq, body);
      else socket.once('connect', () => this.watchUpload(creq, body));
    });
    creq.once('finish', () => {
      if (this.finished) return;
      this.arm(this.s.stowTimeoutMs, true);
      r.onBodySent?.();
    });
  }

  private retry(again: boolean, continueWait: number | null): void {
    // An upload's first wait ended at its connect: the new connection gets its own.
    if (this.r.body) this.arm(this.s.timeoutMs, false);
    this.attempt(again, continueWait);
  }
}

/** The body's source has sent everything: for a Transform (the gateway's byte limiter), its input has ended. */
function sourceEnded(body: Readable): boolean {
  return (body as Readable & Partial<Writable>).writableEnded === true || body.readableEnded;
}

/** Bytes of a request that have left Node's buffers for the PACS's connection: they stop when the PACS stops reading. */
function handedOver(creq: http.ClientRequest): number {
  const socket = creq.socket;
  return socket ? (socket.bytesWritten ?? 0) - socket.writableLength : 0;
}

/**
 * A request body streamed into `creq`. With `Expect: 100-continue` it waits for the PACS's
 * `100 Continue`, at most `continueWait` from the connection (then it goes anyway, as curl does),
 * so a PACS that refuses the request from its head (401, 413) answers before any of it is sent,
 * or even asked of the client: the body's source is fed (onWanted) only when it goes.
 */
class Upload {
  started = false;
  /** The PACS answered: what has not gone up never will. */
  private over = false;
  private wait: NodeJS.Timeout | undefined;

  constructor(
    support: ContinueSupport,
    endpoint: Endpoint,
    private readonly creq: http.ClientRequest,
    private readonly body: Readable,
    continueWait: number | null,
    private readonly onWanted: (() => void) | undefined,
  ) {
    if (continueWait === null) {
      this.start();
      return;
    }
    creq.once('continue', () => {
      // Also after the wait ran out: a PACS that sends 100, however late, gets the full wait again.
      support.learn(endpoint, 'sends');
      this.start();
    });
    creq.once('socket', (socket) => {
      const waitForContinue = (): void => {
        this.wait = setTimeout(() => {
          if (this.over || creq.destroyed) return;
          support.learn(endpoint, 'ignores');
          this.start();
        }, continueWait);
      };
      if (!socket.connecting) waitForContinue();
      else socket.once('encrypted' in socket ? 'secureConnect' : 'connect', waitForContinue);
    });
    creq.once('close', () => clearTimeout(this.wait));
  }

  /** The PACS's final answer: end a request whose body it did not wait for. */
  answered(res: http.IncomingMessage): void {
    this.over = true;
    clearTimeout(this.wait);
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
    if (this.started || this.over || this.creq.destroyed) return;
    this.started = true;
    this.body.pipe(this.creq);
    this.onWanted?.();
  }
}
