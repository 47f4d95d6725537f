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

  constructor(
    redisUrl: string,
    readonly modelVersion: string,
    opts: { namespace?: string; onConnectionError?: (err: Error) => void } = {},
  ) {
    this.conn = quiet(producerConnection(redisUrl), opts.onConnectionError);
    this.queue = new Queue<IndexJobData>(queueName('index', opts.namespace), { connection: this.conn });
    this.queue.on('error', () => undefined); // reported per call below
  }

  async enqueue(instances: readonly StoredInstance[], source: IndexJobSource): Promise<EnqueueOutcome> {
    if (instances.length === 0) return { enqueued: 0, failed: 0 };
    const now = Date.now();
    try {
      await this.queue.addBulk(
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
      );
      return { enqueued: instances.length, failed: 0 };
    } catch (err) {
      return { enqueued: 0, failed: instances.length, error: (err as Error).message };
    }
  }

  /** Cheap liveness probe for /readyz. */
  async ping(): Promise<void> {
    await this.conn.ping();
  }

  async close(): Promise<void> {
    await this.queue.close().catch(() => undefined);
    this.conn.disconnect();
  }
}
