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
