/**
 * Enqueue "index" jobs for instances the PACS stored. Used by the gateway's
 * STOW hook and by the reconciler. Job id = SOP Instance UID + model version
 * (core/jobs.ts), so a re-sent STOW or a reconciler pass racing the hook adds
 * nothing new. Failures are returned, not thrown: the caller logs and counts
 * them, and the reconciler catches up later.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { INDEX_JOB_OPTIONS, indexJobId, queueName, type IndexJobData, type IndexJobSource } from '../jobs.js';
import type { StoredInstance } from '../pacs/stow-response.js';
import { producerConnection, quiet } from './redis.js';

export interface EnqueueOutcome {
  readonly enqueued: number;
  readonly failed: number;
  readonly error?: string;
}

export class IndexEnqueuer {
  readonly queue: Queue<IndexJobData>;
  private readonly conn: Redis;
  private readonly timeoutMs: number;

  constructor(
    redisUrl: string,
    readonly modelVersion: string,
    opts: { namespace?: string; onConnectionError?: (err: Error) => void; timeoutMs?: number } = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 3_000;
    this.conn = quiet(producerConnection(redisUrl), opts.onConnectionError);
    this.queue = new Queue<IndexJobData>(queueName('index', opts.namespace), { connection: this.conn });
    this.queue.on('error', () => undefined); // reported per call below
  }

  async enqueue(instances: readonly StoredInstance[], source: IndexJobSource): Promise<EnqueueOutcome> {
    if (instances.length === 0) return { enqueued: 0, failed: 0 };
    const now = Date.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      // Bounded: while Redis has never been reachable BullMQ waits for 'ready' forever.
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`Redis did not answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      });
      const add = this.clearFailed(instances, source).then(() =>
        this.queue.addBulk(
          instances.map((i) => ({
            name: source,
            data: {
              studyInstanceUid: i.studyInstanceUid,
              seriesInstanceUid: i.seriesInstanceUid,
              sopInstanceUid: i.sopInstanceUid,
              modelVersion: this.modelVersion,
              source,
              enqueuedAt: now,
            },
            opts: { ...INDEX_JOB_OPTIONS, jobId: indexJobId(i.sopInstanceUid, this.modelVersion) },
          })),
        ),
      );
      add.catch(() => undefined); // may settle after the deadline
      await Promise.race([add, deadline]);
      return { enqueued: instances.length, failed: 0 };
    } catch (err) {
      return { enqueued: 0, failed: instances.length, error: (err as Error).message };
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * An instance sent again through STOW (a truncated file re-sent whole, images that arrived while
   * the index was down for longer than the retries last) must be indexed again: its failed job
   * would otherwise hold the job id, and BullMQ ignores an add with an id it already has, for as
   * long as failed jobs are kept (7 days). Only failed jobs are cleared; a waiting or running one
   * still absorbs the duplicate. The reconciler leaves failed jobs alone (`cbmir failed --retry`).
   */
  private async clearFailed(instances: readonly StoredInstance[], source: IndexJobSource): Promise<void> {
    if (source !== 'stow') return;
    const ids = instances.map((i) => indexJobId(i.sopInstanceUid, this.modelVersion));
    const pipe = this.conn.pipeline();
    const failedKey = this.queue.toKey('failed');
    for (const id of ids) pipe.zscore(failedKey, id);
    const scores = (await pipe.exec()) ?? [];
    const failed = ids.filter((_, k) => scores[k]?.[1] !== null && scores[k]?.[1] !== undefined);
    for (const id of failed) await this.queue.remove(id);
  }

  /** Whether the Redis connection is up now (no command is sent). */
  get connected(): boolean {
    return this.conn.status === 'ready';
  }

  /** Cheap liveness probe for /readyz. */
  async ping(): Promise<void> {
    await this.conn.ping();
  }

  /** Bounded: BullMQ's Queue.close() waits forever when Redis was never reachable. */
  async close(timeoutMs = 2_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.queue.close().catch(() => undefined),
      new Promise<void>((r) => {
        timer = setTimeout(r, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    this.conn.disconnect();
  }
}
