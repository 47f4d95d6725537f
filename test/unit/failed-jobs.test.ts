/**
 * workers/failed-jobs.ts without Redis: how `cbmir failed` classifies a job for a model
 * version no worker ran, and how `--retry` goes through a failed set that changes meanwhile.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Job, Queue } from 'bullmq';
import type { IndexJobData } from '../../core/jobs.js';
import { classifyFailure, listAllFailed, retryFailed, retryFailedJob, type RetriableJob } from '../../workers/failed-jobs.js';

// As workers/index-worker.ts writes it.
const OTHER_MODEL =
  'model version 0.3.0: no worker of that version took the job (this worker runs 0.4.0); ' +
  'run one, then `cbmir failed --retry`, or let the reconciler index the instance with the live version';

const DAY = 24 * 3600_000;

interface FakeJob extends RetriableJob {
  id: string;
  data: IndexJobData;
  failedReason: string;
  attemptsMade: number;
  opts: { attempts: number };
  finishedOn: number;
  calls: string[];
}

function fakeJob(id: string, failedReason: string, opts: { gone?: string } = {}): FakeJob {
  const job: FakeJob = {
    id,
    data: {
      studyInstanceUid: '1.2',
      seriesInstanceUid: '1.2.3',
      sopInstanceUid: `1.2.3.${id}`,
      modelVersion: '0.3.0',
      source: 'stow',
      enqueuedAt: Date.now() - 2 * DAY,
    },
    failedReason,
    attemptsMade: 1,
    opts: { attempts: 12 },
    finishedOn: Date.now(),
    calls: [],
    async updateData(data) {
      job.calls.push('updateData');
      job.data = data;
    },
    async retry() {
      job.calls.push('retry');
      if (opts.gone) throw Object.assign(new Error(opts.gone), { code: -3 });
    },
  };
  return job;
}

/** getFailed(start, end) over pages fixed in advance, as a set that changes between calls reads. */
function fakeQueue(pages: FakeJob[][]): Pick<Queue<IndexJobData>, 'getFailed'> {
  let call = 0;
  return {
    getFailed: async () => (pages[call++] ?? []) as unknown as Job<IndexJobData>[],
  };
}

describe('a job for a model version no worker ran', () => {
  it('is its own step, and retryable: a plain --retry re-queues it', () => {
    assert.deepEqual(classifyFailure(OTHER_MODEL), { step: 'other-model', reason: OTHER_MODEL, retryable: true });
    assert.equal(classifyFailure('connect ECONNREFUSED 127.0.0.1:9200').step, 'transient');
  });

  it('is retried with a fresh enqueuedAt, set before the retry; other jobs keep theirs', async () => {
    const now = Date.now();
    const job = fakeJob('1', OTHER_MODEL);
    assert.equal(await retryFailedJob(job, classifyFailure(job.failedReason), now), 'retried');
    assert.deepEqual(job.calls, ['updateData', 'retry']);
    assert.equal(job.data.enqueuedAt, now);
    assert.equal(job.data.sopInstanceUid, '1.2.3.1', 'the rest of the data unchanged');

    const transient = fakeJob('2', 'index unreachable: ECONNREFUSED');
    const before = transient.data.enqueuedAt;
    assert.equal(await retryFailedJob(transient, classifyFailure(transient.failedReason), now), 'retried');
    assert.deepEqual(transient.calls, ['retry']);
    assert.equal(transient.data.enqueuedAt, before);
  });
});

describe('--retry over a failed set that changes meanwhile', () => {
  it('lists each job once when pages overlap, and goes on past a job that left the failed set', async () => {
    const [a, b, c, d, e] = ['a', 'b', 'c', 'd', 'e'].map((id) => fakeJob(id, 'index unreachable: ECONNREFUSED'));
    const gone = fakeJob('g', OTHER_MODEL, { gone: 'Job g is not in the failed state. reprocessJob' });
    const permanent = fakeJob('p', 'decode: NOT_AN_IMAGE: not an image: Basic Text SR');
    // A job failed between the reads: the second page starts with the last of the first.
    const pages = [
      [a!, b!, gone],
      [gone, c!, permanent],
      [d!, e!],
    ];
    const listed = await listAllFailed(fakeQueue(pages), 3);
    assert.deepEqual(
      listed.map((l) => l.job.id),
      ['a', 'b', 'g', 'c', 'p', 'd', 'e'],
    );

    const r = await retryFailed(fakeQueue(pages), { pageSize: 3 });
    assert.deepEqual(r, { retried: 5, gone: 1 });
    for (const j of [a, b, c, d, e]) assert.deepEqual(j!.calls, ['retry'], j!.id);
    assert.deepEqual(gone.calls, ['updateData', 'retry'], 'retried once, not once per page');
    assert.deepEqual(permanent.calls, [], 'permanent failures only with --all');
  });

  it('does not stop at a page that lost a job between the read of its ids and of the jobs', async () => {
    const [a, b, c] = ['a', 'b', 'c'].map((id) => fakeJob(id, 'x'));
    const pages = [[a!, undefined, b!], [c!]] as unknown as FakeJob[][];
    assert.deepEqual(
      (await listAllFailed(fakeQueue(pages), 3)).map((l) => l.job.id),
      ['a', 'b', 'c'],
    );
  });

  it('goes past a page left short by a job that vanished, as BullMQ drops it (2,500 failed, one cleared)', async () => {
    // BullMQ's getJobs reads the ids, then the jobs, and filters out the ones gone meanwhile:
    // the first page holds 999 jobs, not 1,000, and the list goes on.
    const ids = Array.from({ length: 2500 }, (_, i) => String(i));
    const jobs = new Map(ids.map((id) => [id, fakeJob(id, 'index unreachable: ECONNREFUSED')]));
    const queue: Pick<Queue<IndexJobData>, 'getFailed'> = {
      getFailed: async (start = 0, end = -1) =>
        ids
          .slice(start, end + 1)
          .filter((id) => id !== '5')
          .map((id) => jobs.get(id)!) as unknown as Job<IndexJobData>[],
    };
    assert.equal((await listAllFailed(queue)).length, 2499);
    assert.deepEqual(await retryFailed(queue), { retried: 2499, gone: 0 });
  });

  it('still stops on other errors (Redis gone)', async () => {
    const job = fakeJob('r', 'x');
    job.retry = async () => {
      throw new Error('Connection is closed.');
    };
    await assert.rejects(retryFailedJob(job, { step: 'transient' }), /Connection is closed/);
    const missing = fakeJob('m', OTHER_MODEL);
    missing.updateData = async () => {
      throw Object.assign(new Error('Missing key for job m. updateData'), { code: -1 });
    };
    assert.equal(await retryFailedJob(missing, { step: 'other-model' }), 'gone');
  });
});
