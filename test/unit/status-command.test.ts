/**
 * `cbmir status` and `cbmir failed` without Redis: how a queue that Redis does not hold at all
 * (a mistyped --namespace) is told apart from an empty one, and a probe that answers in bounded
 * time when Redis and Elasticsearch take connections and never answer.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Queue } from 'bullmq';
import { queueExists } from '../../workers/command-config.js';
import { statusText, type Status } from '../../workers/status-command.js';
import { repoRoot } from '../helpers/fixtures.js';

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

describe('cbmir status as a probe', () => {
  /** Takes connections, never answers: a Redis or an Elasticsearch that hangs. */
  const hung = createServer(() => undefined);
  before(() => new Promise<void>((r) => hung.listen(0, '127.0.0.1', r)));
  after(() => hung.close());

  function status(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
    const port = (hung.address() as AddressInfo).port;
    const env = { ...process.env, CBMIR_REDIS_URL: `redis://127.0.0.1:${port}`, CBMIR_ES_URL: `http://127.0.0.1:${port}` };
    const t0 = Date.now();
    const child = spawn(process.execPath, ['--import', 'tsx', 'workers/cli.ts', 'status', ...args], { cwd: repoRoot, env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    return new Promise((r) => child.on('exit', (code) => r({ code, stdout, stderr, ms: Date.now() - t0 })));
  }

  it('reports a part that does not answer within --timeout-ms, and exits 1 in bounded time', { timeout: 25_000 }, async () => {
    const r = await status('--json', '--timeout-ms', '500');
    assert.equal(r.code, 1, r.stderr);
    const s = JSON.parse(r.stdout) as Status;
    assert.match(s.index.error ?? '', /^Elasticsearch at http:\/\/127\.0\.0\.1:\d+\/ \(CBMIR_ES_URL\) did not answer within 0\.5 s$/);
    assert.ok(
      s.queues.every((q) => q.error && /^Redis at redis:\/\/127\.0\.0\.1:\d+ \(CBMIR_REDIS_URL\)/.test(q.error)),
      r.stdout,
    );
    assert.ok(r.ms < 15_000, `${r.ms} ms`);
  });

  it('refuses a --timeout-ms out of range (exit 2)', { timeout: 25_000 }, async () => {
    const r = await status('--timeout-ms', '10');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--timeout-ms must be 100\.\.600000/);
  });
});
