/**
 * workers/load-command.ts: what `cbmir load` prints while and after it runs (progress
 * without a terminal, the failures list), and how it stops on SIGTERM.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { emptySelectionMessage, loadProgress, printSummary } from '../../workers/load-command.js';
import type { LoadSummary } from '../../workers/load.js';
import { ixiSampleDir, repoRoot } from '../helpers/fixtures.js';
import { captureStderr } from '../helpers/stderr.js';

const summary = (over: Partial<LoadSummary> = {}): LoadSummary => ({
  dataset: 'ds',
  mode: 'dry-run',
  rows: 130,
  rejectedRows: 0,
  rejected: [],
  selected: 130,
  converted: 10,
  sent: 0,
  stored: 0,
  failed: 120,
  studies: 1,
  series: 1,
  byClass: {},
  failures: Array.from({ length: 100 }, (_, k) => ({ file: `m${k}.png`, reason: 'cannot read image: ENOENT' })),
  elapsedMs: 1000,
  imagesPerSecond: 130,
  ...over,
});

describe('cbmir load output', () => {
  it('prints the first 50 failures and says how many more there are', () => {
    const lines: string[] = [];
    printSummary(summary(), { write: (s: string) => (lines.push(s), true) } as unknown as NodeJS.WritableStream);
    const text = lines.join('');
    assert.match(text, /m49\.png/);
    assert.doesNotMatch(text, /m50\.png/);
    assert.match(text, /… 70 more failures \(--json lists the first 100\)/);
    lines.length = 0;
    printSummary(summary({ failed: 2, failures: summary().failures.slice(0, 2) }), {
      write: (s: string) => (lines.push(s), true),
    } as unknown as NodeJS.WritableStream);
    assert.doesNotMatch(lines.join(''), /more failures/);
  });

  it('without a terminal, its progress line (throttled by progressLines); none with --no-progress', () => {
    const err = captureStderr();
    try {
      const p = loadProgress({ bar: true, lines: true, mode: 'send', everyMs: 0 });
      assert.ok(p, 'something reports when stderr is not a terminal');
      p.update({ total: 100, done: 10, stored: 9, converted: 10, failed: 1 });
      p.stop();
      assert.deepEqual(err.written, ['cbmir load: 10/100 images, 9 stored, 1 failed\n']);
      assert.equal(loadProgress({ bar: false, lines: false, mode: 'send' }), undefined);
    } finally {
      err.restore();
    }
  });

  it('an empty selection is an error only when filters made it so', () => {
    const none = summary({ selected: 0, failed: 0, failures: [] });
    assert.equal(emptySelectionMessage(none, false), undefined);
    assert.equal(emptySelectionMessage({ ...none, rows: 0 }, true), undefined);
    assert.match(
      emptySelectionMessage({ ...none, unmatched: [{ filter: '--classes', values: ['Glioma'], known: ['glioma'] }] }, true)!,
      /--classes Glioma \(labels\.csv has: glioma\)/,
    );
  });
});

describe('cbmir load on SIGTERM', () => {
  it('cancels the STOW request in flight and prints the summary', { timeout: 60_000 }, async () => {
    // A PACS that takes the request and never answers.
    let requested!: () => void;
    const gotRequest = new Promise<void>((r) => (requested = r));
    const server = createServer(() => requested());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    try {
      const child = spawn(
        process.execPath,
        [
          path.join(repoRoot, 'bin', 'cbmir.js'),
          'load',
          ixiSampleDir,
          '--url',
          `http://127.0.0.1:${port}/dicom-web`,
          '--json',
          '--timeout-ms',
          '600000',
          '--retries',
          '5',
        ],
        { cwd: repoRoot },
      );
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
      await gotRequest;
      const t0 = Date.now();
      child.kill('SIGTERM');
      const code = await exited;
      assert.equal(code, 1, stderr);
      assert.ok(Date.now() - t0 < 10_000, 'stopped without waiting for the request timeout');
      assert.match(stderr, /cbmir load: interrupted/);
      const s = JSON.parse(stdout.trim().split('\n').pop()!) as LoadSummary;
      assert.deepEqual([s.selected, s.stored, s.failed], [6, 0, 6]);
      assert.equal(s.failures[0]!.reason, 'interrupted');
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
