/** Progress of long CLI runs without a terminal: progressLines' throttle, and backfill/reindex's line. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PacsClient } from '../../core/pacs/client.js';
import type { IndexEnqueuer } from '../../core/queue/index-enqueuer.js';
import { reconcileProgress } from '../../workers/backfill-command.js';
import { progressLines } from '../../workers/progress-lines.js';
import { Reconciler, type ReconcileProgress } from '../../workers/reconciler.js';
import { captureStderr } from '../helpers/stderr.js';

test('progressLines: a line at most every interval, the first one interval after the start', async () => {
  const err = captureStderr();
  try {
    const p = progressLines((n: number) => `done ${n}`, 50);
    p.update(1); // within the first interval: nothing yet
    await new Promise((r) => setTimeout(r, 60));
    p.update(10);
    p.update(11); // throttled
    p.stop();
    assert.deepEqual(err.written, ['done 10\n']);
  } finally {
    err.restore();
  }
});

test('crawl progress: without a terminal, its line; none with --no-progress', () => {
  const err = captureStderr();
  try {
    const p = reconcileProgress({ bar: true, lines: true, prefix: 'cbmir reindex', everyMs: 0 });
    assert.ok(p, 'something reports when stderr is not a terminal');
    p.update({ studiesDone: 10, studiesTotal: 100, instancesSeen: 40, instancesTotal: 400, missing: 3, enqueued: 2 });
    p.stop();
    assert.deepEqual(err.written, ['cbmir reindex: 10/100 studies, 40/400 instances, 3 missing, 2 enqueued\n']);
    assert.equal(reconcileProgress({ bar: false, lines: false, prefix: 'x' }), undefined);
  } finally {
    err.restore();
  }
});

test('the study list is reported while it is paged, before the first study is checked', async () => {
  const page = (offset: number) =>
    offset >= 250
      ? []
      : Array.from({ length: Math.min(100, 250 - offset) }, (_, i) => ({
          '0020000D': { vr: 'UI', Value: [`2.25.77.${offset + i}`] },
          '00201208': { vr: 'IS', Value: [2] },
        }));
  const seen: ReconcileProgress[] = [];
  const reconciler = new Reconciler({
    pacs: {
      qido: async (path: string, params: { offset?: number }) => (path === '/studies' ? page(params.offset ?? 0) : []),
    } as unknown as PacsClient,
    index: { has: async () => new Set<string>(), listStudy: async () => [], studyUids: async () => [], deleteMany: async () => 0 },
    enqueuer: { queue: { name: 'q' }, modelVersion: 'v' } as unknown as IndexEnqueuer,
  });
  await reconciler.run({ source: 'backfill', maxRequestsPerSecond: 10_000, prune: false, onProgress: (p) => seen.push(p) });
  assert.deepEqual(
    seen.filter((p) => p.listing).map((p) => [p.studiesTotal, p.instancesTotal]),
    [
      [100, 200],
      [200, 400],
      [250, 500],
    ],
  );
  assert.ok(
    seen.slice(0, 3).every((p) => p.listing),
    'the listing comes first',
  );
  assert.ok(seen.slice(3).every((p) => !p.listing));

  const err = captureStderr();
  try {
    const p = reconcileProgress({ bar: true, lines: true, prefix: 'cbmir backfill', everyMs: 0 });
    p!.update(seen[1]!);
    p!.stop();
    assert.deepEqual(err.written, ['cbmir backfill: listing the PACS studies: 200 so far\n']);
  } finally {
    err.restore();
  }
});
