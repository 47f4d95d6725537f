/**
 * `cbmir --help`, each command's --help and `cbmir --version`: what an operator reads before
 * running anything — the settings the commands read, each command's exit statuses, the
 * defaults and ranges of the options.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { CONFIG_ENV_KEYS } from '../../core/config.js';
import { repoRoot } from '../helpers/fixtures.js';

const run = promisify(execFile);
/** CBMIR_MODEL unset: --version names the shipped model. */
const env: NodeJS.ProcessEnv = { ...process.env };
delete env.CBMIR_MODEL;
const cbmir = async (...args: string[]): Promise<string> =>
  (await run(process.execPath, ['--import', 'tsx', 'workers/cli.ts', ...args], { cwd: repoRoot, env })).stdout;

const COMMANDS = ['load', 'worker', 'embed', 'backfill', 'reindex', 'failed', 'status'];

describe('cbmir --help', () => {
  it('names the settings the commands read (each one real) and where every setting is documented', { timeout: 60_000 }, async () => {
    const help = await cbmir('--help');
    const settings = help.slice(help.indexOf('Settings'));
    assert.ok(settings.length < help.length, help);
    const named = new Set(settings.match(/CBMIR_[A-Z_]+/g));
    for (const n of ['CBMIR_REDIS_URL', 'CBMIR_PACS_URL', 'CBMIR_ES_URL', 'CBMIR_MODEL', 'CBMIR_DATA_DIR', 'CBMIR_LOAD_AUTH'])
      assert.ok(named.has(n), n);
    const known = new Set([...CONFIG_ENV_KEYS, 'CBMIR_LOAD_URL', 'CBMIR_LOAD_AUTH', 'CBMIR_GPU']);
    assert.deepEqual(
      [...named].filter((n) => !known.has(n)),
      [],
    );
    assert.match(settings, /docs\/operations\.md/);
  });

  it("ends each command's help with its exit statuses", { timeout: 120_000 }, async () => {
    const helps = await Promise.all(COMMANDS.map((c) => cbmir(c, '--help')));
    helps.forEach((h, i) => assert.match(h, /\nExit status:\n {2}0 .*\n(.*\n)* {2}1 .*\n(.*\n)* {2}2 /, COMMANDS[i]));
    // Options wrapped to the width of the terminal: read as one line.
    const [, worker, , backfill, reindex] = helps.map((h) => h.replace(/\s+/g, ' '));
    assert.match(worker!, /--stalled-interval-ms <ms> how often .* 100\.\.3600000 \(default 30000\)/);
    assert.match(worker!, /--namespace <ns> consume cbmir-index-<ns> .*reindex-<version>/);
    assert.match(backfill!, /--namespace <ns> enqueue to cbmir-index-<ns>/);
    assert.match(reindex!, /--rate <n> .* 0\.01\.\.10000 \(default CBMIR_RECONCILE_RATE, 10\)/);
  });

  it('--version: the package and the model a command would run', { timeout: 60_000 }, async () => {
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    const manifest = JSON.parse(readFileSync(path.join(repoRoot, 'models', 'manifest.json'), 'utf8')) as { name: string; version: string };
    assert.equal(await cbmir('--version'), `cbmir-gateway ${pkg.version}\nmodel ${manifest.name} ${manifest.version}\n`);
  });
});

describe('the docs', () => {
  it('show no password on a command line (shell history, ps): a login goes in CBMIR_LOAD_AUTH', () => {
    const files = [
      path.join(repoRoot, 'README.md'),
      ...readdirSync(path.join(repoRoot, 'docs'))
        .filter((f) => f.endsWith('.md'))
        .map((f) => path.join(repoRoot, 'docs', f)),
    ];
    const shown = files.flatMap((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .filter((l) => /--auth[ =]+["']?[^\s"'<`]+:[^\s"'`]+/.test(l))
        .map((l) => `${path.relative(repoRoot, f)}: ${l}`),
    );
    assert.deepEqual(shown, []);
  });
});
