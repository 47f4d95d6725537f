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

 * The waiting itself is core/queue/job-requester.ts.
 */
import { HttpProblem } from '../errors.js';
import { EMBED_JOB_OPTIONS, queueName, type EmbedQueueJobData, type EmbedQueueJobResult, type HeatmapJobData, type HeatmapJobResult } from '../jobs.js';
import { JobRequester } from '../queue/job-requester.js';

export interface HeatmapRequesterOptions {
  readonly redisUrl: string;
  /** Queue namespace (tests); must match the workers'. */
  readonly namespace?: string;
  readonly timeoutMs: number;
}

export class HeatmapRequester {
  private readonly jobs: JobRequester<EmbedQueueJobData, EmbedQueueJobResult>;

  constructor(private readonly opts: HeatmapRequesterOptions) {
    this.jobs = new JobRequester(opts.redisUrl, queueName('embed', opts.namespace));
  }

  async request(data: HeatmapJobData, timeoutMs = this.opts.timeoutMs): Promise<HeatmapJobResult> {
    const result = (await this.jobs.request({
      what: 'heatmap',
      timeoutMs,
      removeAfter: true,
      add: (queue) => queue.add('heatmap', data, EMBED_JOB_OPTIONS),
    })) as HeatmapJobResult | undefined;
    if (!result || typeof result !== 'object' || (result.status !== 'heatmap' && result.status !== 'refused')) {
      throw new HttpProblem('EMBED_UNAVAILABLE', 'the heatmap job failed: worker returned no heatmap', { retryAfter: 1 });
    }
    return result;
  }

  close(): Promise<void> {
    return this.jobs.close();
  }
}
