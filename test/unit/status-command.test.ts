/**
 * `cbmir status` and `cbmir failed` without Redis: how a queue that Redis does not hold at all
 * (a mistyped --namespace) is told apart from an empty one.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Queue } from 'bullmq';
import { queueExists } from '../../workers/command-config.js';
import { statusText, type Status } from '../../workers/status-command.js';

describe('a queue Redis holds no key of', () => {
  it('is found by its keys (jobs, ids, events, meta), not by its counts', async () => {
    const queue = new Queue('cbmir-index-reindex-0.0.9', { connection: { lazyConnect: true }, skipMetasUpdate: true });
    try {
      let asked: string[] = [];
      const conn = (n: number) => ({ exists: async (...keys: string[]) => ((asked = keys), n) });
      assert.equal(await queueExists(queue, conn(0)), false);
      for (const k of ['meta', 'id', 'events', 'wait', 'active', 'completed', 'failed', 'delayed', 'stalled-check']) {
        assert.ok(asked.includes(`bull:cbmir-index-reindex-0.0.9:${k}`), k);
      }
      assert.ok(!asked.includes('bull:cbmir-index-reindex-0.0.9:'), 'no bare prefix');
      assert.equal(await queueExists(queue, conn(1)), true);
    } finally {
      await queue.close();
    }
  });

  it('is reported as such, not as an empty healthy queue', () => {
    const counts = { waiting: 0, prioritized: 0, active: 0, delayed: 0, failed: 0, completed: 0 };
    const s: Status = {
      redis: 'redis://127.0.0.1:6379',
      queues: [
        { queue: 'cbmir-index-reindx-1.0.0', counts, paused: false, workers: 0, exists: false },
        { queue: 'cbmir-embed', counts, paused: false, workers: 1 },
      ],
      index: { backend: 'embedded', liveVersion: '1.0.0', documents: 3, versions: ['1.0.0'] },
      ok: true,
    };
    const lines = statusText(s, 'reindx-1.0.0').split('\n');
    assert.equal(lines[0], 'cbmir-index-reindx-1.0.0: no queue cbmir-index-reindx-1.0.0 in Redis; check --namespace');
    assert.equal(lines[1], 'cbmir-embed: 0 waiting, 0 active, 0 delayed, 0 failed; 1 worker connection');
  });
});
