/**
 * Keep-alive agents for the PACS connection, http and https alike.
 *
 * Why not a stock `new http.Agent({ keepAlive: true })` (or https.Agent, which
 * inherits the same logic): Orthanc 1.10 answers `Keep-Alive: timeout=1`, and
 * Node's agent subtracts a 1 s safety margin from that hint — leaving 0, so it
 * silently refuses to reuse any Orthanc socket and every proxied request pays a
 * TCP connect (and, for https, a TLS handshake). We keep free sockets for our
 * own, shorter window (CBMIR_PACS_KEEPALIVE_MS, default 700 ms, under Orthanc's
 * 1 s), shortened further when the PACS's hint leaves less, and the forwarder
 * retries idempotent requests once when a reused socket turns out to have been
 * closed by the PACS in the meantime.
 */
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';

export interface UpstreamAgentOptions {
  readonly maxSockets: number;
  /** Idle time after which a free socket is closed; 0 disables reuse. */
  readonly keepAliveMs: number;
}

/** Taken off the PACS's `Keep-Alive: timeout=N`: a socket is not offered for reuse in the last moments before the PACS closes it. */
const HINT_MARGIN_MS = 300;

/** How long a free socket may wait for reuse, or 0 for not at all. */
export function idleWindowMs(keepAliveMs: number, keepAliveHeader: string | undefined): number {
  const hint = keepAliveHeader === undefined ? undefined : /(?:^|[\s,])timeout=(\d+)/i.exec(keepAliveHeader)?.[1];
  if (hint === undefined) return keepAliveMs;
  return Math.max(0, Math.min(keepAliveMs, Number(hint) * 1000 - HINT_MARGIN_MS));
}

/** The response the socket just carried (node's agent reads the hint the same way). */
function keepAliveHint(socket: Socket): string | undefined {
  const hint = (socket as Socket & { _httpMessage?: { res?: http.IncomingMessage } })._httpMessage?.res?.headers['keep-alive'];
  return typeof hint === 'string' ? hint : undefined;
}

function keepFree(socket: Socket, keepAliveMs: number): boolean {
  const idleMs = idleWindowMs(keepAliveMs, keepAliveHint(socket));
  if (idleMs <= 0) return false;
  // No TCP keep-alive probes (the stock agent sets them on every release, a
  // setsockopt per request): a free socket lives under a second anyway.
  socket.unref();
  // The agent destroys a free socket that emits 'timeout'.
  socket.setTimeout(idleMs);
  return true;
}

function takeFree(socket: Socket): void {
  socket.setTimeout(0);
  socket.ref();
}

const poolOptions = (o: UpstreamAgentOptions) =>
  ({ keepAlive: o.keepAliveMs > 0, maxSockets: o.maxSockets, maxFreeSockets: o.maxSockets, scheduling: 'lifo' }) as const;

/** The pool behaviour above on Node's http or https agent: one class body for both. */
function pacsAgent(Base: typeof http.Agent, o: UpstreamAgentOptions): http.Agent {
  class PacsAgent extends Base {
    override keepSocketAlive(socket: Socket): boolean {
      return keepFree(socket, o.keepAliveMs);
    }

    override reuseSocket(socket: Socket, req: http.ClientRequest): void {
      takeFree(socket);
      super.reuseSocket(socket, req);
    }
  }
  return new PacsAgent(poolOptions(o));
}

export function createUpstreamAgent(protocol: 'http:' | 'https:', opts: UpstreamAgentOptions): http.Agent {
  return pacsAgent(protocol === 'https:' ? https.Agent : http.Agent, opts);
}
