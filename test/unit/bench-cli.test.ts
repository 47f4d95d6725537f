/**
 * Every benchmark answers --help without running (bench:proxy used to ignore its arguments,
 * so `--help` ran it and rewrote docs/benchmarks.md) and refuses an unknown option with one
 * line and exit 2 (they used to die with parseArgs's stack trace).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const ROOT = path.resolve(import.meta.dirname, '../..');
const DOCS = path.join(ROOT, 'docs/benchmarks.md');
const BENCHES = {
  proxy: 'bench:proxy',
  ingest: 'bench:ingest',
  similar: 'bench:similar',
  'index-knn': 'bench:index-knn',
  'eval-live': 'eval:live',
};

function bench(...args: string[]) {
  // Through bench/index.ts, as `npm run bench -- <name> …` runs them; no service URL that a run could reach.
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('CBMIR_BENCH_') || k.startsWith('CBMIR_EVAL_') || k === 'CBMIR_ES_URL') delete env[k];
  return spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench/index.ts'), ...args], {
    cwd: ROOT,
    env,
    encoding: 'utf8',
    timeout: 60_000,
  });
}

const docsState = (): string => {
  try {
    return `${statSync(DOCS).mtimeMs} ${readFileSync(DOCS, 'utf8').length}`;
  } catch {
    return 'absent';
  }
};

for (const [name, prog] of Object.entries(BENCHES)) {
  test(`bench ${name} --help prints its usage, exits 0 and runs nothing; an unknown option is one line and exit 2`, () => {
    const before = docsState();
    const help = bench(name, '--help');
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /^usage: npm run /);
    assert.match(help.stdout, /--help, -h +this text; runs nothing/);
    assert.equal(help.stderr, '', 'no log line: nothing started');
    assert.equal(docsState(), before, 'docs/benchmarks.md untouched');

    const bad = bench(name, '--bogus');
    assert.equal(bad.status, 2, bad.stderr);
    assert.equal(bad.stderr, `${prog}: Unknown option '--bogus' (--help lists the options)\n`);
    assert.equal(bad.stdout, '');
  });
}
