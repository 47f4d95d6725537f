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
