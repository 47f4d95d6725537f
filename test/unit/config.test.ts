import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { CONFIG_ENV_KEYS, loadConfig, ConfigError } from '../../core/config.js';
import { configOrExit, redisReachable, withoutCredentials } from '../../workers/command-config.js';

test('defaults bind to loopback and use the embedded index', () => {
  const c = loadConfig({});
  assert.equal(c.host, '127.0.0.1');
  assert.equal(c.es, undefined);
  assert.equal(c.pacs.url, 'http://127.0.0.1:8042/dicom-web');
  assert.equal(c.showPatient, false);
  assert.ok(Object.isFrozen(c));
});

test('every bad setting is reported at once, by name', () => {
  assert.throws(
    () => loadConfig({ CBMIR_PORT: 'eighty', CBMIR_PACS_URL: 'not a url', CBMIR_LOG_LEVEL: 'loud' }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const text = err.message;
      for (const name of ['CBMIR_PORT', 'CBMIR_PACS_URL', 'CBMIR_LOG_LEVEL']) assert.match(text, new RegExp(name));
      return true;
    },
  );
});

test('an empty or blank setting counts as unset, not as 0 or the current directory', () => {
  const c = loadConfig({
    CBMIR_PORT: '',
    CBMIR_RECONCILE_INTERVAL_S: '',
    CBMIR_ACCESS_CACHE_MS: '  ',
    CBMIR_THUMBNAIL_CACHE_ENTRIES: '\t',
    CBMIR_SHUTDOWN_GRACE_MS: '',
    CBMIR_RECONCILE_RATE: '',
    CBMIR_DATA_DIR: '',
    CBMIR_MODEL: ' ',
    CBMIR_HOST: '',
  });
  assert.equal(c.port, 8080);
  assert.equal(c.reconcile.intervalS, 300);
  assert.equal(c.similar.accessCacheMs, 30_000);
  assert.equal(c.thumbnailCacheEntries, 2000);
  assert.equal(c.shutdownGraceMs, 10_000);
  assert.equal(c.reconcile.maxRequestsPerSecond, 10);
  assert.equal(c.dataDir, '.cbmir-data');
  assert.equal(c.model, undefined);
  assert.equal(c.host, '127.0.0.1');
  // A blank half of the service login is a missing half, named as such.
  assert.throws(
    () => loadConfig({ CBMIR_PACS_USER: 'u', CBMIR_PACS_PASSWORD: '' }),
    /CBMIR_PACS_USER \/ CBMIR_PACS_PASSWORD: set both or neither/,
  );
});

test('numbers are digits only, and a bad one is refused naming its setting', () => {
  for (const bad of ['0x1F90', '8e3', '80.0', '-1', '+80', '8 080', 'Infinity']) {
    assert.throws(() => loadConfig({ CBMIR_PORT: bad }), /CBMIR_PORT: must be a whole number/, bad);
  }
  // No setting needs port 0 (tests pass 0 to listen() themselves): it would be a random port.
  assert.throws(() => loadConfig({ CBMIR_PORT: '0' }), /CBMIR_PORT: Too small/);
  assert.throws(() => loadConfig({ CBMIR_PACS_TIMEOUT_MS: '1e4' }), /CBMIR_PACS_TIMEOUT_MS: must be a whole number/);
  assert.throws(() => loadConfig({ CBMIR_RECONCILE_RATE: '0x10' }), /CBMIR_RECONCILE_RATE: must be a decimal number/);
  assert.equal(loadConfig({ CBMIR_PORT: ' 8081 ' }).port, 8081);
  assert.equal(loadConfig({ CBMIR_RECONCILE_RATE: '2.5' }).reconcile.maxRequestsPerSecond, 2.5);
  assert.equal(loadConfig({ CBMIR_RECONCILE_RATE: '0.01' }).reconcile.maxRequestsPerSecond, 0.01);
  assert.throws(() => loadConfig({ CBMIR_RECONCILE_RATE: '0.000000001' }), /CBMIR_RECONCILE_RATE: .*0\.01/);
  assert.equal(loadConfig({ CBMIR_RECONCILE_INTERVAL_S: '0' }).reconcile.intervalS, 0);
});

test('CBMIR_WORKER_MAX_FRAME_PIXELS: 36 Mi pixels by default (a 6000 × 4800 frame), a whole number within its bounds', () => {
  assert.equal(loadConfig({}).worker.maxFramePixels, 36 * 2 ** 20);
  assert.ok(loadConfig({}).worker.maxFramePixels >= 6000 * 4800);
  assert.equal(loadConfig({ CBMIR_WORKER_MAX_FRAME_PIXELS: '50000000' }).worker.maxFramePixels, 50_000_000);
  for (const bad of ['36Mi', '3.6e7', '-1', '6000x4800']) {
    assert.throws(() => loadConfig({ CBMIR_WORKER_MAX_FRAME_PIXELS: bad }), /CBMIR_WORKER_MAX_FRAME_PIXELS: must be a whole number/, bad);
  }
  // Below 256²: most likely meant in Mi; above 64 Mi: over what one frame may take (core/dicom/limits.ts).
  assert.throws(() => loadConfig({ CBMIR_WORKER_MAX_FRAME_PIXELS: '36' }), /CBMIR_WORKER_MAX_FRAME_PIXELS: Too small/);
  assert.throws(() => loadConfig({ CBMIR_WORKER_MAX_FRAME_PIXELS: String(2 ** 26 + 1) }), /CBMIR_WORKER_MAX_FRAME_PIXELS: Too big/);
  assert.equal(loadConfig({ CBMIR_WORKER_MAX_FRAME_PIXELS: String(2 ** 26) }).worker.maxFramePixels, 2 ** 26);
});

test('URLs must use the scheme their setting needs', () => {
  assert.throws(
    () => loadConfig({ CBMIR_PACS_URL: 'ftp://pacs/dicom-web' }),
    /CBMIR_PACS_URL: must be a URL starting with http:\/\/ or https:\/\//,
  );
  assert.throws(() => loadConfig({ CBMIR_ES_URL: 'localhost:9200' }), /CBMIR_ES_URL/);
  assert.throws(
    () => loadConfig({ CBMIR_REDIS_URL: 'http://127.0.0.1:6379' }),
    /CBMIR_REDIS_URL: must be a URL starting with redis:\/\/ or rediss:\/\//,
  );
  const c = loadConfig({ CBMIR_REDIS_URL: 'rediss://user:pw@cache:6380/2', CBMIR_ES_URL: 'https://es:9200' });
  assert.equal(c.redisUrl, 'rediss://user:pw@cache:6380/2');
  assert.equal(c.es?.url, 'https://es:9200');
});

test('cross-origin access is off by default and never open to any origin with the service login', () => {
  assert.deepEqual(loadConfig({}).corsOrigins, []);
  assert.equal(loadConfig({ CBMIR_CORS_ORIGINS: '*' }).corsOrigins, '*');
  assert.throws(
    () => loadConfig({ CBMIR_CORS_ORIGINS: '*', CBMIR_PACS_USER: 'u', CBMIR_PACS_PASSWORD: 'p' }),
    /CBMIR_CORS_ORIGINS: `\*` is refused while CBMIR_PACS_USER is set/,
  );
  assert.throws(
    () => loadConfig({ CBMIR_CORS_ORIGINS: 'https://viewer.example/ohif' }),
    /CBMIR_CORS_ORIGINS: "https:\/\/viewer.example\/ohif" is not an origin/,
  );
  assert.throws(() => loadConfig({ CBMIR_CORS_ORIGINS: 'viewer.example' }), /is not an origin/);
  assert.deepEqual(loadConfig({ CBMIR_CORS_ORIGINS: 'https://viewer.example, http://127.0.0.1:3000' }).corsOrigins, [
    'https://viewer.example',
    'http://127.0.0.1:3000',
  ]);
});

test('a loopback-bound gateway answers to loopback names (and its public host) only; others to any unless listed', () => {
  assert.deepEqual(loadConfig({}).allowedHosts, ['127.0.0.1', 'localhost', '[::1]']);
  assert.deepEqual(loadConfig({ CBMIR_PUBLIC_URL: 'https://Gateway.Hospital.example/pacs' }).allowedHosts, [
    '127.0.0.1',
    'localhost',
    '[::1]',
    'gateway.hospital.example',
  ]);
  assert.deepEqual(loadConfig({ CBMIR_HOST: '::1' }).allowedHosts, ['127.0.0.1', 'localhost', '[::1]']);
  assert.equal(loadConfig({ CBMIR_HOST: '0.0.0.0' }).allowedHosts, '*');
  assert.deepEqual(loadConfig({ CBMIR_HOST: '0.0.0.0', CBMIR_ALLOWED_HOSTS: 'pacs-gw, PACS-GW.lan' }).allowedHosts, [
    'pacs-gw',
    'pacs-gw.lan',
  ]);
  assert.equal(loadConfig({ CBMIR_ALLOWED_HOSTS: '*' }).allowedHosts, '*');
});

test('PACS credentials in a URL are refused (they would be dropped and logged)', () => {
  assert.throws(
    () => loadConfig({ CBMIR_PACS_URL: 'http://admin:secret@pacs:8042/dicom-web' }),
    /CBMIR_PACS_URL: no user or password in the URL; set CBMIR_PACS_USER and CBMIR_PACS_PASSWORD/,
  );
  assert.throws(() => loadConfig({ CBMIR_PACS_WADO_URI_URL: 'http://admin@pacs:8042/wado' }), /CBMIR_PACS_WADO_URI_URL: no user/);
});

test('bound beyond loopback, the service login is not handed to anonymous callers unless that is acknowledged', () => {
  const login = { CBMIR_PACS_USER: 'svc', CBMIR_PACS_PASSWORD: 'p' };
  assert.doesNotThrow(() => loadConfig(login)); // loopback (default)
  assert.throws(
    () => loadConfig({ ...login, CBMIR_HOST: '0.0.0.0' }),
    /CBMIR_PACS_USER: with CBMIR_HOST=0\.0\.0\.0 every request without Authorization/,
  );
  assert.doesNotThrow(() => loadConfig({ ...login, CBMIR_HOST: '0.0.0.0', CBMIR_ANONYMOUS_USES_PACS_LOGIN: 'true' }));
  assert.doesNotThrow(() => loadConfig({ CBMIR_HOST: '0.0.0.0' })); // no service login: clients bring their own
});

test("the checks of what a listening gateway exposes are the gateway's: workers and commands share its env file", () => {
  const shared = { CBMIR_PACS_USER: 'svc', CBMIR_PACS_PASSWORD: 'p', CBMIR_HOST: '0.0.0.0', CBMIR_CORS_ORIGINS: '*' };
  const problems = (() => {
    try {
      loadConfig(shared);
      return '';
    } catch (err) {
      return (err as Error).message;
    }
  })();
  assert.match(problems, /CBMIR_PACS_USER: with CBMIR_HOST/);
  assert.match(problems, /CBMIR_CORS_ORIGINS: `\*` is refused/);
  const worker = loadConfig(shared, { serves: false });
  assert.equal(worker.pacs.user, 'svc');
  assert.equal(configOrExit(shared).pacs.user, 'svc', 'a CLI command does not exit 2 on them');
  // Every other check still holds for them.
  assert.throws(() => loadConfig({ ...shared, CBMIR_PORT: 'x' }, { serves: false }), /CBMIR_PORT/);
  assert.throws(() => loadConfig({ CBMIR_PACS_USER: 'svc' }, { serves: false }), /set both or neither/);
});

test('PACS credentials must come in pairs', () => {
  assert.throws(() => loadConfig({ CBMIR_PACS_USER: 'u' }), /CBMIR_PACS_USER/);
  const c = loadConfig({ CBMIR_PACS_USER: 'u', CBMIR_PACS_PASSWORD: 'p', CBMIR_SHOW_PATIENT: 'yes' });
  assert.equal(c.pacs.user, 'u');
  assert.equal(c.showPatient, true);
});

test('trailing slashes are trimmed and CORS origins split', () => {
  const c = loadConfig({ CBMIR_PACS_URL: 'http://127.0.0.1:1/dicom-web//', CBMIR_CORS_ORIGINS: 'http://a, http://b' });
  assert.equal(c.pacs.url, 'http://127.0.0.1:1/dicom-web');
  assert.deepEqual(c.corsOrigins, ['http://a', 'http://b']);
});

test('every setting the configuration reads is documented for operators', () => {
  const doc = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
  const missing = CONFIG_ENV_KEYS.filter((k) => !doc.includes(`\`${k}\``));
  assert.deepEqual(missing, []);
  assert.ok(CONFIG_ENV_KEYS.length > 30);
});

test('every setting the local stack scripts read (${NAME:-default}) is documented for operators', () => {
  const doc = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
  const dir = new URL('../../deploy/local/', import.meta.url);
  // The scripts' own state flags and the XDG base directory, not settings of this project.
  const internal = new Set(['GATEWAY_RUNNING', 'WORKER_RUNNING', 'OHIF_RUNNING', 'OHIF_PID', 'LOADED', 'XDG_CACHE_HOME']);
  const names = new Set<string>();
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.sh'))) {
    for (const m of readFileSync(new URL(f, dir), 'utf8').matchAll(/\$\{([A-Z][A-Z0-9_]*):-/g)) names.add(m[1]!);
  }
  const missing = [...names].filter((n) => !internal.has(n) && !doc.includes(`\`${n}\``));
  assert.deepEqual(missing, []);
  assert.ok(names.has('REDIS_MAXMEMORY') && names.has('ORTHANC_BIN'));
});

test('a Redis that cannot be reached is named without its password, with CBMIR_REDIS_URL', async () => {
  await assert.rejects(
    redisReachable(() => Promise.reject(new Error('connect ECONNREFUSED')), 'redis://:s3cret@redis.example:6379/0', { timeoutMs: 20 }),
    (err: Error) => {
      assert.ok(!err.message.includes('s3cret'), err.message);
      assert.equal(err.message, 'Redis at redis://:***@redis.example:6379/0 (CBMIR_REDIS_URL) is unreachable: connect ECONNREFUSED');
      return true;
    },
  );
  assert.equal(withoutCredentials('rediss://user:pw@r:6380'), 'rediss://***:***@r:6380');
  assert.equal(withoutCredentials('redis://127.0.0.1:6379'), 'redis://127.0.0.1:6379');
  // ioredis takes options, the password among them, from the query too.
  assert.equal(withoutCredentials('redis://r:6379/0?password=pw&db=1'), 'redis://r:6379/0');
});
