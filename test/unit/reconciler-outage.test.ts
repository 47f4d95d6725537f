/**
 * The reconciler (workers/reconciler.ts) against a scripted PACS and index: a PACS that goes away
 * mid-pass stops the pass after a few studies instead of failing every remaining study on its
 * own timeout; and a study listed over several pages without the PACS's count of it is not
 * pruned (a deletion while paging can shift a live instance out of the listing).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PacsHttpError, type PacsClient } from '../../core/pacs/client.js';
import type { StoredInstance } from '../../core/pacs/stow-response.js';
import type { IndexEnqueuer } from '../../core/queue/index-enqueuer.js';
import { Reconciler, type ReconcileDeps } from '../../workers/reconciler.js';

const studyUid = (i: number) => `2.25.88.${i}`;
const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8042'), { code: 'ECONNREFUSED' });

function deps(qido: (path: string, params: Record<string, unknown>) => Promise<unknown[]>, index: Partial<ReconcileDeps['index']> = {}) {
  const queued: StoredInstance[] = [];
  const deleted: string[] = [];
  const d: ReconcileDeps = {
    pacs: { qido } as unknown as PacsClient,
    index: {
      has: async () => new Set(),
      listStudy: async () => [],
      studyUids: async () => [],
      deleteMany: async (ids: readonly string[]) => (deleted.push(...ids), ids.length),
      ...index,
    },
    enqueuer: {
      queue: { name: 'q', getJobState: async () => 'unknown' },
      modelVersion: 'v',
      enqueue: async (list: readonly StoredInstance[]) => (queued.push(...list), { enqueued: list.length, failed: 0 }),
    } as unknown as IndexEnqueuer,
  };
  return { d, queued, deleted };
}

const studyList = (n: number) => (path: string, params: Record<string, unknown>) =>
  path === '/studies' && !params.offset
    ? Array.from({ length: n }, (_, i) => ({ '0020000D': { vr: 'UI', Value: [studyUid(i)] } }))
    : undefined;

test('a PACS unreachable for five studies in a row stops the pass; the studies after them are not asked', async () => {
  let asked = 0;
  const list = studyList(40);
  const { d } = deps(async (path, params) => {
    const studies = list(path, params);
    if (studies) return studies;
    if (path === '/studies') return [];
    asked++;
    throw refused();
  });
  const r = await new Reconciler(d).run({ source: 'reconciler', maxRequestsPerSecond: 1000, prune: false });
  assert.equal(asked, 5);
  assert.equal(r.studyErrors.length, 5);
  assert.match(r.stopped ?? '', /^PACS unreachable: 5 studies in a row failed \(last: connect ECONNREFUSED/);
  assert.equal(r.complete, false);
});

test('failures that are the study’s own (a 400), or outages between studies that list, do not stop the pass', async () => {
  const list = studyList(12);
  let n = 0;
  const { d, queued } = deps(async (path, params) => {
    const studies = list(path, params);
    if (studies) return studies;
    if (path === '/studies' || params.offset) return [];
    const study = /^\/studies\/([0-9.]+)\/instances$/.exec(path)![1]!;
    const i = Number(study.split('.').at(-1));
    n++;
    if (i < 6) throw new PacsHttpError(400, path); // six in a row, not the PACS being down
    if (i % 2 === 0) throw refused(); // every other one down: never five in a row
    return [{ '0020000E': { vr: 'UI', Value: [`${study}.1`] }, '00080018': { vr: 'UI', Value: [`${study}.1.1`] } }];
  });
  const r = await new Reconciler(d).run({ source: 'reconciler', maxRequestsPerSecond: 1000, prune: false });
  assert.equal(r.stopped, undefined);
  assert.equal(n, 12, 'every study asked');
  assert.equal(r.studyErrors.length, 9);
  assert.deepEqual(
    queued.map((q) => q.studyInstanceUid),
    [studyUid(7), studyUid(9), studyUid(11)],
  );
});

test('a study listed over several pages without the PACS’s count is not pruned; listed in one page, it is', async () => {
  const study = studyUid(1);
  const instances = [1, 2].map((k) => ({
    '0020000E': { vr: 'UI', Value: [`${study}.1`] },
    '00080018': { vr: 'UI', Value: [`${study}.1.${k}`] },
  }));
  // Indexed: the two listed instances and a third the listing does not show (deleted, or shifted out by paging).
  const listStudy = async () =>
    [1, 2, 3].map((k) => ({ sopInstanceUid: `${study}.1.${k}`, seriesInstanceUid: `${study}.1`, indexedAt: '2020-01-01T00:00:00Z' }));
  const qido = (pageSize: number) => async (_path: string, params: Record<string, unknown>) =>
    instances.slice(Number(params.offset ?? 0), Number(params.offset ?? 0) + pageSize);
  const paged = deps(qido(1), { listStudy } as Partial<ReconcileDeps['index']>);
  const r1 = await new Reconciler(paged.d).run({
    source: 'reconciler',
    studyUids: [study],
    instancePageSize: 1,
    maxRequestsPerSecond: 1000,
  });
  assert.equal(r1.instances, 2);
  assert.deepEqual(paged.deleted, [], 'two pages, no count: nothing pruned');
  const whole = deps(qido(500), { listStudy } as Partial<ReconcileDeps['index']>);
  await new Reconciler(whole.d).run({ source: 'reconciler', studyUids: [study], instancePageSize: 500, maxRequestsPerSecond: 1000 });
  assert.deepEqual(whole.deleted, [`${study}.1.3`], 'one page: the unlisted document is pruned');
});

test('a job WADO answered 404 for is queued again, an hour after it failed, when the PACS lists its instance; other refusals stay failed', async () => {
  const study = studyUid(5);
  const sops = [1, 2, 3].map((k) => `${study}.1.${k}`);
  const hour = 3_600_000;
  const failed: Record<string, { failedReason: string; finishedOn: number }> = {
    [sops[0]!]: {
      failedReason: `fetch (WADO-RS): PACS answered 404 for /studies/${study}/series/${study}.1/instances/${sops[0]}`,
      finishedOn: Date.now() - hour - 60_000,
    },
    [sops[1]!]: {
      failedReason: `fetch (WADO-RS): PACS answered 404 for /studies/${study}/series/${study}.1/instances/${sops[1]}`,
      finishedOn: Date.now() - 60_000,
    },
    [sops[2]!]: { failedReason: 'decode: NOT_AN_IMAGE: not an image: Comprehensive SR', finishedOn: Date.now() - 2 * hour },
  };
  const sopOf = (id: string) => id.split('_')[0]!; // indexJobId: `${sop}_${model}`
  const removed: string[] = [];
  const { d, queued } = deps(async (_path, params) =>
    params.offset ? [] : sops.map((sop) => ({ '0020000E': { vr: 'UI', Value: [`${study}.1`] }, '00080018': { vr: 'UI', Value: [sop] } })),
  );
  Object.assign(d.enqueuer.queue, {
    getJobState: async () => 'failed',
    getJob: async (id: string) => failed[sopOf(id)],
    remove: async (id: string) => (removed.push(sopOf(id)), 1),
  });
  const r = await new Reconciler(d).run({ source: 'reconciler', studyUids: [study], maxRequestsPerSecond: 1000, prune: false });
  assert.deepEqual(removed, [sops[0]]);
  assert.deepEqual(
    queued.map((q) => q.sopInstanceUid),
    [sops[0]],
  );
  assert.equal(r.requeued, 1);
  assert.equal(r.previouslyFailed, 2, 'the 404 of a minute ago, and the refusal');
});
