/**
 * On-demand embedding jobs of archived instances (core/similar/embed-requester.ts) on a stand-in
 * queue: identical requests made together share one job, but one instance's job never answers a
 * request for another that shares its SOP Instance UID (another study and series), nor does a
 * job found under the id whose data names another instance.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { instanceQueryJobId, type EmbedJobData, type EmbedJobResult } from '../../core/jobs.js';
import { EmbedRequester } from '../../core/similar/embed-requester.js';
import { answeringRequester, standInQueue } from './stand-in-queue.js';

const EMBEDDED: EmbedJobResult = { status: 'embedded', vector: [1, 0, 0, 0], modelVersion: 'v1' };

const instance = (study: string, series: string, sop: string, over: Partial<EmbedJobData> = {}): EmbedJobData =>
  ({
    kind: 'instance',
    studyInstanceUid: study,
    seriesInstanceUid: series,
    sopInstanceUid: sop,
    modelVersion: 'v1',
    index: true,
    enqueuedAt: 1,
    ...over,
  }) as EmbedJobData;

function requester() {
  const q = standInQueue<EmbedJobData>();
  const { jobs } = answeringRequester<EmbedJobData, EmbedJobResult>(q.queue, EMBEDDED);
  // No Redis is asked: the port is closed, should anything try.
  return { ...q, embed: new EmbedRequester({ redisUrl: 'redis://127.0.0.1:1', timeoutMs: 1_000, jobs }) };
}

test('one SOP Instance UID in two studies: two jobs, neither answering the other’s request', async () => {
  const { embed, added } = requester();
  await Promise.all([embed.embed(instance('1.2.1', '1.2.1.1', '1.2.9')), embed.embed(instance('1.3.1', '1.3.1.1', '1.2.9'))]);
  assert.equal(added.length, 2);
  assert.notEqual(added[0]!.jobId, added[1]!.jobId);
  assert.deepEqual(
    added.map((a) => a.created),
    [true, true],
  );
  // Another series of the same study, the same SOP Instance UID: its own job too.
  await embed.embed(instance('1.2.1', '1.2.1.2', '1.2.9'));
  assert.equal(added.at(-1)!.created, true);
});

test('identical requests made together share one job, its id one BullMQ takes', async () => {
  const { embed, added } = requester();
  await Promise.all([
    embed.embed(instance('1.2.1', '1.2.1.1', '1.2.9', { enqueuedAt: 1 })),
    embed.embed(instance('1.2.1', '1.2.1.1', '1.2.9', { enqueuedAt: 2 })),
  ]);
  assert.deepEqual(
    added.map((a) => a.created),
    [true, false],
  );
  assert.match(added[0]!.jobId ?? '', /^q_[0-9a-f]{32}_v1$/, 'no ":", not an integer, no UID in it');
  assert.equal(
    added[0]!.jobId,
    instanceQueryJobId({ studyInstanceUid: '1.2.1', seriesInstanceUid: '1.2.1.1', sopInstanceUid: '1.2.9', modelVersion: 'v1' }),
  );
  // Another model version: its own job.
  await embed.embed(instance('1.2.1', '1.2.1.1', '1.2.9', { modelVersion: 'v2' }));
  assert.match(added.at(-1)!.jobId ?? '', /_v2$/);
  assert.equal(added.at(-1)!.created, true);
});

test('a job under the id whose data names another instance is not joined; a failed one is made again', async () => {
  const { embed, jobs, added } = requester();
  const mine = instance('1.2.1', '1.2.1.1', '1.2.9');
  const id = instanceQueryJobId(mine as Extract<EmbedJobData, { kind: 'instance' }>);
  jobs.set(id, { data: instance('1.3.1', '1.3.1.1', '1.2.9'), failed: false });
  await embed.embed(mine);
  assert.deepEqual(added.at(-1), { name: 'instance', jobId: undefined, created: true }, 'an anonymous job of its own');
  jobs.set(id, { data: mine, failed: true });
  await embed.embed(mine);
  assert.deepEqual(added.at(-1), { name: 'instance', jobId: id, created: true }, 'the failed job cleared, the instance asked again');
});

test('uploads are anonymous and removed once answered', async () => {
  const q = standInQueue<EmbedJobData>();
  const { jobs, asked } = answeringRequester<EmbedJobData, EmbedJobResult>(q.queue, EMBEDDED);
  const embed = new EmbedRequester({ redisUrl: 'redis://127.0.0.1:1', timeoutMs: 1_000, jobs });
  await embed.embed({ kind: 'upload', dicomBase64: 'AAAA', modelVersion: 'v1', enqueuedAt: 1 });
  assert.deepEqual(q.added, [{ name: 'upload', jobId: undefined, created: true }]);
  assert.equal(asked[0]!.removeAfter, true);
});
