/** `cbmir reindex --swap-only`: when a version must not be made live (workers/reindex-command.ts swapBlockers). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { swapBlockers } from '../../workers/reindex-command.js';

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
