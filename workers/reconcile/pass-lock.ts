/**
 * The reconciler's "one pass at a time, at most one per interval" lock, shared by
 * every worker process through Redis. SET NX PX takes it for one interval; while a
 * pass runs, the holder keeps extending it, because a full crawl of a large PACS
 * takes far longer than an interval (hours for 100k studies) and a lock that
 * lapsed mid-pass let a second, third … worker start crawling too, multiplying the
 * PACS load. After the pass the lock is left to expire, so the next pass, on any
 * worker, starts about one interval later.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

// Extend only while the key still holds our token: never another holder's lock.
const EXTEND = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

export interface HeldLock {
  /** Stop extending; the lock then expires on its own. */
  release(): void;
}

/**
 * Take the lock for ttlMs, or undefined when another process holds it; while held it is extended every
 * ttlMs/3. `onError` hears of a failed extension and, once, of a lock found lost.
 */
export async function takePassLock(conn: Redis, key: string, ttlMs: number, onError?: (err: Error) => void): Promise<HeldLock | undefined> {
  const token = randomUUID();
  if ((await conn.set(key, token, 'PX', ttlMs, 'NX')) !== 'OK') return undefined;
  let lost = false;
  const timer = setInterval(
    () => {
      conn
        .eval(EXTEND, 1, key, token, String(ttlMs))
        .then((held) => {
          // The key is gone or another's (a Redis restarted without persistence, a pause past the
          // ttl): another worker may be crawling too. Said once; the pass goes on, as duplicates are harmless.
          if (held === 0 && !lost) {
            lost = true;
            onError?.(new Error(`the lock ${key} was lost (Redis restarted or lapsed); another worker may run a pass at the same time`));
          }
        })
        .catch((err: Error) => onError?.(err));
    },
    Math.max(100, Math.floor(ttlMs / 3)),
  );
  timer.unref();
  return { release: () => clearInterval(timer) };
}
