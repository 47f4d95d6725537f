/**
 * Ask a worker for a query vector now (ARCHITECTURE.md flow 5): an "embed" job
 * (core/jobs.ts) for an instance that is in the PACS but not indexed yet, or
 * for an uploaded image, and wait for its answer — bounded, never a hang:
 *
 *   Redis down          → EMBED_UNAVAILABLE (503) at once: the producer
 *                         connection has no offline queue (core/queue/redis.ts)
 *   no answer in time   → EMBED_TIMEOUT (503) with Retry-After; an instance job
 *                         stays queued, so it is indexed and the retry is fast
 *   worker refused it   → { status: 'refused', reason } (the caller answers 422)
 *   job failed          → EMBED_UNAVAILABLE with the worker's reason
 *
 * Waiting uses one shared QueueEvents stream (a blocking Redis connection) for
 * all requests, not one subscription per request.
 */
import { Queue, QueueEvents, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { HttpProblem } from '../errors.js';
import { EMBED_JOB_OPTIONS, indexJobId, queueName, type EmbedJobData, type EmbedJobResult } from '../jobs.js';
import { producerConnection, quiet, workerConnection } from '../queue/redis.js';

export interface EmbedRequesterOptions {
  readonly redisUrl: string;
  /** Queue namespace (tests); must match the workers'. */
  readonly namespace?: string;
  readonly timeoutMs: number;
}

/** Seconds a client should wait before asking again after a timeout. */
export function retryAfterSeconds(timeoutMs: number): number {
  return Math.max(1, Math.ceil(timeoutMs / 1000));
}

/** Upper bound on enqueueing alone: a Redis that accepts connections but does not answer must not hold a request. */
const ENQUEUE_TIMEOUT_MS = 2_000;
/** How far back a newly created events stream starts (covers clock skew between us and Redis). */
const EVENTS_REPLAY_MS = 10_000;

function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export class EmbedRequester {
  private readonly queue: Queue<EmbedJobData, EmbedJobResult>;
  private events: QueueEvents | undefined;
  private readonly conns: Redis[] = [];
  private readonly name: string;

  constructor(private readonly opts: EmbedRequesterOptions) {
    this.name = queueName('embed', opts.namespace);
    const producer = quiet(producerConnection(opts.redisUrl));
    this.conns.push(producer);
    this.queue = new Queue<EmbedJobData, EmbedJobResult>(this.name, {
      connection: producer,
    });
    this.queue.on('error', () => undefined); // reported per request
  }

  /**
   * The shared events stream, created once Redis has accepted a job: BullMQ 6's
   * QueueEvents.close() waits for a first connection that never comes when Redis was
   * down from the start, which would hang shutdown. It blocks on XREAD, so it gets a
   * connection that retries forever (BullMQ duplicates it for its own use).
   *
   * Created late, it must not start at '$' (now): the first job could finish between
   * BullMQ's "already finished?" check and the first XREAD, and its event would be
   * missed — the request would wait for its timeout (seen in a test run). Stream ids are
   * Redis-server milliseconds, so it starts a margin before the first job was added.
   */
  private eventStream(firstAddAtMs: number): QueueEvents {
    if (!this.events) {
      const blocking = quiet(workerConnection(this.opts.redisUrl));
      this.conns.push(blocking);
      this.events = new QueueEvents(this.name, { connection: blocking, lastEventId: `${firstAddAtMs - EVENTS_REPLAY_MS}-0` });
      this.events.on('error', () => undefined);
    }
    return this.events;
  }

  /**
   * Enqueue and wait. Instance jobs get a stable id (one job per instance and model
   * version while it lives: 100 users asking about one unindexed image make one job);
   * upload jobs are anonymous and removed as soon as they are answered, so the
   * uploaded image does not stay in Redis.
   */
  async embed(data: EmbedJobData, timeoutMs = this.opts.timeoutMs): Promise<EmbedJobResult> {
    const deadline = Date.now() + timeoutMs;
    let job: Job<EmbedJobData, EmbedJobResult>;
    const addAt = Date.now();
    try {
      job = await withDeadline(this.add(data), Math.min(timeoutMs, ENQUEUE_TIMEOUT_MS));
    } catch (err) {
      throw new HttpProblem('EMBED_UNAVAILABLE', `cannot queue the embedding (${(err as Error).message})`, {
        retryAfter: retryAfterSeconds(timeoutMs),
      });
    }
    try {
      const left = Math.max(1, deadline - Date.now());
      const result = (await job.waitUntilFinished(this.eventStream(addAt), left)) as EmbedJobResult;
      if (!result || typeof result !== 'object' || !('status' in result)) throw new Error('worker returned no result');
      return result;
    } catch (err) {
      const msg = (err as Error).message ?? String(err);
      if (/timed out before finishing/.test(msg) || Date.now() >= deadline) {
        // An instance job stays: a worker that catches up indexes the instance (an upload's is removed below).
        throw new HttpProblem('EMBED_TIMEOUT', `no embedding within ${timeoutMs} ms; try again`, {
          retryAfter: retryAfterSeconds(timeoutMs),
        });
      }
      throw new HttpProblem('EMBED_UNAVAILABLE', `the embedding job failed: ${msg.slice(0, 300)}`, {
        retryAfter: retryAfterSeconds(timeoutMs),
      });
    } finally {
      if (data.kind === 'upload') await job.remove().catch(() => undefined);
    }
  }

  private async add(data: EmbedJobData): Promise<Job<EmbedJobData, EmbedJobResult>> {
    if (data.kind === 'upload') return this.queue.add('upload', data, EMBED_JOB_OPTIONS);
    const jobId = `q_${indexJobId(data.sopInstanceUid, data.modelVersion)}`;
    // A failed job with this id would answer every request with its old failure
    // until it expires (EMBED_JOB_OPTIONS.removeOnFail): clear it and try afresh.
    const old = await this.queue.getJob(jobId);
    if (old && (await old.isFailed())) await old.remove().catch(() => undefined);
    return this.queue.add('instance', data, { ...EMBED_JOB_OPTIONS, jobId });
  }

  async close(): Promise<void> {
    // BullMQ's close waits for a connection that may never come (Redis down): bounded.
    await withDeadline(Promise.allSettled([this.events?.close(), this.queue.close()]), 1_000).catch(() => undefined);
    for (const c of this.conns) {
      // A connection still trying to reach a dead Redis would schedule one more reconnect after disconnect().
      c.options.retryStrategy = () => null;
      c.disconnect();
    }
  }
}
