/**
 * The local stack scripts (deploy/local/*.sh) on their own: each test sources them in a
 * bash of its own, with a private state dir, and drives one function. No service starts:
 * the processes stopped here are `sleep`s (named `java` or `Orthanc` where the scripts
 * check the program name), and the service starts a test needs are replaced by functions
 * that print what they were given.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../../core/config.js';
import { repoRoot } from '../helpers/fixtures.js';

const tmpRoot = mkdtempSync(path.join(tmpdir(), 'cbmir-stack-scripts-'));
const SLEEP = spawnSync('bash', ['-c', 'command -v sleep'], { encoding: 'utf8' }).stdout.trim();
/** Pids started here, killed after the tests whatever happened. */
const strays = new Set<number>();
after(() => {
  for (const pid of strays) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  rmSync(tmpRoot, { recursive: true, force: true });
});

let n = 0;
/** A fresh state dir, and a bin/ with `sleep` under the program names the scripts check. */
function stackDir(): { dir: string; bin: string } {
  const dir = path.join(tmpRoot, `stack-${++n}`);
  const bin = path.join(tmpRoot, `bin-${n}`);
  mkdirSync(dir, { recursive: true });
  mkdirSync(bin);
  for (const name of ['java', 'Orthanc']) symlinkSync(SLEEP, path.join(bin, name));
  return { dir, bin };
}

/** The environment without the caller's stack settings (npm test exports CBMIR_STACK_DIR). */
function env(dir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(CBMIR_|ORTHANC_|REDIS_|ES_)/.test(k)));
  return { ...clean, CBMIR_STACK_DIR: dir, CBMIR_CACHE_DIR: path.join(dir, 'cache'), ...extra };
}

function bash(script: string, dir: string, extra: Record<string, string> = {}): SpawnSyncReturns<string> {
  return spawnSync('bash', ['-c', `set -euo pipefail\n${script}`], {
    cwd: repoRoot,
    env: env(dir, extra),
    encoding: 'utf8',
    timeout: 60_000,
  });
}

/** Alive and not a zombie (where PID 1 does not reap orphans, killed ones stay zombies). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) if (cond()) return;
  assert.fail(`timed out waiting for ${what}`);
}

function readPid(file: string): number {
  const pid = Number(readFileSync(file, 'utf8').trim());
  strays.add(pid);
  return pid;
}

/** A `sleep` in a session of its own, as the scripts start services. */
function detachedSleep(bin = SLEEP): number {
  const child = spawn(bin, ['300'], { detached: true, stdio: 'ignore' });
  child.unref();
  strays.add(child.pid!);
  return child.pid!;
}

describe('npm start (deploy/local/run.sh)', () => {
  it('stops what it started even when the reader of its output is gone (`npm start | tee`, then Ctrl-C)', async () => {
    const { dir } = stackDir();
    const child = spawn(
      'bash',
      ['-c', 'set -euo pipefail; source deploy/local/run.sh; install_traps; start_process gateway sleep 300; while :; do sleep 0.1; done'],
      { cwd: repoRoot, env: env(dir), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const pidFile = path.join(dir, 'gateway.pid');
    await until('the gateway pid file', () => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '');
    const gateway = readPid(pidFile);
    assert.ok(alive(gateway));
    child.stdout.destroy(); // the `| tee` died with the Ctrl-C: every write now gets SIGPIPE/EPIPE
    child.kill('SIGINT');
    assert.equal(await exited, 130);
    await until('the gateway to be stopped', () => !alive(gateway));
    assert.match(readFileSync(path.join(dir, 'run.log'), 'utf8'), /stopping… \(our output is gone[\s\S]*gateway: stopping[\s\S]*stopped/);
    assert.equal(existsSync(pidFile), false);
  });

  it('stops only its own Orthanc instance, not others in the same state dir', () => {
    const { dir } = stackDir();
    const r = bash(
      'source deploy/local/run.sh; stack() { echo "ORTHANC_NAME=${ORTHANC_NAME:-} $*" >>"$CBMIR_STACK_DIR/calls"; }; ' +
        'started_services=(orthanc redis es); cleanup',
      dir,
    );
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(readFileSync(path.join(dir, 'calls'), 'utf8').trim().split('\n'), [
      'ORTHANC_NAME=orthanc stop es',
      'ORTHANC_NAME=orthanc stop redis',
      'ORTHANC_NAME=orthanc stop orthanc',
    ]);
  });

  it('stops the gateway and worker an earlier run left behind, and nothing else a stale pid file names', async () => {
    const { dir } = stackDir();
    // The earlier run: killed before its cleanup (no traps here), its processes still up.
    // Its output to a file: the processes' log pipes would hold spawnSync's stdout open.
    const first = bash(
      'exec >"$CBMIR_STACK_DIR/first.out" 2>&1; source deploy/local/run.sh; start_process gateway sleep 300; start_process worker sleep 301',
      dir,
    );
    assert.equal(first.status, 0, first.stderr);
    const gateway = readPid(path.join(dir, 'gateway.pid'));
    const worker = readPid(path.join(dir, 'worker.pid'));
    const unrelated = detachedSleep();
    writeFileSync(path.join(dir, 'ohif.pid'), `${unrelated}\n`); // a pid since reused by someone else
    assert.ok(alive(gateway) && alive(worker));

    const second = bash('source deploy/local/run.sh; claim_stack_dir', dir);
    assert.equal(second.status, 0, second.stderr);
    assert.match(second.stderr, /gateway: stopping \(pid \d+\)/);
    await until('the leftovers to be stopped', () => !alive(gateway) && !alive(worker));
    assert.ok(alive(unrelated), 'a process without the run tag is left alone');
    for (const f of ['gateway.pid', 'worker.pid', 'ohif.pid']) assert.equal(existsSync(path.join(dir, f)), false, f);
  });

  it('refuses a second run on the same state dir instead of stopping the first one’s processes', async () => {
    const { dir } = stackDir();
    const holder = spawn('bash', ['-c', 'source deploy/local/run.sh; claim_stack_dir; echo locked; sleep 30'], {
      cwd: repoRoot,
      env: env(dir),
      stdio: ['ignore', 'pipe', 'ignore'],
      detached: true,
    });
    strays.add(holder.pid!);
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
    const r = bash('source deploy/local/run.sh; claim_stack_dir', dir);
    process.kill(-holder.pid!, 'SIGKILL');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /another npm start \(deploy\/local\/run\.sh\) uses .*stack-\d+/);
  });

  it('takes over the services a killed run started, and only those', () => {
    const { dir } = stackDir();
    // The stack as files: up.<svc> while a service runs; every call logged.
    const fakeStack = `stack() { echo "$*" >>"$STACK_DIR/calls"; case "$1" in
      status) [[ -f "$STACK_DIR/up.$2" ]] ;; start) touch "$STACK_DIR/up.$2" ;; stop) rm -f "$STACK_DIR/up.$2" ;; esac; }`;
    writeFileSync(path.join(dir, 'up.es'), ''); // running before any npm start
    // A run that starts Orthanc and Redis, then is killed (no cleanup).
    const killed = bash(`source deploy/local/run.sh; ${fakeStack}; start_service orthanc; start_service redis; start_service es`, dir);
    assert.equal(killed.status, 0, killed.stderr);
    assert.match(killed.stdout, /es already running; leaving it running on exit/);
    assert.equal(readFileSync(path.join(dir, 'run.services'), 'utf8'), 'orthanc\nredis\n');
    // The next run finds all three running: it owns what the killed run started, not Elasticsearch.
    writeFileSync(path.join(dir, 'calls'), '');
    const next = bash(
      `source deploy/local/run.sh; ${fakeStack}; start_service orthanc; start_service redis; start_service es; cleanup`,
      dir,
    );
    assert.equal(next.status, 0, next.stderr);
    assert.match(next.stdout, /redis left running by an earlier npm start that did not stop; this run stops it on exit/);
    assert.deepEqual(readFileSync(path.join(dir, 'calls'), 'utf8').trim().split('\n'), [
      'status orthanc',
      'status redis',
      'status es',
      'stop redis',
      'stop orthanc',
    ]);
    assert.ok(!existsSync(path.join(dir, 'run.services')), 'a clean exit leaves nothing to take over');
    assert.ok(existsSync(path.join(dir, 'up.es')), 'the service running before any run still runs');
  });

  it("points /ui's viewer links at the viewer port it serves", () => {
    const { dir } = stackDir();
    const r = bash('source deploy/local/run.sh; printf "%s\\n" "${APP_ENV[@]}"', dir, { CBMIR_OHIF_PORT: '3001' });
    assert.equal(r.status, 0, r.stderr);
    const appEnv = Object.fromEntries(
      r.stdout
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    assert.equal(
      loadConfig(appEnv).ui.viewerUrlTemplate,
      'http://127.0.0.1:3001/viewer?StudyInstanceUIDs={study}&initialSeriesInstanceUID={series}&initialSOPInstanceUID={instance}',
    );
    assert.equal(
      loadConfig(appEnv).ui.viewerSimilarUrlTemplate,
      'http://127.0.0.1:3001/?configUrl=%2Fsimilar-to%2F{instance}%2Fapp-config.json',
      "the query image's similar studies in the viewer it serves",
    );
    const skipped = bash('source deploy/local/run.sh; printf "%s\\n" "${APP_ENV[@]}"', dir, {
      CBMIR_OHIF_PORT: '3001',
      CBMIR_SKIP_OHIF: '1',
    });
    assert.equal(skipped.status, 0, skipped.stderr);
    assert.match(skipped.stdout, /^CBMIR_VIEWER_URL_TEMPLATE=none$/m, 'no viewer served, no link to one');
    assert.match(skipped.stdout, /^CBMIR_VIEWER_SIMILAR_URL_TEMPLATE=none$/m);
  });
});

describe('deploy/local/stack.sh', () => {
  it('refuses bad settings by name before anything starts', () => {
    const cases: [string, Record<string, string>, RegExp][] = [
      ['_orthanc_vars', { ORTHANC_STABLE_AGE: '2s' }, /ORTHANC_STABLE_AGE must be a whole number/],
      ['_orthanc_vars', { ORTHANC_HTTP_THREADS: '0' }, /ORTHANC_HTTP_THREADS must be a whole number from 1/],
      ['_orthanc_vars', { ORTHANC_CONCURRENT_JOBS: 'two' }, /ORTHANC_CONCURRENT_JOBS must be a whole number/],
      ['_orthanc_vars', { ORTHANC_DICOM: 'true' }, /ORTHANC_DICOM must be 0 or 1, got 'true'/],
      ['_orthanc_vars', { ORTHANC_AET: 'MUCH_TOO_LONG_TITLE' }, /ORTHANC_AET must be 1-16 printable characters/],
      ['_es_vars', { ES_HEAP: '2 GB' }, /ES_HEAP must be a JVM size/],
      ['_es_vars', { ES_TRANSPORT_PORT: '9300-99999' }, /ES_TRANSPORT_PORT must be a port number/],
      ['_redis_vars', { REDIS_MAXMEMORY: 'lots' }, /REDIS_MAXMEMORY must be a size/],
      [':', { CBMIR_READY_TIMEOUT_S: '2m' }, /CBMIR_READY_TIMEOUT_S must be a whole number from 1/],
    ];
    for (const [fn, settings, message] of cases) {
      const { dir } = stackDir();
      const r = bash(`source deploy/local/stack.sh; ${fn}`, dir, settings);
      assert.equal(r.status, 1, `${JSON.stringify(settings)}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    const { dir } = stackDir();
    const ok = bash('source deploy/local/stack.sh; _orthanc_vars; _es_vars; _redis_vars; echo "$ORTHANC_STABLE_AGE $ORTHANC_DICOM"', dir, {
      ORTHANC_STABLE_AGE: '2',
      ORTHANC_DICOM: '1',
      ES_HEAP: '2g',
      REDIS_MAXMEMORY: '256mb',
    });
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), '2 1');
  });

  it('restart starts each running Orthanc instance again with its saved settings, the environment winning', () => {
    const { dir, bin } = stackDir();
    for (const name of ['orthanc-x', 'orthanc-y']) {
      mkdirSync(path.join(dir, name));
      writeFileSync(path.join(dir, name, 'orthanc.json'), '{}');
    }
    writeFileSync(
      path.join(dir, 'orthanc-x', 'instance.env'),
      "ORTHANC_HTTP_PORT=28042\nORTHANC_DICOM=1\nORTHANC_STABLE_AGE=2\nORTHANC_USERS=''\n",
    );
    writeFileSync(path.join(dir, 'orthanc-x', 'orthanc.pid'), `${detachedSleep(path.join(bin, 'Orthanc'))}\n`); // running
    mkdirSync(path.join(dir, 'redis'));
    writeFileSync(path.join(dir, 'redis', 'instance.env'), 'REDIS_PORT=16379\nREDIS_MAXMEMORY=64mb\n');
    const stubs =
      'orthanc_stop() { echo "stop $ORTHANC_NAME"; }; ' +
      'orthanc_start() { _orthanc_vars; echo "start $ORTHANC_NAME $ORTHANC_HTTP_PORT dicom=$ORTHANC_DICOM stable=$ORTHANC_STABLE_AGE"; }; ' +
      'redis_stop() { echo "stop redis"; }; redis_start() { _redis_vars; echo "start redis $REDIS_PORT $REDIS_MAXMEMORY"; }; ';
    const r = bash(`source deploy/local/stack.sh; ${stubs} main restart orthanc redis`, dir);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), [
      'stop orthanc-x',
      'start orthanc-x 28042 dicom=1 stable=2',
      'stop redis',
      'start redis 16379 64mb',
    ]);
    const moved = bash(`source deploy/local/stack.sh; ${stubs} main restart orthanc`, dir, { ORTHANC_HTTP_PORT: '29042' });
    assert.equal(moved.status, 0, moved.stderr);
    assert.match(moved.stdout, /^start orthanc-x 29042 dicom=1 stable=2$/m);
  });

  it('the public host Orthanc writes into its URLs follows a restart on another port, unless it was set', () => {
    const { dir } = stackDir();
    // What orthanc_start saves, then what a restart on another port derives from it.
    const save = (extra: Record<string, string>) =>
      bash(
        'source deploy/local/stack.sh; ORTHANC_NAME=orthanc _orthanc_vars; mkdir -p "$ORTHANC_DIR"; ' +
          'orthanc_start() { :; }; ' +
          // the save loop of orthanc_start, run as is
          `eval "$(sed -n '/umask 077 && for v in ORTHANC_HTTP_PORT/,/instance.env")/p' deploy/local/orthanc.sh)"`,
        dir,
        { ORTHANC_HTTP_PORT: '28042', ...extra },
      );
    const host = () =>
      bash(
        'source deploy/local/stack.sh; _source_defaults "$STACK_DIR/orthanc/instance.env"; ORTHANC_NAME=orthanc _orthanc_vars; echo "$ORTHANC_PUBLIC_HOST"',
        dir,
        { ORTHANC_HTTP_PORT: '29042' },
      ).stdout.trim();
    assert.equal(save({}).status, 0);
    assert.equal(host(), '127.0.0.1:29042');
    assert.equal(save({ ORTHANC_PUBLIC_HOST: 'pacs.example:443' }).status, 0);
    assert.equal(host(), 'pacs.example:443');
  });

  it('stop waits for an Elasticsearch start still in progress, then stops its server', async () => {
    const { dir, bin } = stackDir();
    mkdirSync(path.join(dir, 'es'));
    // The launcher as es_start runs it: a bash in its own session whose server (here a `java`
    // sleep) writes es.pid a moment later; the start's caller was interrupted before that.
    const launcher = spawn(
      'bash',
      [
        '-c',
        `sleep 1.5; setsid ${path.join(bin, 'java')} 300 </dev/null >/dev/null 2>&1 & echo $! >${path.join(dir, 'es', 'es.pid')}; sleep 0.5`,
      ],
      { detached: true, stdio: 'ignore', env: { ...process.env, CBMIR_RUN_TAG: `${dir}/es.launcher` } },
    );
    strays.add(launcher.pid!);
    writeFileSync(path.join(dir, 'es.launcher.pid'), `${launcher.pid}\n`);
    const r = bash('source deploy/local/stack.sh; es_stop', dir);
    assert.equal(r.status, 0, r.stderr);
    const stopped = /a start is in progress[\s\S]*elasticsearch: stopping \(pid (\d+)\)/.exec(r.stderr);
    assert.ok(stopped, r.stderr);
    const server = Number(stopped[1]);
    strays.add(server);
    await until('the server to be stopped', () => !alive(server));
  });

  it('a stale launcher pid file naming some other bash is ignored: stop neither waits for it nor signals it', () => {
    const { dir } = stackDir();
    mkdirSync(path.join(dir, 'es'));
    // Not our launcher: the pid number reused by an unrelated bash (no CBMIR_RUN_TAG of this stack).
    const other = spawn('bash', ['-c', 'sleep 300; :'], { detached: true, stdio: 'ignore' });
    strays.add(other.pid!);
    writeFileSync(path.join(dir, 'es.launcher.pid'), `${other.pid}\n`);
    const t0 = Date.now();
    const r = bash('source deploy/local/stack.sh; es_stop', dir, { CBMIR_READY_TIMEOUT_S: '3' });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(Date.now() - t0 < 2500, `es_stop waited ${Date.now() - t0} ms`);
    assert.doesNotMatch(r.stderr, /a start is in progress/);
    assert.ok(alive(other.pid!), 'the unrelated bash was signalled');
  });

  it('one Elasticsearch unpack at a time: a second install waits and finds it unpacked', async () => {
    const { dir } = stackDir();
    const repo = path.join(dir, 'm2');
    const zipDir = path.join(repo, 'org/elasticsearch/distribution/integ-test-zip/elasticsearch/0.0.1');
    mkdirSync(zipDir, { recursive: true });
    writeFileSync(path.join(zipDir, 'elasticsearch-0.0.1.zip'), 'not really a zip');
    // Slow enough that, unserialized, both installs would be unpacking at the same time.
    const stubs =
      'apt_ensure() { :; }; _es_java_home() { echo /jdk; }; _java_major() { echo 25; }; ensure_service_user() { :; }; ' +
      'unzip() { echo unzip >>"$CBMIR_STACK_DIR/unzips"; sleep 1; mkdir -p "$4/elasticsearch-$ES_VERSION/bin"; ' +
      'printf "#!/bin/sh\\n" >"$4/elasticsearch-$ES_VERSION/bin/elasticsearch"; chmod +x "$4/elasticsearch-$ES_VERSION/bin/elasticsearch"; }; ';
    const run = () =>
      new Promise<number | null>((resolve) => {
        const c = spawn('bash', ['-c', `set -euo pipefail; source deploy/local/stack.sh; ${stubs} es_install`], {
          cwd: repoRoot,
          env: env(dir, { ES_VERSION: '0.0.1', MAVEN_REPO_LOCAL: repo }),
          stdio: 'ignore',
        });
        c.on('exit', resolve);
      });
    assert.deepEqual(await Promise.all([run(), run()]), [0, 0]);
    assert.equal(readFileSync(path.join(dir, 'unzips'), 'utf8'), 'unzip\n');
    const home = path.join(dir, 'cache', 'elasticsearch-0.0.1');
    assert.ok(existsSync(path.join(home, 'bin', 'elasticsearch')));
    assert.equal(existsSync(path.join(home, 'elasticsearch-0.0.1')), false, 'no tree nested in another');
  });

  describe('Elasticsearch state kept outside the state dir', () => {
    // _es_alt_dir is /var/lib/cbmir/es-<hash>; here a folder of the test's own.
    const altStub = (dir: string) => `_es_alt_dir() { echo ${path.join(dir, 'var', 'es-1')}; }; as_service_user() { :; }; `;

    it('is not silently linked back into a state dir created anew; the message says how to reset or keep it', () => {
      const { dir } = stackDir();
      const alt = path.join(dir, 'var', 'es-1');
      mkdirSync(path.join(alt, 'data'), { recursive: true }); // the earlier stack dir's index
      mkdirSync(path.join(dir, 'es'));
      const r = bash(`source deploy/local/stack.sh; ${altStub(dir)} _es_vars; _es_link_alt_dir "$STACK_DIR/es"`, dir);
      assert.equal(r.status, 1);
      assert.ok(r.stderr.includes(alt) && r.stderr.includes(path.join(dir, 'es')), r.stderr);
      assert.match(r.stderr, /To start afresh \(deletes that index\): +CBMIR_STACK_DIR=\S+ bash deploy\/local\/stack\.sh reset/);
      assert.ok(existsSync(path.join(alt, 'data')), 'nothing deleted');
    });

    it('is linked and recorded when new, and reused while the record is there', () => {
      const { dir } = stackDir();
      const alt = path.join(dir, 'var', 'es-1');
      mkdirSync(path.join(dir, 'es'));
      const first = bash(`source deploy/local/stack.sh; ${altStub(dir)} _es_vars; _es_link_alt_dir "$STACK_DIR/es"`, dir);
      assert.equal(first.status, 0, first.stderr);
      assert.equal(readFileSync(path.join(dir, 'es.location'), 'utf8').trim(), alt);
      mkdirSync(path.join(alt, 'data'));
      rmSync(path.join(dir, 'es'));
      mkdirSync(path.join(dir, 'es'));
      const again = bash(`source deploy/local/stack.sh; ${altStub(dir)} _es_vars; _es_link_alt_dir "$STACK_DIR/es"`, dir);
      assert.equal(again.status, 0, again.stderr);
      assert.ok(existsSync(path.join(dir, 'es', 'data')));
    });
  });

  it('reset deletes the services’ state, and leaves other stacks’ dirs and the lock files alone', () => {
    const { dir } = stackDir();
    for (const d of ['orthanc', 'orthanc-auth', 'redis', 'es/data', 'test/orthanc']) mkdirSync(path.join(dir, d), { recursive: true });
    for (const f of [
      'orthanc/orthanc.json',
      'orthanc-auth/orthanc.json',
      'test/orthanc/orthanc.json',
      'gateway.log',
      'es.instance.env',
      'test.lock',
      'run.lock',
    ]) {
      writeFileSync(path.join(dir, f), '');
    }
    const r = spawnSync('bash', ['deploy/local/stack.sh', 'reset'], { cwd: repoRoot, env: env(dir), encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    for (const gone of ['orthanc', 'orthanc-auth', 'redis', 'es', 'gateway.log', 'es.instance.env'])
      assert.equal(existsSync(path.join(dir, gone)), false, gone);
    for (const kept of ['test/orthanc/orthanc.json', 'test.lock', 'run.lock']) assert.ok(existsSync(path.join(dir, kept)), kept);
  });
});
