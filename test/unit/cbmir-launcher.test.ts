/**
 * bin/cbmir.js picks what to run: the sources through tsx when tsx is installed, dist/
 * when it is newer than every source file or when there is no tsx. Run on a copy of the
 * launcher in a folder of its own, whose "CLI" only says which one it is.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, it } from 'node:test';
import { repoRoot } from '../helpers/fixtures.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'cbmir-launcher-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

let n = 0;
function project(opts: { tsx: boolean; dist: 'none' | 'older' | 'newer' }): string {
  const root = path.join(tmp, `p${++n}`);
  mkdirSync(path.join(root, 'bin'), { recursive: true });
  copyFileSync(path.join(repoRoot, 'bin', 'cbmir.js'), path.join(root, 'bin', 'cbmir.js'));
  writeFileSync(path.join(root, 'package.json'), '{ "type": "module" }\n');
  mkdirSync(path.join(root, 'workers'));
  mkdirSync(path.join(root, 'core'));
  writeFileSync(path.join(root, 'workers', 'cli.ts'), "const from: string = 'sources';\nconsole.log(from);\n");
  writeFileSync(path.join(root, 'core', 'config.ts'), 'export const x: number = 1;\n');
  if (opts.tsx) {
    mkdirSync(path.join(root, 'node_modules'));
    symlinkSync(path.join(repoRoot, 'node_modules', 'tsx'), path.join(root, 'node_modules', 'tsx'));
  }
  const sourcesAt = new Date('2026-01-02T00:00:00Z');
  utimesSync(path.join(root, 'workers', 'cli.ts'), sourcesAt, sourcesAt);
  utimesSync(path.join(root, 'core', 'config.ts'), sourcesAt, sourcesAt);
  if (opts.dist !== 'none') {
    const built = path.join(root, 'dist', 'workers', 'cli.js');
    mkdirSync(path.dirname(built), { recursive: true });
    writeFileSync(built, "console.log('dist');\n");
    const builtAt = new Date(opts.dist === 'newer' ? '2026-01-03T00:00:00Z' : '2026-01-01T00:00:00Z');
    utimesSync(built, builtAt, builtAt);
  }
  return root;
}

function cbmir(root: string) {
  return spawnSync(process.execPath, [path.join(root, 'bin', 'cbmir.js')], { encoding: 'utf8', timeout: 60_000 });
}

it('runs the sources through tsx when dist/ is older than one of them (a pull after a build)', () => {
  const r = cbmir(project({ tsx: true, dist: 'older' }));
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'sources');
});

it('runs dist/ when it is newer than every source file', () => {
  const r = cbmir(project({ tsx: true, dist: 'newer' }));
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'dist');
});

it('without tsx, runs dist/ even when older, saying so', () => {
  const r = cbmir(project({ tsx: false, dist: 'older' }));
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'dist');
  assert.match(r.stderr, /dist\/ is older than the sources, and tsx .* is not installed/);
});

it('with neither, says what each would need', () => {
  const r = cbmir(project({ tsx: false, dist: 'none' }));
  assert.equal(r.status, 1);
  assert.match(
    r.stderr,
    /the sources need tsx .*npm run build.*used when tsx is not installed, or when it is newer than every source \.ts/,
  );
});
