/**
 * `cbmir worker` and its queue consumers (workers/index-worker.ts) when Redis does not answer:
 * the process refuses to start, naming CBMIR_REDIS_URL; the consumers log connection errors once
 * a minute, not once per reconnect attempt; they are not "ready" and close without waiting on Redis.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { EmbeddedIndex } from '../../core/index/embedded/embedded-index.js';
import type { Logger } from '../../core/log.js';
import { PacsClient } from '../../core/pacs/client.js';
import type { EmbeddingPipeline } from '../../workers/embedding-pipeline.js';
import { startWorkers, workerErrorLogger } from '../../workers/index-worker.js';
import { repoRoot } from '../helpers/fixtures.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'cbmir-worker-redis-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function warnings(): { log: Logger; lines: { obj: Record<string, unknown>; msg: string }[] } {
  const lines: { obj: Record<string, unknown>; msg: string }[] = [];
  const noop = () => undefined;
  const log = { warn: (obj: Record<string, unknown>, msg: string) => lines.push({ obj, msg }), info: noop, error: noop, debug: noop };
  return { log: log as unknown as Logger, lines };
}

const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });

describe('worker errors', () => {
  it('are logged once, then at most once a minute with how many were left out; Redis named without its password', () => {
    const { log, lines } = warnings();
    let now = 0;
    const logError = workerErrorLogger(log, 'redis://:s3cret@redis.example:6379', 60_000, () => now);
    logError('index', refused());
    for (let i = 0; i < 135; i++) {
      now += 400;
      logError(i % 2 ? 'index' : 'embed', refused());
    }
    assert.equal(lines.length, 1, 'one line in the first 54 s');
    assert.match(lines[0]!.msg, /^worker error: Redis at redis:\/\/:\*\*\*@redis\.example:6379 \(CBMIR_REDIS_URL\) does not answer/);
    now = 60_000;
    logError('index', refused());
    assert.equal(lines.length, 2);
    assert.match(lines[1]!.msg, /\(135 more since the last one\)$/);
    assert.equal(lines[1]!.obj.left, 135);
    assert.ok(!JSON.stringify(lines).includes('s3cret'));
    // Another kind of error is not hidden behind the Redis ones.
    logError('embed', new Error('Missing lock for job 1. moveToFinished'));
    assert.equal(lines.length, 3);
    assert.equal(lines[2]!.msg, 'worker error');
  });
});

describe('queue consumers with Redis down', () => {
  it('log the connection error once, are not ready, and close at once', { timeout: 30_000 }, async () => {
    const { log, lines } = warnings();
    const index = new EmbeddedIndex({ path: path.join(tmp, 'consumers.sqlite') });
    const pipeline = { modelVersion: '0.0.1', dims: 4, embedder: { manifest: {} } } as unknown as EmbeddingPipeline;
    const pacs = new PacsClient({ url: 'http://127.0.0.1:1/dicom-web' });
    const workers = await startWorkers({
      redisUrl: 'redis://127.0.0.1:1',
      pipeline,
      index,
      pacs,
      patientKeySecret: 'k'.repeat(20),
      log,
      concurrency: 2,
    });
    try {
      let ready = false;
      void workers.ready().then(
        () => (ready = true),
        () => undefined,
      );
      await new Promise((r) => setTimeout(r, 2_500)); // ioredis retries every 200 ms … 2 s meanwhile
      assert.equal(ready, false, 'not ready without Redis');
      assert.equal(workers.redisConnected(), false);
      assert.equal(workers.activeJobs(), 0);
      assert.equal(lines.length, 1, lines.map((l) => l.msg).join('\n'));
      assert.match(lines[0]!.msg, /Redis at redis:\/\/127\.0\.0\.1:1 \(CBMIR_REDIS_URL\) does not answer/);
      const t0 = Date.now();
      const closed = await Promise.race([workers.close().then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 5_000))]);
      assert.ok(closed, 'closed without waiting for Redis to come back');
      assert.ok(Date.now() - t0 < 5_000);
    } finally {
      await index.close();
      await pacs.close();
    }
  });
});

/** `cbmir worker` with this Redis and an embedded index in `dataDir` (under tmp), run to its exit: code and output. */
async function runWorker(redisUrl: string, dataDir: string): Promise<{ code: number | null; out: string }> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CBMIR_REDIS_URL: redisUrl,
    CBMIR_DATA_DIR: path.join(tmp, dataDir),
    CBMIR_LOG_LEVEL: 'info',
  };
  delete env.CBMIR_ES_URL;
  const child = spawn(process.execPath, ['--import', 'tsx', 'workers/cli.ts', 'worker'], { cwd: repoRoot, env });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  return { code, out };
}

describe('cbmir worker with Redis down', () => {
  it('refuses to start: one line naming CBMIR_REDIS_URL (no password), exit 1, never "worker ready"', { timeout: 60_000 }, async () => {
    const { code, out } = await runWorker('redis://:s3cret@127.0.0.1:1', 'worker-data');
    assert.equal(code, 1, out);
    assert.equal(
      out,
      'cbmir worker: Redis at redis://:***@127.0.0.1:1 (CBMIR_REDIS_URL) is unreachable: connect ECONNREFUSED 127.0.0.1:1; not starting\n',
    );
  });
  it('a login Redis refuses is a bad setting: exit 2, which the unit does not restart', { timeout: 60_000 }, async () => {
    // A Redis that refuses every login, as one does to a wrong CBMIR_REDIS_URL password.
    const redis = net.createServer((s) =>
      s.on('data', () => s.write('-WRONGPASS invalid username-password pair or user is disabled.\r\n')),
    );
    await new Promise<void>((r) => redis.listen(0, '127.0.0.1', r));
    try {
      const port = (redis.address() as net.AddressInfo).port;
      const { code, out } = await runWorker(`redis://:wrong@127.0.0.1:${port}`, 'worker-data-auth');
      assert.equal(code, 2, out);
      assert.match(out, /WRONGPASS.*; not starting\n$/);
      assert.ok(!out.includes('wrong@'), 'no password in the output');
    } finally {
      redis.close();
    }
  });
});
