/**
 * Ask a worker for a similarity heatmap (core/jobs.ts HeatmapJobData) on the "embed"
 * queue and wait, bounded — the same contract as core/similar/embed-requester.ts:
 *
 *   Redis down / not answering   → EMBED_UNAVAILABLE (503) + Retry-After at once
 *   no answer in time            → EMBED_TIMEOUT (503) + Retry-After
 *   worker refused an image      → { status: 'refused', reason } (the route answers 422)
 *   job failed                   → EMBED_UNAVAILABLE with the worker's reason
 *
 * A heatmap of two archived instances has a job id of the pair and the model version
 * (core/jobs.ts heatmapJobId), so identical requests made together share one job, and is
 * left to expire (EMBED_JOB_OPTIONS.removeOnComplete, 60 s) as an instance embedding is:
 * removing it once answered could leave another request waiting on it with nothing to
 * find (unless its last waiting request gives up before a worker took it: then it is removed,
 * core/queue/job-requester.ts). One with an uploaded query is anonymous and removed once answered (an uploaded
 * query must not stay in Redis). Its own Queue/QueueEvents pair: heatmaps are rare next
 * to /similar queries, and this keeps the vector requester's job typing exhaustive.

 * The waiting itself is core/queue/job-requester.ts.
 */
import { HttpProblem } from '../errors.js';
import {
  EMBED_JOB_OPTIONS,
  heatmapJobId,
  queueName,
  sameInstanceUids,
  UPLOAD_JOB_OPTIONS,
  type EmbedQueueJobData,
  type EmbedQueueJobResult,
  type HeatmapJobData,
  type HeatmapJobResult,
  type HeatmapSide,
} from '../jobs.js';
import { addShared, JobRequester } from '../queue/job-requester.js';

export interface HeatmapRequesterOptions {
  readonly redisUrl: string;
  /** Queue namespace (tests); must match the workers'. */
  readonly namespace?: string;
  readonly timeoutMs: number;
  /** Who enqueues and waits; a JobRequester on redisUrl otherwise (tests). */
  readonly jobs?: Pick<JobRequester<EmbedQueueJobData, EmbedQueueJobResult>, 'request' | 'close'>;
}

/** The same pair of archived images, in the same roles, for the same model. */
function samePair(a: EmbedQueueJobData, b: HeatmapJobData): boolean {
  const same = (x: HeatmapSide, y: HeatmapSide) => !('dicomBase64' in x) && !('dicomBase64' in y) && sameInstanceUids(x, y);
  return a.kind === 'heatmap' && a.modelVersion === b.modelVersion && same(a.query, b.query) && same(a.result, b.result);
}

export class HeatmapRequester {
  private readonly jobs: Pick<JobRequester<EmbedQueueJobData, EmbedQueueJobResult>, 'request' | 'close'>;

  constructor(private readonly opts: HeatmapRequesterOptions) {
    this.jobs = opts.jobs ?? new JobRequester(opts.redisUrl, queueName('embed', opts.namespace));
  }

  async request(data: HeatmapJobData, timeoutMs = this.opts.timeoutMs): Promise<HeatmapJobResult> {
    const jobId = heatmapJobId(data);
    const result = (await this.jobs.request({
      what: 'heatmap',
      timeoutMs,
      removeAfter: jobId === undefined,
      dropIfAbandoned: true,
      add: (queue) =>
        jobId === undefined
          ? queue.add('heatmap', data, UPLOAD_JOB_OPTIONS) // an uploaded query: the only heatmaps without an id
          : addShared(queue, 'heatmap', data, { ...EMBED_JOB_OPTIONS, jobId }, (stored) => samePair(stored, data)),
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
