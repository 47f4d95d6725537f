import assert from 'node:assert/strict';
import { test } from 'node:test';
import { callerKey, callerOf } from '../../gateway/caller.js';

test('the caller key (thumbnail cache, access cache) changes with every header that can say who the caller is, and only with those', () => {
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

test('callerOf: Authorization apart, the other identity headers to send along; nothing that only describes the request', () => {
  const c = callerOf({
    accept: 'application/dicom',
    'content-type': 'application/dicom',
    'content-length': '1000',
    host: 'gw',
    authorization: 'Bearer t',
    cookie: 'session=a',
    token: 'x',
    'user-agent': 'viewer',
  });
  assert.equal(c.authorization, 'Bearer t');
  assert.deepEqual(c.headers, { cookie: 'session=a', token: 'x' });
  // an upload's size is not who sent it: the same caller keeps the same key (and access cache)
  assert.equal(c.key, callerKey({ authorization: 'Bearer t', cookie: 'session=a', token: 'x' }));
  assert.deepEqual(callerOf({ accept: '*/*' }), { authorization: undefined, headers: {}, key: '' });
});

test('callerOf: what proxies and tracers add per request is not who the caller is (nor sent on access checks)', () => {
  const a = callerOf({
    authorization: 'Basic x',
    'x-amzn-trace-id': 'Root=1',
    'x-forwarded-for': '10.0.0.1',
    via: '1.1 lb',
    'x-b3-traceid': 'a',
    'if-match': '"e"',
  });
  const b = callerOf({ authorization: 'Basic x', 'x-amzn-trace-id': 'Root=2', 'x-forwarded-for': '10.0.0.2', 'x-b3-traceid': 'b' });
  assert.equal(a.key, b.key);
  assert.deepEqual(a.headers, {});
});

test('callerOf: a method override is not identity, so it never rides along on access checks and lookups', () => {
  const plain = callerOf({ authorization: 'Basic x' });
  const overriding = callerOf({
    authorization: 'Basic x',
    'x-http-method-override': 'DELETE',
    'x-method-override': 'PUT',
    'x-http-method': 'DELETE',
  });
  assert.equal(overriding.key, plain.key);
  assert.deepEqual(overriding.headers, {});
});
