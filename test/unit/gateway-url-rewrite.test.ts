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

/** The rewriter as it was before it streamed (whole body, decoded, one regex per root): the semantics to keep. */
function regexMapBody(body: Buffer, publicBase: string): Buffer | null {
  const roots = [
    ['http://127.0.0.1:8042/dicom-web', '/dicom-web'],
    ['http://localhost:8042/dicom-web', '/dicom-web'],
    ['http://[::1]:8042/dicom-web', '/dicom-web'],
    ['http://127.0.0.1:8042/wado', '/wado'],
    ['http://localhost:8042/wado', '/wado'],
    ['http://[::1]:8042/wado', '/wado'],
  ].sort((a, b) => b[0]!.length - a[0]!.length);
  const text = body.toString('utf8');
  let out = text;
  for (const [from, suffix] of roots) {
    const re = new RegExp(`${from!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![\\w.~%+-])`, 'g');
    out = out.replace(re, () => publicBase + suffix!);
  }
  return out === text ? null : Buffer.from(out, 'utf8');
}

async function streamed(chunks: readonly Buffer[], publicBase = pub): Promise<Buffer> {
  const s = rw.bodyRewriter(publicBase);
  const out: Buffer[] = [];
  s.on('data', (c: Buffer) => out.push(c));
  const ended = new Promise((r) => s.once('end', r));
  for (const c of chunks) s.write(c);
  s.end();
  await ended;
  return Buffer.concat(out);
}

const SAMPLE = Buffer.from(
  '{"a":"http://127.0.0.1:8042/dicom-web/studies/1.2","b":"http://localhost:8042/dicom-web2/x",' +
    '"c":"http://[::1]:8042/wado?requestType=WADO","d":"http://127.0.0.1:8042/dicom-web","e":"http://127.0.0.1:8042/wado.php",' +
    '"f":"http://other:8042/dicom-web/studies","g":"http://localhost:8042/dicom-web-old","h":"http://localhost:8042/dicom-web/bulk/7fe00010"}',
);

test('whole-body mapping keeps the semantics of the regex rewriter (exact roots, longest first, boundary rule)', () => {
  const pieces = [
    'http://127.0.0.1:8042/dicom-web',
    'http://localhost:8042/wado',
    'http://[::1]:8042/dicom-web',
    'http://127.0.0.1:8042/wado',
    'http://other:8042/dicom-web',
    '/studies/1.2',
    '?x=1',
    '2',
    '-old',
    '.php',
    '~',
    '%2F',
    '+',
    '_',
    '"',
    ',',
    ' ',
    'é',
    '<Value>',
    '</Value>',
    'http://127.0.0.1:8042/dicom-we',
  ];
  let seed = 12345;
  const rand = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  for (let i = 0; i < 3000; i++) {
    const body = Buffer.from(Array.from({ length: 1 + rand(12) }, () => pieces[rand(pieces.length)]).join(''));
    assert.deepEqual(rw.mapBody(body, pub), regexMapBody(body, pub), body.toString());
  }
  assert.deepEqual(rw.mapBody(SAMPLE, pub), regexMapBody(SAMPLE, pub));
});

test('streaming: a root split across two chunks at every offset maps as the whole body does', async () => {
  const whole = rw.mapBody(SAMPLE, pub)!;
  for (let i = 0; i <= SAMPLE.length; i++) {
    const out = await streamed([SAMPLE.subarray(0, i), SAMPLE.subarray(i)]);
    assert.equal(out.toString(), whole.toString(), `split at ${i}`);
  }
  // and one byte at a time
  assert.equal((await streamed([...SAMPLE].map((b) => Buffer.from([b])))).toString(), whole.toString());
});

test('streaming: the boundary byte may arrive in the next chunk, or never (a root that ends the body)', async () => {
  const root = 'http://127.0.0.1:8042/dicom-web';
  assert.equal((await streamed([Buffer.from(`"${root}`), Buffer.from('2/x"')])).toString(), `"${root}2/x"`);
  assert.equal((await streamed([Buffer.from(`"${root}`), Buffer.from('/x"')])).toString(), `"${pub}/dicom-web/x"`);
  assert.equal((await streamed([Buffer.from(`"${root}`)])).toString(), `"${pub}/dicom-web`);
  assert.equal((await streamed([Buffer.from(`"${root}`), Buffer.alloc(0), Buffer.from('-old"')])).toString(), `"${root}-old"`);
});

test('streaming: nothing held beyond one root, bytes that are not UTF-8 pass unchanged', async () => {
  const s = rw.bodyRewriter(pub);
  const seen: Buffer[] = [];
  s.on('data', (c: Buffer) => seen.push(c));
  const big = Buffer.alloc(1 << 20, 0x61);
  s.write(big);
  await new Promise((r) => setImmediate(r));
  // all but the possible start of a root already went out
  assert.ok(Buffer.concat(seen).length >= big.length - 'http://127.0.0.1:8042/dicom-web'.length);
  s.end();
  const invalid = Buffer.from([0xff, 0xfe, 0x22, ...Buffer.from('http://127.0.0.1:8042/wado'), 0xc3, 0x28]);
  const out = await streamed([invalid.subarray(0, 5), invalid.subarray(5)]);
  assert.deepEqual(out, Buffer.concat([Buffer.from([0xff, 0xfe, 0x22]), Buffer.from(`${pub}/wado`), Buffer.from([0xc3, 0x28])]));
});
