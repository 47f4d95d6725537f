import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

const ROOT = path.resolve(import.meta.dirname, '../..');

/** bench/index-knn.ts with these options, and neither Elasticsearch nor the embedded store: a bad option must stop it before any work. */
function run(...args: string[]) {
  const env = { ...process.env };
  delete env.CBMIR_ES_URL;
  delete env.CBMIR_TEST_ES_URL;
  return spawnSync(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'bench/index-knn.ts'), '--es', 'none', '--no-embedded', '--sizes', '50', '--queries', '2', ...args],
    {
      cwd: ROOT,
      env,
      encoding: 'utf8',
      timeout: 60_000,
    },
  );
}

test('bench:index-knn refuses bad numbers with exit 2, naming the option, before measuring anything', () => {
  for (const [args, want] of [
    [['--queries', 'abc'], /--queries must be an integer ≥ 1, got "abc"/],
    [['--k', '0'], /--k must be an integer in 1…10000, got "0"/],
    [['--sizes', '50,x'], /--sizes must be an integer ≥ 1, got "x"/],
    [['--k', '150'], /--k \(150\) must not exceed any --candidates value \(100\)/],
    [['--k', '60', '--candidates', '100'], /--k \(60\) must not exceed the smallest of --sizes \(50\)/],
  ] as const) {
    const r = run(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
    assert.match(r.stderr, want);
    assert.equal(r.stdout, '', 'no JSON: nothing was measured');
  }
});
