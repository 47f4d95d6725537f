/**
 * Ask a worker for a similarity heatmap (core/jobs.ts HeatmapJobData) on the "embed"
 * queue and wait, bounded — the same contract as core/similar/embed-requester.ts:
 *
 *   Redis down / not answering   → EMBED_UNAVAILABLE (503) + Retry-After at once
 *   no answer in time            → EMBED_TIMEOUT (503) + Retry-After
 *   worker refused an image      → { status: 'refused', reason } (the route answers 422)
 *   job failed                   → EMBED_UNAVAILABLE with the worker's reason
 *
 * Jobs are anonymous and removed once answered (an uploaded query must not stay in
 * Redis). Its own Queue/QueueEvents pair: heatmaps are rare next to /similar queries,
 * and this keeps the vector requester's job typing exhaustive.
 *
 * The event stream is read from its last entry at first use, not from BullMQ's default
 * '$': a QueueEvents that has not read an event yet re-issues XREAD with '$' after each
 * blocking timeout and after each connection reset (BullMQ 6.7 resets the connection when
 * a read overruns its deadline by 1 s, as on a busy event loop), and loses whatever was
 * published meanwhile — seen here as a job that completed in 0.2 s and a request that
 * timed out waiting for it. With a concrete id, a re-issued read resumes where it stopped.
 */
import { Queue, QueueEvents, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { HttpProblem } from '../errors.js';
import { EMBED_JOB_OPTIONS, queueName, type EmbedQueueJobData, type EmbedQueueJobResult, type HeatmapJobData, type HeatmapJobResult } from '../jobs.js';
import { producerConnection, quiet, workerConnection } from '../queue/redis.js';
import { retryAfterSeconds } from '../similar/embed-requester.js';

const ENQUEUE_TIMEOUT_MS = 2_000;

export interface HeatmapRequesterOptions {
  readonly redisUrl: string;
  /** Queue namespace (tests); must match the workers'. */
  readonly namespace?: string;
  readonly timeoutMs: number;
}

function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export class HeatmapRequester {
  private readonly queue: Queue<EmbedQueueJobData, EmbedQueueJobResult>;
  private readonly producer: Redis;
  private readonly blocking: Redis;
  private events: Promise<QueueEvents> | undefined;
  private readonly conns: Redis[] = [];

  constructor(private readonly opts: HeatmapRequesterOptions) {
    const name = queueName('embed', opts.namespace);
    const producer = quiet(producerConnection(opts.redisUrl));
    this.producer = producer;
    this.blocking = quiet(workerConnection(opts.redisUrl));
    this.conns.push(producer, this.blocking);
    this.queue = new Queue<EmbedQueueJobData, EmbedQueueJobResult>(name, { connection: producer });
    this.queue.on('error', () => undefined); // reported per request
  }

  /** The event reader, started after the stream's current last entry (see the module comment). */
  private queueEvents(): Promise<QueueEvents> {
    this.events ??= (async () => {
      const last = await this.producer.xrevrange(this.queue.keys.events!, '+', '-', 'COUNT', 1);
      const events = new QueueEvents(this.queue.name, { connection: this.blocking, lastEventId: last[0]?.[0] ?? '0-0' });
      events.on('error', () => undefined);
      await events.waitUntilReady();
      return events;
    })();
    this.events.catch(() => (this.events = undefined)); // Redis down: the next request tries again
    return this.events;
  }

  async request(data: HeatmapJobData, timeoutMs = this.opts.timeoutMs): Promise<HeatmapJobResult> {
    const deadline = Date.now() + timeoutMs;
    const retryAfter = retryAfterSeconds(timeoutMs);
    let job: Job<EmbedQueueJobData, EmbedQueueJobResult>;
    let events: QueueEvents;
    try {
      events = await withDeadline(this.queueEvents(), Math.min(timeoutMs, ENQUEUE_TIMEOUT_MS));
      job = await withDeadline(this.queue.add('heatmap', data, EMBED_JOB_OPTIONS), Math.min(timeoutMs, ENQUEUE_TIMEOUT_MS));
    } catch (err) {
      throw new HttpProblem('EMBED_UNAVAILABLE', `cannot queue the heatmap (${(err as Error).message})`, { retryAfter });
    }
    try {
      const result = (await job.waitUntilFinished(events, Math.max(1, deadline - Date.now()))) as HeatmapJobResult | undefined;
      if (!result || typeof result !== 'object' || (result.status !== 'heatmap' && result.status !== 'refused')) throw new Error('worker returned no heatmap');
      return result;
    } catch (err) {
      const msg = (err as Error).message ?? String(err);
      if (/timed out before finishing/.test(msg) || Date.now() >= deadline) {
        throw new HttpProblem('EMBED_TIMEOUT', `no heatmap within ${timeoutMs} ms; try again`, { retryAfter });
      }
      throw new HttpProblem('EMBED_UNAVAILABLE', `the heatmap job failed: ${msg.slice(0, 300)}`, { retryAfter });
    } finally {
      await job.remove().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    const events = await this.events?.catch(() => undefined);
    await Promise.allSettled([events?.close(), this.queue.close()]);
    for (const c of this.conns) c.disconnect();
  }
}
