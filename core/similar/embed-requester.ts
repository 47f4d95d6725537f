/**
 * Ask a worker for a query vector now (ARCHITECTURE.md flow 5): an "embed" job
 * (core/jobs.ts) for an instance that is in the PACS but not indexed yet, or for
 * an uploaded image, and wait for its answer, bounded (core/queue/job-requester.ts).
 * A refusal by the worker comes back as { status: 'refused', reason } (the caller
 * answers 422). On a timeout an instance job stays queued, so the instance is
 * indexed and the retry is fast; an upload's job is removed once answered.
 */
import { HttpProblem } from '../errors.js';
import { EMBED_JOB_OPTIONS, instanceQueryJobId, queueName, sameInstanceUids, UPLOAD_JOB_OPTIONS, type EmbedJobData, type EmbedJobResult } from '../jobs.js';
import { addShared, JobRequester } from '../queue/job-requester.js';

export { retryAfterSeconds } from '../queue/job-requester.js';

export interface EmbedRequesterOptions {
  readonly redisUrl: string;
  /** Queue namespace (tests); must match the workers'. */
  readonly namespace?: string;
  readonly timeoutMs: number;
  /** Who enqueues and waits; a JobRequester on redisUrl otherwise (tests). */
  readonly jobs?: Pick<JobRequester<EmbedJobData, EmbedJobResult>, 'request' | 'close'>;
}

type InstanceJob = Extract<EmbedJobData, { kind: 'instance' }>;

/** A job's data names the instance (all three UIDs) and model version asked for. */
function sameInstance(stored: EmbedJobData, d: InstanceJob): boolean {
  return stored.kind === 'instance' && sameInstanceUids(stored, d) && stored.modelVersion === d.modelVersion;
}

export class EmbedRequester {
  private readonly jobs: Pick<JobRequester<EmbedJobData, EmbedJobResult>, 'request' | 'close'>;

  constructor(private readonly opts: EmbedRequesterOptions) {
    this.jobs = opts.jobs ?? new JobRequester(opts.redisUrl, queueName('embed', opts.namespace));
  }

  /**
   * Instance jobs get a stable id (one job per instance — study, series and SOP Instance
   * UID — and model version while it lives: 100 users asking about one unindexed image
   * make one job), joined only when its data names that instance (addShared); upload jobs
   * are anonymous.
   */
  async embed(data: EmbedJobData, timeoutMs = this.opts.timeoutMs): Promise<EmbedJobResult> {
    const result = await this.jobs.request({
      what: 'embedding',
      timeoutMs,
      removeAfter: data.kind === 'upload',
      add: async (queue) => {
        if (data.kind === 'upload') return queue.add('upload', data, UPLOAD_JOB_OPTIONS);
        const jobId = instanceQueryJobId(data);
        return addShared(queue, 'instance', data, { ...EMBED_JOB_OPTIONS, jobId }, (stored) => sameInstance(stored, data));
      },
    });
    if (!result || typeof result !== 'object' || !('status' in result)) {
      throw new HttpProblem('EMBED_UNAVAILABLE', 'the embedding job failed: worker returned no result', { retryAfter: 1 });
    }
    return result;
  }

  close(): Promise<void> {
    return this.jobs.close();
  }
}
