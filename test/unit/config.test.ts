import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig, ConfigError } from '../../core/config.js';

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
