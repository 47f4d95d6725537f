/** `cbmir reindex`: when a version must not be made live (workers/reindex-command.ts swapBlockers, reindexBlockers). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { reindexBlockers, swapBlockers } from '../../workers/reindex-command.js';

test('reindex --swap-only: a complete version swaps; an empty, smaller or unfinished one names each reason', () => {
  assert.deepEqual(swapBlockers({ newCount: 120, liveCount: 118, pending: 0, retryable: 0 }), []);
  assert.deepEqual(swapBlockers({ newCount: 5, liveCount: 0, pending: 0, retryable: 0 }), [], 'nothing live yet');
  assert.deepEqual(swapBlockers({ newCount: 0, liveCount: 0, pending: 0, retryable: 0 }), ['it holds 0 documents']);
  assert.deepEqual(swapBlockers({ newCount: 90, liveCount: 120, pending: 3, retryable: 2 }), [
    'it holds 90 documents, fewer than the 120 of the live version',
    '3 jobs are still queued or running for it',
    '2 of its jobs failed and can be retried',
  ]);
});

test('reindex (full run): an empty or smaller crawl never replaces a live version; a first index of an empty PACS may swap', () => {
  const ok = { crawled: true, retryable: 0, indexed: 6, instances: 6, liveCount: 6 };
  assert.deepEqual(reindexBlockers(ok), []);
  assert.deepEqual(reindexBlockers({ ...ok, indexed: 0, instances: 0, liveCount: 0 }), [], 'nothing live, nothing to index');
  // another PACS URL, or a login that reads no study: complete by itself, but 0 documents
  assert.deepEqual(reindexBlockers({ ...ok, indexed: 0, instances: 0 }), [
    'it holds 0 documents (0 instances crawled) while the live version holds 6',
  ]);
  assert.match(reindexBlockers({ ...ok, indexed: 4 }).join(), /holds 4 documents, fewer than the 6 of the live version.*--force/);
  assert.deepEqual(reindexBlockers({ ...ok, indexed: 0, instances: 3, liveCount: 0 }), ['none of the 3 instances crawled was indexed']);
  assert.deepEqual(reindexBlockers({ ...ok, crawled: false, retryable: 2 }), [
    'the PACS was not crawled completely',
    '2 of its jobs failed and can be retried',
  ]);
});
