/**
 * The model tests' Python requirements: exact pins for every requirement, and the
 * "already installed" check (scripts/py-requirements-met.py) that lets scripts/test.sh
 * skip pip only when the pinned versions are the installed ones.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, it } from 'node:test';
import { repoRoot } from '../helpers/fixtures.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'cbmir-py-req-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const python = (args: string[]) => spawnSync('python3', args, { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 });

/** `name==1.2` lines (comments dropped), by PEP 503 name. */
function pins(file: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of readFileSync(path.join(repoRoot, file), 'utf8').split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    const m = /^([A-Za-z0-9._-]+)==(\S+)$/.exec(line);
    assert.ok(m, `${file}: not an exact pin: ${line}`);
    out.set(m[1]!.toLowerCase().replace(/[-_.]+/g, '-'), m[2]!);
  }
  return out;
}

it('every model requirement has an exact pin in constraints.txt, inside its range', () => {
  const pinned = pins('models/train/constraints.txt');
  const reqs = readFileSync(path.join(repoRoot, 'models/train/requirements.txt'), 'utf8')
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean);
  assert.ok(reqs.length >= 10);
  const pairs = reqs.map((req) => {
    const name = /^[A-Za-z0-9._-]+/
      .exec(req)![0]
      .toLowerCase()
      .replace(/[-_.]+/g, '-');
    const version = pinned.get(name);
    assert.ok(version, `${req}: no pin in constraints.txt`);
    return [req, version];
  });
  // One interpreter for all of them: packaging's own reading of each range.
  const outside = python([
    '-c',
    'import sys\ntry:\n  from packaging.requirements import Requirement\nexcept ImportError:\n  from pip._vendor.packaging.requirements import Requirement\n' +
      'a = sys.argv[1:]\nprint("\\n".join(f"{r}: {v}" for r, v in zip(a[::2], a[1::2]) if not Requirement(r).specifier.contains(v)))',
    ...pairs.flat(),
  ]);
  assert.equal(outside.status, 0, outside.stderr);
  assert.equal(outside.stdout.trim(), '', 'pins outside their requirement');
});

it('the installed-check answers "no" when an installed version differs from its pin', () => {
  const pip = python(['-c', 'from importlib.metadata import version; print(version("pip"))']).stdout.trim();
  assert.match(pip, /^\d/);
  const req = path.join(tmp, 'requirements.txt');
  writeFileSync(req, 'pip>=1\n');
  let n = 0;
  const check = (constraints: string) => {
    const c = path.join(tmp, `constraints-${++n}.txt`);
    writeFileSync(c, constraints);
    return python(['scripts/py-requirements-met.py', '-c', c, '-r', req]).status;
  };
  assert.equal(check(`pip==${pip}\n`), 0);
  assert.equal(check('pip==0.0.1\n'), 1, 'another version installed than pinned: pip must run');
  assert.equal(python(['scripts/py-requirements-met.py', '-r', req]).status, 0, 'no constraints: the range alone');
  writeFileSync(req, 'no-such-package-cbmir>=1\n');
  assert.equal(python(['scripts/py-requirements-met.py', '-r', req]).status, 1);
});
