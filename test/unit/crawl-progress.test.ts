/** Progress of long CLI runs without a terminal: progressLines' throttle, and backfill/reindex's line. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { reconcileProgress } from '../../workers/backfill-command.js';
import { progressLines } from '../../workers/progress-lines.js';
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
