/**
 * workers/load-command.ts: what `cbmir load` prints while and after it runs (progress
 * without a terminal, the failures list), and how it stops on SIGTERM.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { emptySelectionMessage, loadProgress, printSummary } from '../../workers/load-command.js';
import { outDirProblem, runLoad, type LoadSummary } from '../../workers/load.js';
import { figshareSampleDir, ixiSampleDir, repoRoot } from '../helpers/fixtures.js';
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

/** `cbmir load …` through bin/cbmir.js: exit code and output. */
function cbmirLoad(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin', 'cbmir.js'), 'load', ...args], { cwd: repoRoot });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

/** A DICOMweb target that answers every request with `status`, counting them. */
async function answering(status: number): Promise<{ server: Server; url: string; requests: () => number }> {
  let n = 0;
  const server = createServer((req, res) => {
    n++;
    req.resume();
    req.on('end', () => res.writeHead(status).end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/dicom-web`, requests: () => n };
}

describe('cbmir load against a target that refuses everything or is down', () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'cbmir-load-cmd-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  for (const status of [404, 401]) {
    it(`stops after the first batch answered ${status}: one request, not one per batch`, { timeout: 60_000 }, async () => {
      const t = await answering(status);
      try {
        const s = await runLoad({
          dir: figshareSampleDir,
          mode: 'send',
          url: t.url,
          batchSize: 1,
          concurrency: 4,
          retries: 0,
          studyDate: '20250101',
        });
        assert.equal(t.requests(), 1);
        assert.deepEqual([s.selected, s.sent, s.stored, s.failed], [36, 1, 0, 1]);
        assert.match(
          s.stopped ?? '',
          new RegExp(`^HTTP ${status} from http://127\\.0\\.0\\.1:\\d+/dicom-web/studies.*: every batch would get that answer`),
        );
      } finally {
        t.server.close();
      }
    });
  }

  it('stops after 3 batches in a row got no answer (connection refused)', { timeout: 60_000 }, async () => {
    const t = await answering(200);
    const url = t.url;
    await new Promise((r) => t.server.close(r)); // nothing listens there any more
    const s = await runLoad({ dir: figshareSampleDir, mode: 'send', url, batchSize: 1, concurrency: 1, retries: 0, studyDate: '20250101' });
    assert.deepEqual([s.sent, s.failed], [3, 3]);
    assert.match(
      s.stopped ?? '',
      /^3 batches in a row got no answer \(network error: ECONNREFUSED.*\): the target looks down or unreachable/,
    );
  });

  it('the command says why it stopped, and exits 1', { timeout: 60_000 }, async () => {
    const t = await answering(404);
    try {
      const r = await cbmirLoad(figshareSampleDir, '--url', t.url, '--batch-size', '4', '--no-progress');
      assert.equal(r.code, 1, r.stderr);
      assert.equal(t.requests(), 1);
      assert.match(r.stderr, /cbmir load: stopped: HTTP 404 from .*: every batch would get that answer, so no more were sent/);
      assert.match(r.stdout, /stopped with 32 images not sent: HTTP 404/);
    } finally {
      t.server.close();
    }
  });

  it('a labels.csv with a header and no rows exits 1; an impossible --study-date exits 2', { timeout: 60_000 }, async () => {
    const dir = path.join(tmp, 'header-only');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'labels.csv'), 'file,label,class_name\n');
    const [empty, badDate] = await Promise.all([
      cbmirLoad(dir, '--dry-run'),
      cbmirLoad(ixiSampleDir, '--dry-run', '--study-date', '20251399'),
    ]);
    assert.equal(empty.code, 1, empty.stderr);
    assert.match(empty.stderr, /cbmir load: labels\.csv lists no images \(a header and no rows\): nothing to load/);
    assert.equal(badDate.code, 2, badDate.stderr);
    assert.match(badDate.stderr, /--study-date must be a date YYYYMMDD, got 20251399/);
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

describe('cbmir load --out', () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'cbmir-load-out-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('that cannot be written is refused before anything is converted (exit 2, naming --out)', { timeout: 60_000 }, async () => {
    const file = path.join(tmp, 'a-file');
    writeFileSync(file, 'not a folder');
    const r = await cbmirLoad(figshareSampleDir, '--out', file, '--json');
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`^cbmir load: --out ${file}: ${file} is not a folder \\(a file is in the way\\)`));
    assert.equal(r.stdout, '');
    const nested = await cbmirLoad(figshareSampleDir, '--out', path.join(file, 'sub'));
    assert.equal(nested.code, 2, nested.stderr);
    assert.match(nested.stderr, /--out .*a-file\/sub: .* is not a folder/);
  });

  it('is created when missing', async () => {
    const dir = path.join(tmp, 'new', 'deeper');
    assert.equal(outDirProblem(dir), undefined);
    assert.deepEqual(readdirSync(dir), [], 'the probe file is gone');
  });

  it('stops at the first image it cannot write instead of failing every one', { timeout: 60_000 }, async () => {
    const outDir = path.join(tmp, 'blocked-run');
    mkdirSync(outDir);
    writeFileSync(path.join(outDir, 'blocked'), ''); // where the dataset's folder would go
    const one = await runLoad({
      dir: figshareSampleDir,
      datasetName: 'blocked',
      mode: 'write',
      outDir,
      concurrency: 1,
      studyDate: '20250101',
    });
    assert.deepEqual([one.selected, one.stored, one.failed], [36, 0, 1]);
    assert.match(one.failures[0]!.reason, /^cannot write: (ENOTDIR|EEXIST)/);
    assert.match(
      one.stopped ?? '',
      /^writing .*blocked.*\.dcm failed \((ENOTDIR|EEXIST)\): every image would fail alike, so no more were written$/,
    );
    const four = await runLoad({
      dir: figshareSampleDir,
      datasetName: 'blocked',
      mode: 'write',
      outDir,
      concurrency: 4,
      studyDate: '20250101',
    });
    assert.ok(four.failed >= 1 && four.failed <= 4, `${four.failed} failed: at most the images in flight`);
  });
});

describe('cbmir load options', () => {
  it('refuses an empty list and values out of range (exit 2)', { timeout: 60_000 }, async () => {
    const runs = await Promise.all([
      cbmirLoad(figshareSampleDir, '--dry-run', '--patients', ''),
      cbmirLoad(figshareSampleDir, '--dry-run', '--classes', ' , '),
      cbmirLoad(figshareSampleDir, '--dry-run', '--batch-size', '100000'),
      cbmirLoad(figshareSampleDir, '--dry-run', '--concurrency', '1000'),
    ]);
    assert.deepEqual(
      runs.map((r) => r.code),
      [2, 2, 2, 2],
      runs.map((r) => r.stderr).join('\n'),
    );
    assert.match(runs[0]!.stderr, /--patients must name at least one value/);
    assert.match(runs[1]!.stderr, /--classes must name at least one value/);
    assert.match(runs[2]!.stderr, /--batch-size must be 1\.\.1000/);
    assert.match(runs[3]!.stderr, /--concurrency must be 1\.\.64/);
  });
});
