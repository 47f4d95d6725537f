/**
 * Keep-alive agent for the PACS connection.
 *
 * Why not a stock `new http.Agent({ keepAlive: true })`: Orthanc 1.10 answers
 * `Keep-Alive: timeout=1`, and Node's agent subtracts a 1 s safety margin from
 * that hint — leaving 0, so it silently refuses to reuse any Orthanc socket and
 * every proxied request pays a TCP connect. We keep free sockets for our own,
 * shorter window (CBMIR_PACS_KEEPALIVE_MS, default 700 ms, under Orthanc's 1 s)
 * and the forwarder retries idempotent requests once when a reused socket turns
 * out to have been closed by the PACS in the meantime.
 */
import http from 'node:http';
import type { Socket } from 'node:net';

export interface UpstreamAgentOptions {
  readonly maxSockets: number;
  /** Idle time after which a free socket is closed; 0 disables reuse. */
  readonly keepAliveMs: number;
}

class PacsAgent extends http.Agent {
  constructor(
    private readonly idleMs: number,
    maxSockets: number,
  ) {
    super({ keepAlive: idleMs > 0, maxSockets, maxFreeSockets: maxSockets, scheduling: 'lifo' });
  }

  override keepSocketAlive(socket: Socket): boolean {
    if (this.idleMs <= 0) return false;
    // No TCP keep-alive probes (the stock agent sets them on every release, a
    // setsockopt per request): a free socket lives under a second anyway.
    socket.unref();
    // The agent destroys a free socket that emits 'timeout'.
    socket.setTimeout(this.idleMs);
    return true;
  }

  override reuseSocket(socket: Socket, req: http.ClientRequest): void {
    socket.setTimeout(0);
    socket.ref();
    super.reuseSocket(socket, req);
  }
}

export function createUpstreamAgent(opts: UpstreamAgentOptions): http.Agent {
  return new PacsAgent(opts.keepAliveMs, opts.maxSockets);
}
