/**
 * deploy/systemd: the units and env files docs/deployment.md installs. The env examples must
 * pass the same start-up validation the services run (a renamed or mistyped setting fails
 * here, not at a hospital's first start), and the units must satisfy systemd's own checker.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CONFIG_ENV_KEYS, loadConfig } from '../../core/config.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dir = path.join(root, 'deploy/systemd');
/** Read by the processes but not through core/config (docs/operations.md lists them too). */
const OTHER_KEYS = new Set(['CBMIR_GPU', 'NODE_EXTRA_CA_CERTS']);

/** systemd's EnvironmentFile syntax as these files use it: KEY=value lines, # comments. */
function envFile(name: string): { env: Record<string, string>; commented: string[] } {
  const env: Record<string, string> = {};
  const commented: string[] = [];
  for (const line of readFileSync(path.join(dir, name), 'utf8').split('\n')) {
    const kv = /^(#?)([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (!kv) {
      assert.ok(line === '' || line.startsWith('#'), `${name}: not a KEY=value line: ${JSON.stringify(line)}`);
      continue;
    }
    if (kv[1]) commented.push(kv[2]!);
    else env[kv[2]!] = kv[3]!;
  }
  return { env, commented };
}

test('the env examples name only settings that exist, and pass start-up validation as the gateway and as workers', () => {
  const shared = envFile('cbmir.env.example');
  const worker = envFile('worker.env.example');
  for (const key of [...Object.keys(shared.env), ...shared.commented, ...Object.keys(worker.env), ...worker.commented]) {
    assert.ok(CONFIG_ENV_KEYS.includes(key) || OTHER_KEYS.has(key), `${key} is not a setting`);
  }
  const gateway = loadConfig(shared.env);
  assert.equal(gateway.pacs.user, undefined, 'the gateway gets no service login');
  assert.equal(gateway.host, '127.0.0.1');
  assert.ok(path.isAbsolute(gateway.dataDir), 'CBMIR_DATA_DIR is absolute: both services read the same one');
  const workers = loadConfig({ ...shared.env, ...worker.env }, { serves: false });
  assert.equal(workers.pacs.user, 'cbmir-indexer');
  assert.equal(workers.redisUrl, gateway.redisUrl);
  // The worker login would be refused on a gateway bound beyond loopback: it is the workers' only.
  assert.throws(() => loadConfig({ ...shared.env, ...worker.env, CBMIR_HOST: '0.0.0.0' }), /CBMIR_PACS_USER/);
});

test('the units start what the build produces, with the env files the docs install', () => {
  const tsconfig = JSON.parse(readFileSync(path.join(root, 'tsconfig.json'), 'utf8')) as { compilerOptions: { outDir: string } };
  for (const [unit, files] of [
    ['cbmir-gateway.service', ['/etc/cbmir/cbmir.env']],
    ['cbmir-worker@.service', ['/etc/cbmir/cbmir.env', '/etc/cbmir/worker.env']],
  ] as const) {
    const text = readFileSync(path.join(dir, unit), 'utf8');
    const exec = /^ExecStart=\/usr\/bin\/node (\S+)$/m.exec(text)?.[1];
    assert.ok(exec, `${unit}: ExecStart runs node on one script`);
    const [out, ...rest] = exec.split('/');
    assert.equal(out, tsconfig.compilerOptions.outDir, `${unit} runs the build output`);
    assert.ok(existsSync(path.join(root, ...rest).replace(/\.js$/, '.ts')), `${unit}: ${exec} is built from a source file`);
    assert.deepEqual(
      [...text.matchAll(/^EnvironmentFile=(.*)$/gm)].map((m) => m[1]),
      files,
    );
    assert.match(text, /^RestartPreventExitStatus=2$/m, 'a configuration error is not restarted forever');
  }
  const docs = readFileSync(path.join(root, 'docs/deployment.md'), 'utf8');
  for (const f of ['cbmir-gateway.service', 'cbmir-worker@.service', 'cbmir.env.example', 'worker.env.example']) {
    assert.ok(docs.includes(`deploy/systemd/${f}`), `docs/deployment.md installs ${f}`);
  }
});

const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
test(
  'systemd-analyze verify finds nothing to say about the units',
  { skip: analyze.status !== 0 && 'systemd-analyze is not installed' },
  () => {
    // A template is verified as an instance of it.
    const tmp = mkdtempSync(path.join(tmpdir(), 'cbmir-units-'));
    copyFileSync(path.join(dir, 'cbmir-gateway.service'), path.join(tmp, 'cbmir-gateway.service'));
    copyFileSync(path.join(dir, 'cbmir-worker@.service'), path.join(tmp, 'cbmir-worker@1.service'));
    for (const unit of ['cbmir-gateway.service', 'cbmir-worker@1.service']) {
      const r = spawnSync('systemd-analyze', ['verify', path.join(tmp, unit)], { encoding: 'utf8' });
      assert.equal(r.status, 0, `${unit}: ${r.stderr}`);
      // Unknown keys and unparsable values are only warnings to systemd, and would be ignored at start.
      assert.equal(r.stderr.trim(), '', `${unit}: ${r.stderr}`);
    }
  },
);
