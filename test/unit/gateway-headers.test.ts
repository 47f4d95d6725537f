import assert from 'node:assert/strict';
import { test } from 'node:test';
import { basicAuthorization, downstreamResponseHeaders, upstreamRequestHeaders } from '../../gateway/headers.js';
import { LruCache } from '../../gateway/lru.js';

test('hop-by-hop request headers stop at the gateway; Authorization passes unchanged', () => {
  const out = upstreamRequestHeaders(
    {
      host: 'gw:8080',
      connection: 'keep-alive, x-private',
      'x-private': '1',
      'keep-alive': 'timeout=5',
      te: 'trailers',
      'transfer-encoding': 'chunked',
      expect: '100-continue',
      forwarded: 'host=evil.example',
      authorization: 'Bearer abc',
      accept: 'application/dicom+json',
      'content-type': 'application/json',
    },
    { host: 'pacs:8042', defaultAuthorization: 'Basic eA==', accept: undefined, hasBody: false },
  );
  assert.deepEqual(out, { authorization: 'Bearer abc', accept: 'application/dicom+json', host: 'pacs:8042' });
});

test("the client's X-Forwarded-Host/-Proto/-Port stop at the gateway (it tells the PACS its URL through Forwarded)", () => {
  const out = upstreamRequestHeaders(
    {
      'x-forwarded-host': 'evil.example',
      'x-forwarded-proto': 'https',
      'x-forwarded-port': '443',
      'x-forwarded-for': '10.0.0.1',
      accept: 'application/dicom+json',
    },
    { host: 'pacs:8042', defaultAuthorization: undefined, accept: undefined, hasBody: false },
  );
  assert.deepEqual(out, { 'x-forwarded-for': '10.0.0.1', accept: 'application/dicom+json', host: 'pacs:8042' });
});

test('method overrides never reach the PACS (Orthanc reads X-HTTP-Method-Override: DELETE on a GET as a DELETE)', () => {
  const out = upstreamRequestHeaders(
    {
      'x-http-method-override': 'DELETE',
      'x-http-method': 'PUT',
      'x-method-override': 'DELETE',
      authorization: 'Basic x',
    },
    { host: 'pacs:8042', defaultAuthorization: undefined, accept: undefined, hasBody: false },
  );
  assert.deepEqual(out, { authorization: 'Basic x', host: 'pacs:8042' });
});

test('configured credentials only fill in a missing Authorization; accept override applies', () => {
  const out = upstreamRequestHeaders(
    { 'content-type': 'multipart/related', 'content-length': '10' },
    { host: 'p', defaultAuthorization: basicAuthorization('u', 'p:w'), accept: 'application/dicom+json', hasBody: true },
  );
  assert.equal(out.authorization, `Basic ${Buffer.from('u:p:w').toString('base64')}`);
  assert.equal(out['content-length'], '10');
  assert.equal(out.accept, 'application/dicom+json');
});

test('response hop-by-hop headers are dropped and Location is mapped', () => {
  const out = downstreamResponseHeaders(
    { connection: 'keep-alive', 'keep-alive': 'timeout=1', location: 'http://pacs/x', 'content-type': 'a/b', 'set-cookie': ['a', 'b'] },
    (v) => v.replace('http://pacs', 'http://gw'),
  );
  assert.deepEqual(out, { location: 'http://gw/x', 'content-type': 'a/b', 'set-cookie': ['a', 'b'] });
});

test("the PACS's CORS headers never reach the client, and its Vary is merged with the gateway's", () => {
  // e.g. an nginx in front of Orthanc that allows every origin: the gateway, which adds its own
  // PACS login, would be opened to every web page.
  const out = downstreamResponseHeaders(
    {
      'access-control-allow-origin': '*',
      'access-control-allow-credentials': 'true',
      vary: 'Accept-Encoding, origin',
      'content-type': 'a/b',
    },
    (v) => v,
    'Origin',
  );
  assert.deepEqual(out, { vary: 'Origin, Accept-Encoding', 'content-type': 'a/b' });
});

test('LRU with a byte budget evicts the oldest until the bytes fit, and never keeps one over it', () => {
  const c = new LruCache<string, Buffer>(100, { maxBytes: 10, sizeOf: (b) => b.length });
  c.set('a', Buffer.alloc(4));
  c.set('b', Buffer.alloc(4));
  assert.equal(c.sizeBytes, 8);
  c.set('c', Buffer.alloc(4)); // 12 > 10: 'a' goes
  assert.deepEqual([c.get('a'), c.size, c.sizeBytes], [undefined, 2, 8]);
  c.set('b', Buffer.alloc(1)); // replacing counts the new size only
  assert.equal(c.sizeBytes, 5);
  c.set('huge', Buffer.alloc(11));
  assert.deepEqual([c.get('huge'), c.sizeBytes], [undefined, 5]);
});

test('LRU evicts the least recently used entry and can be disabled', () => {
  const c = new LruCache<string, number>(2);
  c.set('a', 1);
  c.set('b', 2);
  assert.equal(c.get('a'), 1);
  c.set('c', 3);
  assert.equal(c.get('b'), undefined);
  assert.equal(c.get('a'), 1);
  assert.equal(c.size, 2);
  const off = new LruCache<string, number>(0);
  off.set('a', 1);
  assert.equal(off.size, 0);
});
