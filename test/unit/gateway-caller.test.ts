import assert from 'node:assert/strict';
import { test } from 'node:test';
import { callerKey } from '../../gateway/thumbnail.js';

test('the thumbnail cache key changes with every header that can say who the caller is, and only with those', () => {
  const base = { accept: 'image/jpeg', 'user-agent': 'viewer', host: '127.0.0.1:8080', 'sec-fetch-mode': 'cors', 'x-request-id': 'r1' };
  const anon = callerKey(base);
  assert.equal(anon, '');
  assert.equal(callerKey({ ...base, 'x-request-id': 'r2', 'accept-language': 'fr' }), anon);
  const keys = [
    callerKey({ ...base, authorization: 'Basic dXNlcjpwYXNz' }),
    callerKey({ ...base, authorization: 'Basic b3RoZXI6cGFzcw==' }),
    callerKey({ ...base, cookie: 'session=a' }),
    callerKey({ ...base, cookie: 'session=b' }),
    callerKey({ ...base, token: 'a' }),
    callerKey({ ...base, 'x-api-key': 'a' }),
  ];
  assert.equal(new Set([anon, ...keys]).size, keys.length + 1);
});
