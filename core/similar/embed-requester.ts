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

export class EmbedRequester {
  private readonly queue: Queue<EmbedJobData, EmbedJobResult>;
  private readonly events: QueueEvents;
  private readonly conns: Redis[] = [];

  constructor(private readonly opts: EmbedRequesterOptions) {
    const name = queueName('embed', opts.namespace);
    const producer = quiet(producerConnection(opts.redisUrl));
    // The events stream blocks on XREAD: it needs its own connection that retries forever.
    const blocking = quiet(workerConnection(opts.redisUrl));
    this.conns.push(producer, blocking);
    this.queue = new Queue<EmbedJobData, EmbedJobResult>(name, { connection: producer });
    this.queue.on('error', () => undefined); // reported per request
    this.events = new QueueEvents(name, { connection: blocking });
    this.events.on('error', () => undefined);
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
    try {
      if (data.kind === 'instance') {
        const jobId = `q_${indexJobId(data.sopInstanceUid, data.modelVersion)}`;
        // A failed job with this id would answer every request with its old failure
        // until it expires (EMBED_JOB_OPTIONS.removeOnFail): clear it and try afresh.
        const old = await this.queue.getJob(jobId);
        if (old && (await old.isFailed())) await old.remove().catch(() => undefined);
        job = await this.queue.add('instance', data, { ...EMBED_JOB_OPTIONS, jobId });
      } else {
        job = await this.queue.add('upload', data, EMBED_JOB_OPTIONS);
      }
    } catch (err) {
      throw new HttpProblem('EMBED_UNAVAILABLE', `cannot queue the embedding (${(err as Error).message})`, {
        retryAfter: retryAfterSeconds(timeoutMs),
      });
    }
    try {
      const left = Math.max(1, deadline - Date.now());
      const result = (await job.waitUntilFinished(this.events, left)) as EmbedJobResult;
      if (!result || typeof result !== 'object' || !('status' in result)) throw new Error('worker returned no result');
      return result;
    } catch (err) {
      const msg = (err as Error).message ?? String(err);
      if (/timed out before finishing/.test(msg) || Date.now() >= deadline) {
        // An instance job stays: a worker that catches up indexes the instance.
        if (data.kind === 'upload') await job.remove().catch(() => undefined);
        throw new HttpProblem('EMBED_TIMEOUT', `no embedding within ${timeoutMs} ms; try again`, { retryAfter: retryAfterSeconds(timeoutMs) });
      }
      throw new HttpProblem('EMBED_UNAVAILABLE', `the embedding job failed: ${msg.slice(0, 300)}`, { retryAfter: retryAfterSeconds(timeoutMs) });
    } finally {
      if (data.kind === 'upload') await job.remove().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.events.close(), this.queue.close()]);
    for (const c of this.conns) c.disconnect();
  }
}
