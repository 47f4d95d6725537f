/**
 * The PACS side of the proxy: opens one upstream request over the keep-alive
 * agent, with a bounded wait for the response head (→ 504) and a single retry
 * for body-less requests whose reused socket the PACS had already closed.
 * Connection failures surface as UpstreamError (→ 502) — never a hang.
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
}

export interface UpstreamOptions {
  readonly timeoutMs: number;
  readonly maxSockets: number;
  readonly keepAliveMs: number;
}

const RETRYABLE = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

export class Upstream {
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;

  constructor(private readonly opts: UpstreamOptions) {
    this.httpAgent = createUpstreamAgent(opts);
    this.httpsAgent = new https.Agent({ keepAlive: opts.keepAliveMs > 0, maxSockets: opts.maxSockets });
  }

  get timeoutMs(): number {
    return this.opts.timeoutMs;
  }

  /**
   * Send `r` and call `done` exactly once: with the response (head received,
   * body not yet read) or with an UpstreamError. Returns an abort function for
   * when the client goes away first.
   */
  send(r: UpstreamRequest, done: (err: UpstreamError | null, res?: http.IncomingMessage) => void): () => void {
    let finished = false;
    let current: http.ClientRequest | null = null;
    const finish = (err: UpstreamError | null, res?: http.IncomingMessage): void => {
      if (finished) {
        res?.resume();
        return;
      }
      finished = true;
      disarm();
      done(err, res);
    };
    // The wait for the PACS is bounded from the start (connect included) until
    // the answer head arrives — except while a request body (STOW) is being
    // uploaded: that takes as long as the client needs, and the PACS answers
    // only after the last byte. The clock restarts once the body is sent.
    let timer: NodeJS.Timeout | undefined;
    const disarm = (): void => {
      clearTimeout(timer);
      timer = undefined;
    };
    const arm = (): void => {
      disarm();
      timer = setTimeout(() => {
        finish(new UpstreamError('timeout', `PACS did not answer within ${this.opts.timeoutMs} ms`));
        current?.destroy();
      }, this.opts.timeoutMs);
    };
    arm();

    const attempt = (retry: boolean): void => {
      const mod = r.endpoint.protocol === 'https:' ? https : http;
      let creq: http.ClientRequest;
      try {
        creq = mod.request({
          protocol: r.endpoint.protocol,
          hostname: r.endpoint.hostname,
          port: r.endpoint.port,
          method: r.method,
          path: r.path,
          headers: r.headers,
          agent: r.endpoint.protocol === 'https:' ? this.httpsAgent : this.httpAgent,
          setHost: false,
        });
      } catch (err) {
        // e.g. a header value Node refuses to send: a bad request, but never a crash.
        finish(new UpstreamError('unreachable', `request to the PACS could not be built: ${(err as Error).message}`));
        return;
      }
      current = creq;
      creq.on('response', (res) => finish(null, res));
      creq.on('error', (err: NodeJS.ErrnoException) => {
        if (finished) return;
        // A reused keep-alive socket the PACS closed while idle: safe to replay
        // a request without a body exactly once on a fresh connection.
        if (retry && r.body === null && creq.reusedSocket && err.code && RETRYABLE.has(err.code)) {
          attempt(false);
          return;
        }
        finish(new UpstreamError('unreachable', `PACS connection failed: ${err.code ?? err.message}`, err.code));
      });
      if (r.body) {
        creq.once('socket', (socket) => {
          if (socket.connecting) socket.once('connect', disarm);
          else disarm();
        });
        creq.once('finish', () => {
          if (!finished) arm();
        });
        r.body.pipe(creq);
      } else {
        creq.end();
      }
    };
    attempt(true);
    return () => {
      if (!finished) {
        finished = true;
        disarm();
      }
      current?.destroy();
    };
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}
