/** `cbmir backfill` (and the parsers `load` and `reindex` share with it) without Redis or a PACS. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { InvalidArgumentError } from 'commander';
import { interruptOnSignals, parseDate } from '../../workers/backfill-command.js';
import { isCalendarDate } from '../../workers/load.js';
import { repoRoot } from '../helpers/fixtures.js';

const TINY = path.join(repoRoot, 'test/fixtures/models/tiny32-0.0.1.onnx');
const tmp = mkdtempSync(path.join(tmpdir(), 'cbmir-backfill-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

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
    const dataDir = path.join(tmp, 'sigterm');
    const env: NodeJS.ProcessEnv = { ...process.env, CBMIR_DATA_DIR: dataDir, CBMIR_MODEL: TINY, CBMIR_REDIS_URL: 'redis://127.0.0.1:1' };
    delete env.CBMIR_ES_URL;
    const child = spawn(process.execPath, ['--import', 'tsx', 'workers/cli.ts', 'backfill', '--no-progress'], { cwd: repoRoot, env });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
      child.on('exit', (code, signal) => r({ code, signal })),
    );
    // The checkpoint is opened once the signal handlers are in place; Redis (nothing listens there)
    // then holds the command for 5 s.
    const checkpoint = path.join(dataDir, 'checkpoints', 'backfill-0.0.1.txt');
    const deadline = Date.now() + 45_000;
    while (!existsSync(checkpoint) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(existsSync(checkpoint), stderr);
    child.kill('SIGTERM');
    assert.deepEqual(await exited, { code: 1, signal: null }, stderr);
    assert.match(stderr, /cbmir backfill: interrupted after 0 studies; continue with --resume/);
  });
});
