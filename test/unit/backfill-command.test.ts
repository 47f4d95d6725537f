/** `cbmir backfill` (and the parsers `load` and `reindex` share with it) without Redis or a PACS. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InvalidArgumentError } from 'commander';
import { EmbeddedIndex } from '../../core/index/embedded/embedded-index.js';
import { backfillConflict, interruptOnSignals, parseDate, parseRate } from '../../workers/backfill-command.js';
import { isCalendarDate } from '../../workers/load.js';
import { repoRoot } from '../helpers/fixtures.js';

const TINY = path.join(repoRoot, 'test/fixtures/models/tiny32-0.0.1.onnx');
const tmp = mkdtempSync(path.join(tmpdir(), 'cbmir-backfill-'));
/** A Redis that accepts connections and never answers. */
const hung = createServer(() => undefined);
before(() => new Promise<void>((r) => hung.listen(0, '127.0.0.1', r)));
after(() => {
  rmSync(tmp, { recursive: true, force: true });
  hung.close();
});

/** A data dir holding an (empty) embedded index, as a worker leaves it. */
async function withIndex(name: string): Promise<string> {
  const dataDir = path.join(tmp, name);
  await new EmbeddedIndex({ path: path.join(dataDir, 'cbmir-vectors.sqlite') }).close();
  return dataDir;
}

/** `cbmir backfill …` on the embedded store in dataDir with the 0.0.1 test model. */
function backfill(dataDir: string, redisUrl: string, ...args: string[]) {
  const env: NodeJS.ProcessEnv = { ...process.env, CBMIR_DATA_DIR: dataDir, CBMIR_MODEL: TINY, CBMIR_REDIS_URL: redisUrl };
  delete env.CBMIR_ES_URL;
  const child = spawn(process.execPath, ['--import', 'tsx', 'workers/cli.ts', 'backfill', ...args], { cwd: repoRoot, env });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<{ code: number | null; stderr: string }>((r) => child.on('exit', (code) => r({ code, stderr })));
  return Object.assign(child, { done });
}

describe('dates on the command line (--since, --study-date)', () => {
  it('are days of the calendar, not only eight digits', () => {
    for (const d of ['20250101', '20240229', '20000229', '19991231', '00010101']) assert.ok(isCalendarDate(d), d);
    for (const d of ['00000000', '20251399', '20250229', '19000229', '20250431', '20250100', '2025011', '2025-01-01']) {
      assert.ok(!isCalendarDate(d), d);
    }
    assert.equal(parseDate('20240229'), '20240229');
    assert.throws(
      () => parseDate('20251399'),
      (e: unknown) => e instanceof InvalidArgumentError && /--since must be a date YYYYMMDD/.test(e.message),
    );
  });
});

describe('cbmir backfill interrupted', () => {
  it('stops on SIGTERM as on Ctrl-C', () => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const abort = new AbortController();
      const stop = interruptOnSignals(abort);
      try {
        process.emit(signal);
        assert.ok(abort.signal.aborted, signal);
      } finally {
        stop();
      }
    }
    assert.equal(process.listenerCount('SIGTERM'), 0, 'no listener left behind');
  });

  it('by SIGTERM (systemd, docker stop) prints the --resume line and exits 1', { timeout: 60_000 }, async () => {
    const dataDir = await withIndex('sigterm');
    // A Redis that takes the connection and never answers: the command waits for it (5 s).
    const connected = new Promise<void>((resolve) => {
      hung.once('connection', () => resolve());
    });
    const child = backfill(dataDir, `redis://127.0.0.1:${(hung.address() as AddressInfo).port}`, '--no-progress');
    await connected;
    child.kill('SIGTERM');
    const r = await child.done;
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /cbmir backfill: interrupted after 0 studies; continue with --resume/);
  });
});

describe('cbmir backfill refuses before creating anything', () => {
  it('when the embedded index is not where CBMIR_DATA_DIR says (exit 2, the absolute path named)', { timeout: 60_000 }, async () => {
    const cwd = path.join(tmp, 'elsewhere');
    mkdirSync(cwd);
    // The default CBMIR_DATA_DIR (.cbmir-data) is relative: run from another folder, it names another store.
    const env: NodeJS.ProcessEnv = { ...process.env, CBMIR_MODEL: TINY, CBMIR_REDIS_URL: 'redis://127.0.0.1:1' };
    delete env.CBMIR_ES_URL;
    delete env.CBMIR_DATA_DIR;
    const child = spawn(process.execPath, [path.join(repoRoot, 'bin', 'cbmir.js'), 'backfill'], { cwd, env });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    assert.equal(code, 2, stderr);
    const file = path.join(cwd, '.cbmir-data', 'cbmir-vectors.sqlite');
    assert.ok(
      stderr.startsWith(`cbmir backfill: no embedded index at ${file} (CBMIR_DATA_DIR=.cbmir-data, taken from the current folder ${cwd})`),
      stderr,
    );
    assert.deepEqual(readdirSync(cwd), [], 'no index file, no checkpoint');
  });

  it(
    'when Redis refuses the connection: says so at once, naming CBMIR_REDIS_URL, and writes no checkpoint',
    { timeout: 60_000 },
    async () => {
      const dataDir = await withIndex('redis-down');
      const t0 = Date.now();
      const r = await backfill(dataDir, 'redis://127.0.0.1:1').done;
      assert.equal(r.code, 1, r.stderr);
      assert.equal(
        r.stderr,
        'cbmir backfill: Redis at redis://127.0.0.1:1 (CBMIR_REDIS_URL) is unreachable: connect ECONNREFUSED 127.0.0.1:1\n',
      );
      assert.ok(Date.now() - t0 < 20_000, `${Date.now() - t0} ms`);
      assert.deepEqual(readdirSync(dataDir), ['cbmir-vectors.sqlite']);
    },
  );
});

describe('cbmir backfill values and combinations it refuses', () => {
  it('--rate below 0.01 requests/s (a crawl that would never end)', () => {
    for (const v of ['1e-9', '0.001', '0', '-1', 'abc', '10001']) {
      assert.throws(
        () => parseRate(v),
        (e: unknown) =>
          e instanceof InvalidArgumentError && e.message === '--rate must be a number of PACS requests per second, 0.01..10000',
        v,
      );
    }
    assert.equal(parseRate('0.01'), 0.01);
    assert.equal(parseRate('10000'), 10_000);
  });

  it('--since with --match StudyDate (or its tag): the match would replace --since (exit 2)', { timeout: 60_000 }, async () => {
    assert.match(
      backfillConflict({ since: '20240101', match: { StudyDate: '2023' } }) ?? '',
      /^--since and --match StudyDate=… both set the Study Date/,
    );
    assert.ok(backfillConflict({ since: '20240101', match: { '00080020': '2023' } }));
    assert.equal(backfillConflict({ since: '20240101', match: { ModalitiesInStudy: 'CT' } }), undefined);
    assert.equal(backfillConflict({ match: { StudyDate: '20240101-' } }), undefined);
    const r = await backfill(path.join(tmp, 'conflict'), 'redis://127.0.0.1:1', '--since', '20240101', '--match', 'StudyDate=20230101-')
      .done;
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^cbmir backfill: --since and --match StudyDate=… both set the Study Date/);
  });
});
