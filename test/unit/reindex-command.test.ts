/**
 * `cbmir reindex` without Redis or a PACS: where its logs go, what `--swap-only` / `--drop-old`
 * say when the version is already live, `--drop <version>`, and the option combinations it refuses.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { EmbeddedIndex } from '../../core/index/embedded/embedded-index.js';
import { drain, dropVersion, reindexLogger } from '../../workers/reindex-command.js';
import { captureStderr } from '../helpers/stderr.js';
import { repoRoot } from '../helpers/fixtures.js';

// A 1 KB graph named …-0.0.1.onnx: model version 0.0.1, 256-d (test/fixtures/models/README.md).
const TINY = path.join(repoRoot, 'test/fixtures/models/tiny32-0.0.1.onnx');

const tmp = mkdtempSync(path.join(tmpdir(), 'cbmir-reindex-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** An embedded store holding 0.0.0 and 0.0.1, with 0.0.1 live (a reindex swapped without --drop-old). */
async function twoVersions(name: string): Promise<string> {
  const dataDir = path.join(tmp, name);
  const index = new EmbeddedIndex({ path: path.join(dataDir, 'cbmir-vectors.sqlite') });
  await index.ensure(256, '0.0.0');
  await index.ensure(256, '0.0.1');
  await index.swapAlias('0.0.1');
  await index.close();
  return dataDir;
}

async function versionsIn(dataDir: string): Promise<{ live: string | undefined; versions: string[] }> {
  const index = new EmbeddedIndex({ path: path.join(dataDir, 'cbmir-vectors.sqlite') });
  try {
    return { live: await index.liveVersion(), versions: await index.versions() };
  } finally {
    await index.close();
  }
}

/** `cbmir reindex …` on the embedded store in dataDir (or `extra`'s); Redis at a port nothing listens on. */
function reindex(dataDir: string, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return reindexWith({}, dataDir, ...args);
}

function reindexWith(
  extra: NodeJS.ProcessEnv,
  dataDir: string,
  ...args: string[]
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, CBMIR_DATA_DIR: dataDir, CBMIR_REDIS_URL: 'redis://127.0.0.1:1' };
  delete env.CBMIR_ES_URL;
  Object.assign(env, extra);
  delete env.CBMIR_MODEL;
  const child = spawn(process.execPath, ['--import', 'tsx', 'workers/cli.ts', 'reindex', ...args], { cwd: repoRoot, env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

describe('cbmir reindex', () => {
  it("logs (reconciler, local worker) on stderr: stdout is the outcome's alone", () => {
    const out: string[] = [];
    const err: string[] = [];
    const [stdoutWrite, stderrWrite] = [process.stdout.write, process.stderr.write];
    process.stdout.write = ((s: string) => (out.push(String(s)), true)) as typeof process.stdout.write;
    process.stderr.write = ((s: string) => (err.push(String(s)), true)) as typeof process.stderr.write;
    try {
      const log = reindexLogger('info');
      log.info('not shown: info is lowered to warn for a CLI run');
      log.warn('reconciler: study not checked');
    } finally {
      process.stdout.write = stdoutWrite;
      process.stderr.write = stderrWrite;
    }
    assert.deepEqual(out, []);
    assert.equal(err.length, 1);
    assert.match(err[0]!, /"msg":"reconciler: study not checked"/);
  });

  it('--drop deletes a stored version that is not live, and refuses the live one or one not stored', async () => {
    const index = new EmbeddedIndex({ path: path.join(await twoVersions('drop-fn'), 'cbmir-vectors.sqlite') });
    try {
      assert.deepEqual(await dropVersion(index, '0.0.1'), {
        ok: false,
        message: '0.0.1 is the live version: not dropped (make another version live first, with --swap-only)',
      });
      assert.deepEqual(await dropVersion(index, '0.0.9'), { ok: false, message: 'no version 0.0.9 is stored (stored: 0.0.0, 0.0.1)' });
      assert.deepEqual(await dropVersion(index, '0.0.0'), { ok: true, live: '0.0.1' });
      assert.deepEqual(await index.versions(), ['0.0.1']);
    } finally {
      await index.close();
    }
  });

  it(
    '--swap-only of the live version swaps nothing, and --drop-old then says it dropped nothing (exit 1)',
    { timeout: 60_000 },
    async () => {
      const dataDir = await twoVersions('already-live');
      const r = await reindex(dataDir, '--model', TINY, '--swap-only', '--drop-old', '--json');
      assert.equal(r.code, 1, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), { model: '0.0.1', previous: '0.0.1', swapped: false, dropped: null, alreadyLive: true });
      assert.match(
        r.stderr,
        /nothing dropped\. Delete an earlier version with `cbmir reindex --drop <version>` \(stored besides 0\.0\.1: 0\.0\.0\)/,
      );

      const plain = await reindex(dataDir, '--model', TINY, '--swap-only');
      assert.equal(plain.code, 0, plain.stderr);
      assert.equal(plain.stdout, 'cbmir reindex: 0.0.1 is already live; nothing swapped\n');
      assert.deepEqual(await versionsIn(dataDir), { live: '0.0.1', versions: ['0.0.0', '0.0.1'] });
    },
  );

  it('--drop <version> deletes the earlier version; the live one is refused (exit 2)', { timeout: 60_000 }, async () => {
    const dataDir = await twoVersions('drop-cli');
    const live = await reindex(dataDir, '--drop', '0.0.1');
    assert.equal(live.code, 2);
    assert.match(live.stderr, /0\.0\.1 is the live version: not dropped/);
    const r = await reindex(dataDir, '--drop', '0.0.0', '--json');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { dropped: '0.0.0', live: '0.0.1' });
    assert.deepEqual(await versionsIn(dataDir), { live: '0.0.1', versions: ['0.0.1'] });
  });

  it(
    'refuses options that would be ignored, and names --model when the file it names is missing (exit 2)',
    { timeout: 60_000 },
    async () => {
      const dataDir = path.join(tmp, 'usage');
      const [withModel, noWorker, missing, none, swapCrawl, matchForce] = await Promise.all([
        reindex(dataDir, '--drop', '0.0.0', '--model', TINY),
        reindex(dataDir, '--model', TINY, '--no-local-worker', '--concurrency', '4'),
        reindex(dataDir, '--model', '/nope/manifest.json'),
        reindex(dataDir),
        reindex(dataDir, '--model', TINY, '--swap-only', '--rate', '5', '--no-local-worker'),
        reindex(dataDir, '--model', TINY, '--match', 'ModalitiesInStudy=MR', '--force', '--drop-old'),
      ]);
      assert.deepEqual([withModel.code, noWorker.code, missing.code, none.code, swapCrawl.code, matchForce.code], [2, 2, 2, 2, 2, 2]);
      assert.match(swapCrawl.stderr, /cbmir reindex: --swap-only crawls nothing and runs no worker: not with --rate, --no-local-worker/);
      assert.match(
        matchForce.stderr,
        /cbmir reindex: --match indexes part of the PACS and never swaps, so --force and --drop-old would do nothing/,
      );
      assert.match(withModel.stderr, /--drop goes alone \(with --json at most\), not with --model/);
      assert.match(noWorker.stderr, /--concurrency sets the local worker, and --no-local-worker runs none/);
      assert.match(missing.stderr, /cbmir reindex: --model \/nope\/manifest\.json: no such file/);
      assert.doesNotMatch(missing.stderr, /CBMIR_MODEL/);
      assert.match(none.stderr, /required option '--model <manifest>' not specified/);
    },
  );

  it(
    'refuses (exit 2) a missing embedded index instead of creating one: --drop, --swap-only and a full run',
    { timeout: 60_000 },
    async () => {
      const dataDir = path.join(tmp, 'no-index');
      const runs = await Promise.all([
        reindex(dataDir, '--drop', '0.0.0'),
        reindex(dataDir, '--model', TINY, '--swap-only'),
        reindex(dataDir, '--model', TINY),
      ]);
      for (const r of runs) {
        assert.equal(r.code, 2, r.stderr);
        assert.ok(
          r.stderr.startsWith(
            `cbmir reindex: no embedded index at ${path.join(dataDir, 'cbmir-vectors.sqlite')} (CBMIR_DATA_DIR=${dataDir})`,
          ),
          r.stderr,
        );
      }
      assert.equal(existsSync(dataDir), false, 'nothing created');
    },
  );

  it('names CBMIR_ES_URL and its URL (no password) when Elasticsearch does not answer', { timeout: 60_000 }, async () => {
    const r = await reindexWith({ CBMIR_ES_URL: 'http://elastic:s3cret@127.0.0.1:1' }, path.join(tmp, 'es'), '--model', TINY);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /^cbmir reindex: Elasticsearch at http:\/\/\*\*\*:\*\*\*@127\.0\.0\.1:1\/ \(CBMIR_ES_URL\) does not answer: .*ECONNREFUSED/,
    );
    assert.ok(!r.stderr.includes('s3cret'));
  });

  it('names CBMIR_REDIS_URL and the refused connection, after the index is read', { timeout: 60_000 }, async () => {
    const dataDir = path.join(tmp, 'redis-down');
    const index = new EmbeddedIndex({ path: path.join(dataDir, 'cbmir-vectors.sqlite') });
    await index.ensure(256, '0.0.0'); // live: 0.0.0; the run is for 0.0.1
    await index.close();
    const r = await reindex(dataDir, '--model', TINY);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /^cbmir reindex: Redis at redis:\/\/127\.0\.0\.1:1 \(CBMIR_REDIS_URL\) is unreachable: connect ECONNREFUSED 127\.0\.0\.1:1\n$/,
    );
  });

  it('waits for the queue with a progress line when stderr is no terminal, and with --no-progress prints none', async () => {
    const written: string[][] = [];
    for (const progress of [true, false]) {
      let polls = 0;
      const queue = {
        name: 'cbmir-index-reindex-0.0.1',
        getJobCounts: async () => ({
          waiting: ++polls < 4 ? 1 : 0,
          active: 0,
          delayed: 0,
          prioritized: 0,
          'waiting-children': 0,
          failed: 0,
        }),
      };
      const err = captureStderr();
      try {
        await drain(queue, { count: async () => polls }, 3, { progress, json: false }, new AbortController().signal, {
          pollMs: 5,
          lineEveryMs: 0,
        });
      } finally {
        err.restore();
      }
      written.push(err.written);
    }
    assert.ok(
      written[0]!.length > 0 && written[0]!.every((l) => /^cbmir reindex: \d+\/3 indexed, 1 pending, 0 failed\n$/.test(l)),
      written[0]!.join(''),
    );
    assert.deepEqual(written[1], [], '--no-progress');
  });
});
