import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkHost, hostName } from '../../gateway/host-guard.js';
import { HttpProblem } from '../../core/errors.js';

test('Host header → name without port, IPv6 in brackets, lower case', () => {
  assert.equal(hostName('127.0.0.1:8080'), '127.0.0.1');
  assert.equal(hostName('LocalHost'), 'localhost');
  assert.equal(hostName('[::1]:8080'), '[::1]');
  assert.equal(hostName('[::1]'), '[::1]');
  assert.equal(hostName(''), undefined);
  assert.equal(hostName(undefined), undefined);
});

test('only listed names pass; a request without Host passes; * lets everything through', () => {
  const loop = ['127.0.0.1', 'localhost', '[::1]'];
  for (const h of ['127.0.0.1:8080', 'localhost', '[::1]:1', undefined]) assert.doesNotThrow(() => checkHost(h, loop), String(h));
  for (const h of ['evil.example', 'localhost.evil.example:8080', '127.0.0.2', '[::2]:8080', '::1']) {
    assert.throws(
      () => checkHost(h, loop),
      (e: unknown) => e instanceof HttpProblem && e.code === 'HOST_NOT_ALLOWED' && e.status === 403,
      h,
    );
  }
  assert.doesNotThrow(() => checkHost('evil.example', '*'));
});
