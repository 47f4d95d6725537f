import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DICOM_JSON, DICOM_MULTIPART, isWildcardAccept, negotiate, takeAcceptParam } from '../../gateway/accept.js';

test('the accept query parameter wins over the header and leaves the forwarded query', () => {
  assert.deepEqual(negotiate('rendered', 'multipart/related; type="image/jpeg"', 'accept=image%2Fjpeg&quality=90'), {
    accept: 'image/jpeg',
    query: 'quality=90',
  });
  assert.deepEqual(negotiate('rendered', 'image/png', 'quality=90&Accept=image/jpeg'), { accept: 'image/jpeg', query: 'quality=90' });
});

test('retrieve with no Accept or only */* asks for multipart DICOM', () => {
  for (const h of [undefined, '', '*/*', '*/*;q=0.8', '*/*, */*']) {
    assert.equal(negotiate('wado', h, '').accept, DICOM_MULTIPART, String(h));
  }
  assert.equal(negotiate('wado', 'multipart/related; type="application/dicom"; transfer-syntax=*', '').accept, undefined);
});

test('QIDO and metadata with no Accept or */* ask for DICOM JSON; other classes keep the header', () => {
  assert.equal(negotiate('qido', undefined, 'limit=1').accept, DICOM_JSON);
  assert.equal(negotiate('metadata', '*/*', '').accept, DICOM_JSON);
  assert.equal(negotiate('qido', 'application/dicom+xml', '').accept, undefined);
  assert.equal(negotiate('frames', '*/*', '').accept, undefined);
});

test('wildcard detection and parameter parsing', () => {
  assert.equal(isWildcardAccept('image/jpeg, */*'), false);
  assert.deepEqual(takeAcceptParam('a=1&b=2'), { accept: undefined, rest: 'a=1&b=2' });
  assert.throws(() => takeAcceptParam('accept=%E0%A4%A'), /percent-encoding/);
  // Form-encoded spaces (Python requests, URLSearchParams) beside ';' are spaces; a suffix '+' is not.
  assert.equal(
    takeAcceptParam('accept=multipart%2Frelated%3B+type%3D%22application%2Fdicom%22').accept,
    'multipart/related; type="application/dicom"',
  );
  assert.equal(takeAcceptParam('accept=application/dicom+json').accept, 'application/dicom+json');
  assert.equal(takeAcceptParam('accept=application%2Fdicom%2Bjson').accept, 'application/dicom+json');
});

test('form-encoded accept values join as before, in linear time (8 KiB of ";+" was ~100 ms of blocked event loop)', () => {
  // The earlier join, kept as the reference for its results.
  const reference = (parts: string[]) =>
    parts.reduce((acc, p) => acc + (/[;,]\s*$/.test(acc) || /^\s*[;,]/.test(p) ? ' ' : '+') + p).trim();
  let seed = 7;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  const alphabet = [';', ',', ' ', 'a', 'json', '%2B', '=', '"'];
  for (let i = 0; i < 2000; i++) {
    const parts = Array.from({ length: 1 + rand(6) }, () =>
      Array.from({ length: rand(4) }, () => alphabet[rand(alphabet.length)]).join(''),
    );
    const query = `accept=${parts.join('+')}`;
    const expected = reference(parts.map(decodeURIComponent));
    assert.equal(takeAcceptParam(query).accept, expected === '' ? undefined : expected, query);
  }
  // A quadratic join takes minutes on 1 MiB; a linear one milliseconds. The bound is far from both.
  const huge = `accept=${';+'.repeat(512 * 1024)}`;
  const t0 = performance.now();
  takeAcceptParam(huge);
  assert.ok(performance.now() - t0 < 5_000, `${Math.round(performance.now() - t0)} ms`);
});
