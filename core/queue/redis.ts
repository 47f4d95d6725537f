/**
 * Redis connections for BullMQ. Producers (the gateway's STOW hook, the
 * reconciler) must fail fast when Redis is down — a STOW never waits on the
 * queue — so they get no offline queue and one retry per command. Workers use
 * blocking commands and must retry forever (BullMQ requires
 * maxRetriesPerRequest: null for them).
 */
import { Redis, type RedisOptions } from 'ioredis';

export function producerConnection(url: string, extra: RedisOptions = {}): Redis {
  return new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    commandTimeout: 2_000,
    // Reconnect in the background, capped: the next STOW after Redis returns works again.
    retryStrategy: (n) => Math.min(n * 200, 2_000),
    lazyConnect: false,
    // disconnect() waits this long for the socket to close before destroying it, on a timer that
    // a socket whose connect failed never clears: a CLI command done against a Redis that refused
    // it would otherwise stay alive 2 s (ioredis's default) after its last word.
    disconnectTimeout: 200,
    ...extra,
  });
}

export function workerConnection(url: string, extra: RedisOptions = {}): Redis {
  return new Redis(url, {
    maxRetriesPerRequest: null,
    retryStrategy: (n) => Math.min(n * 200, 2_000),
    ...extra,
  });
}

/** Swallow connection-level 'error' events (they are reported through failed commands). */
export function quiet(conn: Redis, onError?: (err: Error) => void): Redis {
  conn.on('error', (err: Error) => onError?.(err));
  return conn;
}

/** Socket errors that say nothing answers at the address, or the name does not resolve. */
const NOT_THERE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/** Whether a connection error says nothing answers at the address (not a slow or busy Redis). */
export function isRedisNotThere(err: unknown): boolean {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' && NOT_THERE.has(code);
}

/**
 * Whether an error is about reaching Redis (a socket error, a closed or not yet open
 * connection) rather than about a command or a job.
 */
export function isRedisConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  if (typeof code === 'string' && (NOT_THERE.has(code) || ['ECONNRESET', 'ETIMEDOUT', 'EPIPE'].includes(code))) return true;
  const message = err instanceof Error ? err.message : String(err);
  return /Connection is closed|Stream isn't writeable|connect ETIMEDOUT|Reached the max retries per request limit/.test(message);
}
