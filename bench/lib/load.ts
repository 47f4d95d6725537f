/**
 * Bounded-duration HTTP load generator: N concurrent keep-alive connections
 * (undici Pool), each issuing requests back-to-back for `durationMs`, reading
 * every body to the end (a proxy that streams slowly must show up here).
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
  readonly durationMs: number;
  /** Requests issued before measuring (connection setup, JIT, caches). */
  readonly warmupMs?: number;
  /** Status expected for a success; anything else counts as an error. */
  readonly expectStatus?: number;
  /** Return the raw latency samples (to merge several runs before taking percentiles). */
  readonly keepSamples?: boolean;
  /** Path + query of each request, when requests differ (e.g. a random instance each); default: `url`'s. */
  readonly pathFor?: () => string;
  /** A request without full headers/body within this many ms is an error (undici headers/body timeouts). */
  readonly timeoutMs?: number;
}

export interface LoadResult extends LatencySummary {
  readonly url: string;
  readonly connections: number;
  readonly durationMs: number;
  readonly requests: number;
  readonly errors: number;
  readonly rps: number;
  readonly bytesPerRequest: number;
  /** First error seen, for the report (never a body: bodies may carry PHI). */
  readonly firstError?: string;
  /** Latencies in ms of successful requests, when `keepSamples` was set. */
  readonly samples?: Float64Array;
}

/** Run one bounded load phase against `opts.url`. */
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
  try {
    if (opts.warmupMs && opts.warmupMs > 0) {
      await phase(pool, path, method, opts, expect, opts.warmupMs, false);
    }
    const r = await phase(pool, path, method, opts, expect, opts.durationMs, true);
    return {
      url: opts.url,
      connections: opts.connections,
      durationMs: r.elapsedMs,
      requests: r.count,
      errors: r.errors,
      rps: (r.count / r.elapsedMs) * 1000,
      bytesPerRequest: r.count ? Math.round(r.bytes / r.count) : 0,
      ...summarise(r.latencies.subarray(0, r.count)),
      ...(r.firstError ? { firstError: r.firstError } : {}),
      ...(opts.keepSamples ? { samples: r.latencies.slice(0, r.count) } : {}),
    };
  } finally {
    await pool.close();
  }
}

interface PhaseResult {
  count: number;
  errors: number;
  bytes: number;
  elapsedMs: number;
  latencies: Float64Array;
  firstError?: string;
}

async function phase(
  pool: Pool,
  path: string,
  method: 'GET' | 'HEAD',
  opts: LoadOptions,
  expect: number,
  durationMs: number,
  record: boolean,
): Promise<PhaseResult> {
  const r: PhaseResult = { count: 0, errors: 0, bytes: 0, elapsedMs: 0, latencies: new Float64Array(1 << 16) };
  const start = performance.now();
  const deadline = start + durationMs;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      let ok = false;
      let n = 0;
      try {
        const res = await pool.request({ path: opts.pathFor ? opts.pathFor() : path, method, headers: opts.headers });
        for await (const chunk of res.body) n += (chunk as Buffer).length;
        ok = res.statusCode === expect;
        if (!ok && !r.firstError) r.firstError = `HTTP ${res.statusCode}`;
      } catch (err) {
        if (!r.firstError) r.firstError = (err as Error).message;
      }
      const dt = performance.now() - t0;
      if (!record) continue;
      if (!ok) {
        r.errors++;
        continue;
      }
      if (r.count === r.latencies.length) {
        const grown = new Float64Array(r.latencies.length * 2);
        grown.set(r.latencies);
        r.latencies = grown;
      }
      r.latencies[r.count++] = dt;
      r.bytes += n;
    }
  };
  await Promise.all(Array.from({ length: opts.connections }, worker));
  r.elapsedMs = performance.now() - start;
  return r;
}
