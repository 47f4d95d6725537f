/**
 * A stand-in for a BullMQ queue as the gateway's job requesters use it (core/queue/job-requester.ts
 * SharedQueue): jobs by id, with BullMQ's rule for a custom id already there (the add returns that
 * job and stores nothing), and a JobRequester that enqueues on it and answers at once.
 */
import type { Job } from 'bullmq';
import type { JobRequester, RequestOptions, SharedQueue } from '../../core/queue/job-requester.js';

export interface StandInQueue<D> {
  readonly queue: SharedQueue<D, unknown>;
  /** The jobs held, by id; a test may mark one failed, or put one there. */
  readonly jobs: Map<string, { data: D; failed: boolean }>;
  /** Every add, in order: the custom id asked for, and whether a job was stored. */
  readonly added: Array<{ name: string; jobId: string | undefined; created: boolean }>;
}

export function standInQueue<D>(): StandInQueue<D> {
  const jobs = new Map<string, { data: D; failed: boolean }>();
  const added: StandInQueue<D>['added'] = [];
  let anonymous = 0;
  const asJob = (id: string) => {
    const j = jobs.get(id)!;
    return { id, data: j.data, isFailed: async () => j.failed, remove: async () => void jobs.delete(id) } as unknown as Job<D, unknown>;
  };
  const queue: SharedQueue<D, unknown> = {
    getJob: async (id) => (jobs.has(id) ? asJob(id) : undefined),
    add: async (name, data, opts) => {
      const id = opts?.jobId ?? `${++anonymous}`;
      const created = !jobs.has(id);
      if (created) jobs.set(id, { data, failed: false });
      added.push({ name, jobId: opts?.jobId, created });
      return asJob(id);
    },
  };
  return { queue, jobs, added };
}

/** A JobRequester that adds each job to `queue` and answers `result`; the options of each request are kept in `asked`. */
export function answeringRequester<D, R>(queue: SharedQueue<D, unknown>, result: R) {
  const asked: Array<RequestOptions<D, R>> = [];
  const jobs = {
    request: async (o: RequestOptions<D, R>) => {
      asked.push(o);
      await o.add(queue as never);
      return result;
    },
    close: async () => undefined,
  } as unknown as Pick<JobRequester<D, R>, 'request' | 'close'>;
  return { jobs, asked };
}
