import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseEndpoint } from '../../gateway/upstream.js';
import { isRewritableType, UrlRewriter } from '../../gateway/url-rewrite.js';

const rw = new UrlRewriter(
  parseEndpoint('http://127.0.0.1:8042/dicom-web'),
  parseEndpoint('http://127.0.0.1:8042/wado'),
  '/dicom-web',
  '/wado',
);
const pub = 'https://gw.example';

test('PACS roots (and loopback aliases) in bodies become the public root; foreign URLs stay', () => {
  const body = Buffer.from(
    JSON.stringify({
      a: 'http://127.0.0.1:8042/dicom-web/studies/1.2',
      b: 'http://localhost:8042/dicom-web/studies/1.2/series/1.3/instances/1.4/bulk/7fe00010',
      c: 'http://127.0.0.1:8042/wado?requestType=WADO',
      d: 'http://other-pacs:8042/dicom-web/studies/1.2',
    }),
  );
  const out = JSON.parse(rw.mapBody(body, pub)!.toString()) as Record<string, string>;
  assert.equal(out.a, 'https://gw.example/dicom-web/studies/1.2');
  assert.equal(out.b, 'https://gw.example/dicom-web/studies/1.2/series/1.3/instances/1.4/bulk/7fe00010');
  assert.equal(out.c, 'https://gw.example/wado?requestType=WADO');
  assert.equal(out.d, 'http://other-pacs:8042/dicom-web/studies/1.2');
});

test('nothing to rewrite → null (the original bytes are sent)', () => {
  assert.equal(rw.mapBody(Buffer.from('[{"0020000D":{"vr":"UI","Value":["1.2"]}}]'), pub), null);
});

test('Location headers are mapped only on a root boundary', () => {
  assert.equal(rw.mapUrl('http://127.0.0.1:8042/dicom-web/studies/1.2', pub), 'https://gw.example/dicom-web/studies/1.2');
  assert.equal(rw.mapUrl('http://127.0.0.1:8042/dicom-webfoo', pub), 'http://127.0.0.1:8042/dicom-webfoo');
  assert.equal(rw.mapUrl('/relative', pub), '/relative');
});

test('bodies too are mapped only on a root boundary: a longer path is another service', () => {
  const body = Buffer.from(
    '{"a":"http://127.0.0.1:8042/dicom-web2/studies/1","b":"http://127.0.0.1:8042/dicom-web-old/x",' +
      '"c":"http://127.0.0.1:8042/dicom-web","d":"http://127.0.0.1:8042/wado.php?x"}',
  );
  const out = JSON.parse(rw.mapBody(body, pub)!.toString()) as Record<string, string>;
  assert.equal(out.a, 'http://127.0.0.1:8042/dicom-web2/studies/1');
  assert.equal(out.b, 'http://127.0.0.1:8042/dicom-web-old/x');
  assert.equal(out.c, 'https://gw.example/dicom-web');
  assert.equal(out.d, 'http://127.0.0.1:8042/wado.php?x');
  const xml = Buffer.from('<NativeDicomModel><Value>http://127.0.0.1:8042/dicom-web</Value></NativeDicomModel>');
  assert.match(rw.mapBody(xml, pub)!.toString(), /<Value>https:\/\/gw\.example\/dicom-web<\/Value>/);
  assert.equal(rw.mapBody(Buffer.from('"http://127.0.0.1:8042/dicom-webfoo"'), pub), null);
});

test('only JSON and XML bodies are rewritable', () => {
  assert.ok(isRewritableType('application/dicom+json; charset=utf-8'));
  assert.ok(isRewritableType('application/json'));
  assert.ok(isRewritableType('application/dicom+xml'));
  assert.ok(!isRewritableType('multipart/related; type="application/dicom+xml"; boundary=x'));
  assert.ok(!isRewritableType('image/jpeg'));
  assert.ok(!isRewritableType(undefined));
});
