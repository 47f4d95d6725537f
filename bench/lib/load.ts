/**
 * Bounded-duration HTTP load generator: N concurrent keep-alive connections
 * (undici Pool), each issuing requests back-to-back, reading every body to the
 * end (a proxy that streams slowly must show up here).
 *
 * One closed loop runs through warm-up and measurement: the N users never stop
 * between the two, so the measurement window starts with the queues that the
 * load builds up, not with idle servers and N requests arriving at once. Only
 * requests that START inside the window are recorded, and each of them is waited
 * for, so a slow answer at the end of the window is counted, not cut off.
 *
 * A failed request (non-expected status, connection error) counts in the latency
 * figures at the time it took, a timed-out one at no less than the timeout: a
 * summary over the successes alone would look better the more requests fail.
 * The successes alone are reported beside them (`ok`).
 *
 * Keep-alive note: undici subtracts `keepAliveTimeoutThreshold` (default 2 s)
 * from the server's `Keep-Alive: timeout=N` hint and refuses to reuse a socket
 * when the result is ≤ 0. Orthanc 1.10 announces `timeout=1`, so with defaults
 * every request to Orthanc would open a new TCP connection while requests to
 * a Node server (timeout=5) would not — an unfair comparison. We use a small
 * threshold so both targets get reused connections.
 */
import { Pool } from 'undici';
import { summarise, type LatencySummary } from './stats.js';

export interface LoadOptions {
  /** Full URL to request (path + query). */
  readonly url: string;
  readonly method?: 'GET' | 'HEAD';
  readonly headers?: Readonly<Record<string, string>>;
  /** Concurrent in-flight requests (one connection each). */
  readonly connections: number;
  /** The measurement window: requests that start in it are recorded. */
  readonly durationMs: number;
  /** Load before the window (connection setup, JIT, caches, queues): the same loop, not recorded. */
  readonly warmupMs?: number;
  /** Status expected for a success; anything else counts as an error. */
  readonly expectStatus?: number;
  /** Return the raw latency samples (to merge several runs before taking percentiles). */
  readonly keepSamples?: boolean;
  /** Path + query of each request, when requests differ (e.g. a random instance each); default: `url`'s. */
  readonly pathFor?: () => string;
  /** A request without full headers/body within this many ms is an error (undici headers/body timeouts). */
  readonly timeoutMs?: number;
  /** Called when the window opens and when it closes, e.g. to read processes' CPU time over the window alone. */
  readonly onWindowStart?: () => void;
  readonly onWindowEnd?: () => void;
}

/** Latency figures (ms) over every request started in the window, failed and timed-out ones included. */
export interface LoadResult extends LatencySummary {
  readonly url: string;
  readonly connections: number;
  /** The measurement window (ms). */
  readonly durationMs: number;
  /** Warm-up + window + the answers to the window's last requests (ms). */
  readonly elapsedMs: number;
  /** Successful requests started in the window. */
  readonly requests: number;
  /** Failed or timed-out requests started in the window. */
  readonly errors: number;
  /** Of which timed out. */
  readonly timeouts: number;
  /** Successful requests started in the window ÷ the window. */
  readonly rps: number;
  readonly bytesPerRequest: number;
  /** Latency figures of the successful requests alone. */
  readonly ok: LatencySummary;
  /** Requests of the warm-up that failed (not in `errors`). */
  readonly warmupErrors: number;
  /** First error seen in the window, for the report (never a body: bodies may carry PHI). */
  readonly firstError?: string;
  /** Latencies in ms of every request started in the window, when `keepSamples` was set. */
  readonly samples?: Float64Array;
}

/** How one request ended. */
export interface Outcome {
  readonly ok: boolean;
  readonly bytes: number;
  readonly timedOut?: boolean;
  readonly error?: string;
}

export interface LoopOptions {
  readonly connections: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly timeoutMs?: number;
  /** Clock (ms) and the request; a request must resolve, never reject. */
  readonly now: () => number;
  readonly send: () => Promise<Outcome>;
  /** Start of the warm-up on `now`'s clock (default: now()). */
  readonly start?: number;
}

export interface LoopResult {
  /** Latency of every request started in the window, in the order they ended. */
  readonly all: number[];
  /** Latency of the successful ones. */
  readonly ok: number[];
  readonly errors: number;
  readonly timeouts: number;
  readonly warmupErrors: number;
  readonly bytes: number;
  readonly elapsedMs: number;
  readonly firstError?: string;
}

/** The closed loop on its own (no HTTP), so its bookkeeping can be tested on a simulated clock. */
export async function closedLoop(o: LoopOptions): Promise<LoopResult> {
  const start = o.start ?? o.now();
  const windowStart = start + o.warmupMs;
  const deadline = windowStart + o.durationMs;
  const all: number[] = [];
  const ok: number[] = [];
  let errors = 0;
  let timeouts = 0;
  let warmupErrors = 0;
  let bytes = 0;
  let firstError: string | undefined;
  const user = async (): Promise<void> => {
    while (o.now() < deadline) {
      const t0 = o.now();
      const r = await o.send();
      const dt = o.now() - t0;
      if (t0 < windowStart) {
        if (!r.ok) warmupErrors++;
        continue;
      }
      if (r.ok) {
        all.push(dt);
        ok.push(dt);
        bytes += r.bytes;
        continue;
      }
      errors++;
      if (r.timedOut) timeouts++;
      firstError ??= r.error ?? 'error';
      // The client gave up at the timeout: the answer would have taken at least that long.
      all.push(r.timedOut && o.timeoutMs !== undefined ? Math.max(dt, o.timeoutMs) : dt);
    }
  };
  await Promise.all(Array.from({ length: o.connections }, user));
  return {
    all,
    ok,
    errors,
    timeouts,
    warmupErrors,
    bytes,
    elapsedMs: o.now() - start,
    ...(firstError !== undefined ? { firstError } : {}),
  };
}

/** The figures of a load phase from its loop's records. */
export function loadFigures(r: LoopResult, durationMs: number): Omit<LoadResult, 'url' | 'connections' | 'samples'> {
  return {
    durationMs,
    elapsedMs: r.elapsedMs,
    requests: r.ok.length,
    errors: r.errors,
    timeouts: r.timeouts,
    rps: (r.ok.length / durationMs) * 1000,
    bytesPerRequest: r.ok.length ? Math.round(r.bytes / r.ok.length) : 0,
    ...summarise(Float64Array.from(r.all)),
    ok: summarise(Float64Array.from(r.ok)),
    warmupErrors: r.warmupErrors,
    ...(r.firstError !== undefined ? { firstError: r.firstError } : {}),
  };
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** Run one bounded load phase (warm-up, then the measurement window) against `opts.url`. */
export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const u = new URL(opts.url);
  const pool = new Pool(u.origin, {
    connections: opts.connections,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    keepAliveTimeoutThreshold: 250,
    ...(opts.timeoutMs ? { headersTimeout: opts.timeoutMs, bodyTimeout: opts.timeoutMs } : {}),
  });
  const path = u.pathname + u.search;
  const method = opts.method ?? 'GET';
  const expect = opts.expectStatus ?? 200;
  const warmupMs = Math.max(0, opts.warmupMs ?? 0);
  const send = async (): Promise<Outcome> => {
    let n = 0;
    try {
      const res = await pool.request({ path: opts.pathFor ? opts.pathFor() : path, method, headers: opts.headers });
      for await (const chunk of res.body) n += (chunk as Buffer).length;
      return res.statusCode === expect ? { ok: true, bytes: n } : { ok: false, bytes: n, error: `HTTP ${res.statusCode}` };
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      return { ok: false, bytes: n, timedOut: TIMEOUT_CODES.has(code), error: (err as Error).message };
    }
  };
  // A callback due when the loop ends is run then: timers are not exact, and the window's figures must not miss it.
  const due: { fn: () => void; timer: NodeJS.Timeout; fired: boolean }[] = [];
  const at = (ms: number, fn: (() => void) | undefined): void => {
    if (!fn) return;
    const d = { fn, fired: false, timer: setTimeout(() => fire(d), ms) };
    due.push(d);
    if (ms <= 0) fire(d); // before the first request, not a tick after it
  };
  const fire = (d: { fn: () => void; timer: NodeJS.Timeout; fired: boolean }): void => {
    clearTimeout(d.timer);
    if (d.fired) return;
    d.fired = true;
    d.fn();
  };
  try {
    const start = performance.now();
    at(warmupMs, opts.onWindowStart);
    at(warmupMs + opts.durationMs, opts.onWindowEnd);
    const r = await closedLoop({
      connections: opts.connections,
      warmupMs,
      durationMs: opts.durationMs,
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      now: () => performance.now(),
      send,
      start,
    });
    for (const d of due) fire(d);
    return {
      url: opts.url,
      connections: opts.connections,
      ...loadFigures(r, opts.durationMs),
      ...(opts.keepSamples ? { samples: Float64Array.from(r.all) } : {}),
    };
  } finally {
    for (const d of due) clearTimeout(d.timer);
    await pool.close();
  }
}
