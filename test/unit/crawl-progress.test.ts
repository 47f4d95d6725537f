/** workers/backfill-command.ts reconcileProgress: a crawl without a terminal still reports, throttled. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { reconcileProgress } from '../../workers/backfill-command.js';
import type { ReconcileProgress } from '../../workers/reconciler.js';

const at = (studiesDone: number): ReconcileProgress => ({
  studiesDone,
  studiesTotal: 100,
  instancesSeen: studiesDone * 4,
  instancesTotal: 400,
  missing: 3,
  enqueued: 2,
});

test('crawl progress: without a terminal, a line at most every interval; none with --no-progress', async () => {
  const written: string[] = [];
  const orig = process.stderr.write.bind(process.stderr);
  const isTTY = process.stderr.isTTY;
  process.stderr.isTTY = false;
  process.stderr.write = ((s: string) => (written.push(String(s)), true)) as typeof process.stderr.write;
  try {
    const p = reconcileProgress({ bar: true, lines: true, prefix: 'cbmir reindex', everyMs: 50 });
    assert.ok(p, 'something reports when stderr is not a terminal');
    p.update(at(1)); // within the first interval: nothing yet
    await new Promise((r) => setTimeout(r, 60));
    p.update(at(10));
    p.update(at(11)); // throttled
    p.stop();
    assert.deepEqual(written, ['cbmir reindex: 10/100 studies, 40/400 instances, 3 missing, 2 enqueued\n']);
    assert.equal(reconcileProgress({ bar: false, lines: false, prefix: 'x' }), undefined);
  } finally {
    process.stderr.write = orig;
    process.stderr.isTTY = isTTY;
  }
});
