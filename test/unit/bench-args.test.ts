import assert from 'node:assert/strict';
import { test } from 'node:test';
import { intListSetting, intSetting, portFromEnv, UsageError } from '../../bench/lib/args.js';

test('intSetting: integers in range pass; anything else is a UsageError naming the setting', () => {
  assert.equal(intSetting('--k', '10'), 10);
  assert.equal(intSetting('--jitter', '0', 0), 0);
  for (const bad of ['abc', '', '1.5', '0', '-3', undefined, 'NaN', '1e400']) {
    assert.throws(
      () => intSetting('--queries', bad),
      (err: unknown) => err instanceof UsageError && err.message.startsWith('--queries must be an integer ≥ 1'),
      String(bad),
    );
  }
  assert.throws(() => intSetting('--k', '10001', 1, 10_000), /--k must be an integer in 1…10000, got "10001"/);
});

test('intListSetting: every item checked, an empty list refused', () => {
  assert.deepEqual(intListSetting('--sizes', '10000, 100000'), [10_000, 100_000]);
  assert.throws(() => intListSetting('--sizes', '10000,abc'), /--sizes must be an integer ≥ 1, got "abc"/);
  assert.throws(() => intListSetting('--sizes', '10000,,5'), UsageError);
  assert.throws(() => intListSetting('--sizes', ''), /--sizes must list at least one integer/);
  assert.throws(() => intListSetting('--sizes', ','), UsageError);
});

test('portFromEnv: default when unset or empty; a port otherwise', () => {
  assert.equal(portFromEnv('CBMIR_EVAL_GATEWAY_PORT', 18091, {}), 18091);
  assert.equal(portFromEnv('CBMIR_EVAL_GATEWAY_PORT', 18091, { CBMIR_EVAL_GATEWAY_PORT: '' }), 18091);
  assert.equal(portFromEnv('CBMIR_EVAL_GATEWAY_PORT', 18091, { CBMIR_EVAL_GATEWAY_PORT: '19000' }), 19000);
  for (const bad of ['x', '0', '65536', '80.5']) {
    assert.throws(
      () => portFromEnv('CBMIR_EVAL_REDIS_PORT', 1, { CBMIR_EVAL_REDIS_PORT: bad }),
      /^UsageError: CBMIR_EVAL_REDIS_PORT must be an integer in 1…65535/,
    );
  }
});
