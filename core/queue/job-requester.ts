/**
 * Enqueue a job and wait for its answer, bounded — the shared machinery behind
 * the gateway's interactive requests (query vectors, heatmaps). One Queue and one
 * QueueEvents stream per queue, shared by all requests.
 *
 *   Redis down / not answering → EMBED_UNAVAILABLE (503) at once: the producer
 *                                connection has no offline queue (core/queue/redis.ts)
 *   no answer in time          → EMBED_TIMEOUT (503) with Retry-After
 *   job failed                 → EMBED_UNAVAILABLE; the worker's reason only when it is a
 *                                decode refusal (the image's fault), else a generic detail
 *                                and the reason on JobUnavailable for the route to log
 *
 * The event stream is created at first use (BullMQ 6's QueueEvents.close() waits for
 * a first connection that never comes when Redis was down from the start) and reads
 * from the stream's last entry at that moment, not from BullMQ's default '$': a
 * QueueEvents that has not read an event yet re-issues XREAD with '$' after each
 * blocking timeout and connection reset (BullMQ 6.7 resets the connection when a read
 * overruns its deadline, as on a busy event loop) and loses what was published
 * meanwhile — seen here as a job that completed in 0.2 s and a request that timed out
 * waiting for it. With a concrete id, a re-issued read resumes where it stopped.
 */
import { Queue, QueueEvents, type Job, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { HttpProblem } from '../errors.js';
// The log's own definition of a UID in text (bounded by digits, not \b, so "sop_1.2.3.4.5" is
// blanked whole). It misses UIDs of ≤ 4 components with no component of ≥ 10 digits ("1.2.3.4"),
// so that IPv4 addresses stay readable, and keeps the standard's own (1.2.840.10008.…).
import { scrubUids } from '../log.js';
import { producerConnection, quiet, workerConnection } from './redis.js';

/** Upper bound on enqueueing alone: a Redis that accepts connections but does not answer must not hold a request. */
const ENQUEUE_TIMEOUT_MS = 2_000;

/**
 * A worker's refusal to decode the image ("decode: CODE: reason", workers/index-worker.ts): the
 * client's own image is at fault, and docs/api.md promises the reason.
 */
const DECODE_REFUSAL = /^decode: /;
/** Characters of a reason kept for the log. */
const REASON_CHARS = 500;

/**
 * EMBED_UNAVAILABLE whose cause is the service's own (Redis or the PACS unreachable, an index
 * name, a missing model file): the client learns that it failed, the logs learn why (`reason`,
 * UIDs blanked), and no internal address reaches a client.
 */
export class JobUnavailable extends HttpProblem {
  readonly reason: string;
  constructor(detail: string, reason: string, retryAfter: number) {
    super('EMBED_UNAVAILABLE', detail, { retryAfter });
    // Blanked before cut: a UID cut at the end would leave a fragment too short to be matched.
    this.reason = scrubUids(reason).slice(0, REASON_CHARS);
  }
}

/** Seconds a client should wait before asking again after a timeout. */
export function retryAfterSeconds(timeoutMs: number): number {
  return Math.max(1, Math.ceil(timeoutMs / 1000));
}

/** `p`, or a rejection with `late()` once `ms` have passed (a Redis call by default). */
export function withDeadline<T>(
  p: Promise<T>,
  ms: number,
  late: () => Error = () => new Error(`Redis did not answer within ${ms} ms`),
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(late()), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** What addShared uses of a Queue (a concrete one: BullMQ's generic typing does not narrow). */
export interface SharedQueue<D, R> {
  getJob(jobId: string): Promise<Job<D, R> | undefined>;
  add(name: string, data: D, opts?: JobsOptions): Promise<Job<D, R>>;
}

/**
 * Add a job under `jobId`, an id that identical requests made together share (one job, one
 * worker's time, for all of them), or join the one already there. A failed one is cleared
 * first: it would answer every request with its old failure until it expires
 * (EMBED_JOB_OPTIONS.removeOnFail). One that is not this request (`sameRequest` false on its
 * data: the id's digest collided) is not joined, whose answer would be another image's: the
 * request gets an anonymous job of its own.
 */
export async function addShared<D, R>(
  queue: SharedQueue<D, R>,
  name: string,
  data: D,
  opts: Readonly<JobsOptions> & { readonly jobId: string },
  sameRequest: (stored: D) => boolean,
): Promise<Job<D, R>> {
  const { jobId, ...anonymous } = opts;
  const old = await queue.getJob(jobId);
  if (old && !sameRequest(old.data)) return queue.add(name, data, anonymous);
  if (old && (await old.isFailed())) await old.remove().catch(() => undefined);
  return queue.add(name, data, { ...anonymous, jobId });
}

export interface RequestOptions<D, R> {
  /** What is being asked for, for error messages ("embedding", "heatmap"). */
  readonly what: string;
  readonly timeoutMs: number;
  /** Enqueue the job (may reuse an existing one, e.g. a stable job id). */
  readonly add: (queue: Queue<D, R>) => Promise<Job<D, R>>;
  /** Remove the job once answered (uploads must not stay in Redis). */
  readonly removeAfter: boolean;
  /**
   * Remove a job no worker has taken yet when the last request of this process waiting for it
   * gives up (EMBED_TIMEOUT): a heatmap nobody waits for any more would only take a worker from
   * the queries still waiting. (An instance embedding stays: it indexes the instance, so the
   * retry is fast.)
   */
  readonly dropIfAbandoned?: boolean;
}

/** Remove a job still queued; one a worker has taken (locked) or finished stays. */
async function removeIfNotStarted(job: Job): Promise<void> {
  const state = await job.getState().catch(() => undefined);
  if (state === 'waiting' || state === 'prioritized' || state === 'delayed') await job.remove().catch(() => undefined);
}

export class JobRequester<D, R> {
  readonly queue: Queue<D, R>;
  private readonly producer: Redis;
  private readonly conns: Redis[] = [];
  private events: Promise<QueueEvents> | undefined;
  /** Requests of this process waiting, per job id (of those asked with dropIfAbandoned). */
  private readonly waiting = new Map<string, number>();

  constructor(
    private readonly redisUrl: string,
    name: string,
  ) {
    this.producer = quiet(producerConnection(redisUrl));
    this.conns.push(this.producer);
    this.queue = new Queue<D, R>(name, { connection: this.producer });
    this.queue.on('error', () => undefined); // reported per request
  }

  private eventStream(): Promise<QueueEvents> {
    this.events ??= (async () => {
      const last = await this.producer.xrevrange(this.queue.keys.events!, '+', '-', 'COUNT', 1);
      // It blocks on XREAD, so it gets a connection that retries forever.
      const blocking = quiet(workerConnection(this.redisUrl));
      this.conns.push(blocking);
      const events = new QueueEvents(this.queue.name, { connection: blocking, lastEventId: last[0]?.[0] ?? '0-0' });
      events.on('error', () => undefined);
      await events.waitUntilReady();
      return events;
    })();
    this.events.catch(() => (this.events = undefined)); // Redis down: the next request tries again
    return this.events;
  }

  async request(o: RequestOptions<D, R>): Promise<R> {
    const deadline = Date.now() + o.timeoutMs;
    const retryAfter = retryAfterSeconds(o.timeoutMs);
    let job: Job<D, R>;
    let events: QueueEvents;
    try {
      const bound = Math.min(o.timeoutMs, ENQUEUE_TIMEOUT_MS);
      events = await withDeadline(this.eventStream(), bound);
      job = await withDeadline(o.add(this.queue), bound);
    } catch (err) {
      throw new JobUnavailable(
        `cannot queue the ${o.what}: the job queue is unavailable`,
        (err as Error).message ?? String(err),
        retryAfter,
      );
    }
    const id = job.id ?? '';
    if (o.dropIfAbandoned) this.waiting.set(id, (this.waiting.get(id) ?? 0) + 1);
    try {
      return (await job.waitUntilFinished(events, Math.max(1, deadline - Date.now()))) as R;
    } catch (err) {
      const msg = (err as Error).message ?? String(err);
      if (/timed out before finishing/.test(msg) || Date.now() >= deadline) {
        if (o.dropIfAbandoned && this.waiting.get(id) === 1) await removeIfNotStarted(job);
        throw new HttpProblem('EMBED_TIMEOUT', `no ${o.what} within ${o.timeoutMs} ms; try again`, { retryAfter });
      }
      if (DECODE_REFUSAL.test(msg))
        throw new HttpProblem('EMBED_UNAVAILABLE', `the ${o.what} job failed: ${msg.slice(0, 300)}`, { retryAfter });
      throw new JobUnavailable(`the ${o.what} job failed`, msg, retryAfter);
    } finally {
      if (o.dropIfAbandoned) {
        const left = (this.waiting.get(id) ?? 1) - 1;
        if (left > 0) this.waiting.set(id, left);
        else this.waiting.delete(id);
      }
      if (o.removeAfter) await job.remove().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    // BullMQ's close waits for a connection that may never come (Redis down): bounded.
    const events = await withDeadline(this.events ?? Promise.resolve(undefined), 1_000).catch(() => undefined);
    await withDeadline(Promise.allSettled([events?.close(), this.queue.close()]), 1_000).catch(() => undefined);
    for (const c of this.conns) {
      // A connection still trying to reach a dead Redis would schedule one more reconnect after disconnect().
      c.options.retryStrategy = () => null;
      c.disconnect();
    }
  }
}
