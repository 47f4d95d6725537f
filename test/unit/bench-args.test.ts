import assert from 'node:assert/strict';
import { test } from 'node:test';
import { intListSetting, intSetting, parseCli, portFromEnv, UsageError } from '../../bench/lib/args.js';

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

const OPTIONS = {
  limit: { type: 'string', default: '1000', value: 'N', help: 'images' },
  'no-report': { type: 'boolean', help: 'leave docs/ alone' },
} as const;

test('parseCli: options with their defaults; --help (anywhere) is help and nothing else', () => {
  assert.deepEqual(parseCli([], 'usage: x', OPTIONS), { kind: 'run', values: { limit: '1000', 'no-report': false } });
  assert.deepEqual(parseCli(['--limit', '5', '--no-report'], 'usage: x', OPTIONS), {
    kind: 'run',
    values: { limit: '5', 'no-report': true },
  });
  for (const argv of [['--help'], ['-h'], ['--limit', '5', '--help'], ['--bogus', '--help']]) {
    const r = parseCli(argv, 'usage: x', OPTIONS);
    assert.equal(r.kind, 'help', argv.join(' '));
    assert.equal(
      r.kind === 'help' && r.text,
      'usage: x\n\nOptions:\n' +
        '  --limit N                  images [1000]\n' +
        '  --no-report                leave docs/ alone\n' +
        '  --help, -h                 this text; runs nothing\n',
    );
  }
});

test('parseCli: an unknown option, a missing value or a positional is one line, not an exception', () => {
  assert.deepEqual(parseCli(['--bogus'], 'u', OPTIONS), { kind: 'error', message: "Unknown option '--bogus' (--help lists the options)" });
  assert.deepEqual(parseCli(['--limit'], 'u', OPTIONS), {
    kind: 'error',
    message: "Option '--limit <value>' argument missing (--help lists the options)",
  });
  assert.deepEqual(parseCli(['extra'], 'u', OPTIONS), { kind: 'error', message: "Unexpected argument 'extra' (--help lists the options)" });
  // A benchmark without options (bench:proxy) takes none.
  assert.deepEqual(parseCli(['--rounds', '3'], 'u', {}), {
    kind: 'error',
    message: "Unknown option '--rounds' (--help lists the options)",
  });
  assert.deepEqual(parseCli([], 'u', {}), { kind: 'run', values: {} });
});
