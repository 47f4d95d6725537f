import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpProblem } from '../../core/errors.js';
import { guardTarget } from '../../gateway/path-guard.js';

const code = (url: string): string => {
  try {
    guardTarget(url, 1024);
    return 'ok';
  } catch (e) {
    assert.ok(e instanceof HttpProblem);
    return e.code;
  }
};

test('DICOMweb targets are split into segments, query kept verbatim', () => {
  assert.deepEqual(guardTarget('/dicom-web/studies/1.2.3/series?PatientName=Doe%5EJ*&limit=5', 1024), {
    kind: 'dicomweb',
    segments: ['studies', '1.2.3', 'series'],
    query: 'PatientName=Doe%5EJ*&limit=5',
  });
  assert.deepEqual(guardTarget('/dicom-web', 1024), { kind: 'dicomweb', segments: [], query: '' });
  assert.deepEqual(guardTarget('/dicom-web/studies/', 1024), { kind: 'dicomweb', segments: ['studies'], query: '' });
});

test('an encoded comma in a frame list is accepted as a comma', () => {
  const t = guardTarget('/dicom-web/studies/1/series/2/instances/3/frames/1%2C2', 1024);
  assert.equal(t.kind, 'dicomweb');
  assert.deepEqual(t.kind === 'dicomweb' && t.segments.at(-1), '1,2');
});

test('a _method query parameter (read by Orthanc as the HTTP method) is refused under every PACS root, however spelled', () => {
  for (const url of [
    '/dicom-web/studies/1.2.3?_method=DELETE',
    '/dicom-web/studies/1.2.3?limit=1&_method=delete',
    '/dicom-web/studies?%5Fmethod=DELETE',
    '/dicom-web/studies?_%6Dethod=PUT',
    '/dicom-web/studies?_METHOD=DELETE',
    '/dicom-web/studies?_method',
    '/dicom-web/studies/1/series/2/instances/3/thumbnail?_method=delete',
    '/wado?requestType=WADO&_method=DELETE',
    '/similar-to/1.2.3/dicom-web/studies?_method=DELETE',
    '/similar-to/1.2.3/wado?_method=DELETE',
  ])
    assert.equal(code(url), 'BAD_PARAM', url);
  // Names that merely contain it, and values, are not method overrides.
  for (const url of ['/dicom-web/studies?x_method=1', '/dicom-web/studies?PatientName=_method', '/dicom-web/studies?StudyDescription=a_b'])
    assert.equal(code(url), 'ok', url);
});

test('WADO-URI root and other paths are classified', () => {
  assert.equal(guardTarget('/wado?requestType=WADO', 1024).kind, 'wado-uri');
  assert.deepEqual(guardTarget('/similar?k=5', 1024), { kind: 'other', path: '/similar', query: 'k=5' });
});

test('every traversal spelling is BAD_PATH', () => {
  for (const u of [
    '/dicom-web/../system',
    '/dicom-web/%2e%2e/system',
    '/dicom-web/%2E./system',
    '/dicom-web/..%2fsystem',
    '/dicom-web/studies%2F1',
    '/dicom-web/%252e%252e',
    '/dicom-web\\studies',
    '/dicom-web/%5cstudies',
    '/dicom-web//studies',
    '/dicom-web/./studies',
    '/dicom-webX',
    '/dicom-web.',
    '/wado/x',
    '/wadoo',
    'http://127.0.0.1:8042/system',
    '*',
    '/ui/../../etc/passwd',
    '/dicom-web/studies/1.2%00',
    '/dicom-web/studies/1 2',
    '/dicom-web/studies/ü',
  ]) {
    assert.equal(code(u), 'BAD_PATH', u);
  }
});

test('a percent-escape that does not decode is BAD_PATH on every route; well-formed ones pass', () => {
  for (const u of ['/studies/%ZZ/series/1.2/instances/1.3/similar', '/ui/%ZZ', '/ui/%C0%AF', '/ui/%', '/ui/a%4', '/similar/%E9']) {
    assert.equal(code(u), 'BAD_PATH', u);
  }
  assert.deepEqual(guardTarget('/ui/caf%C3%A9?q=%ZZ', 1024), { kind: 'other', path: '/ui/caf%C3%A9', query: 'q=%ZZ' });
});

test('query strings are bounded', () => {
  assert.equal(code(`/dicom-web/studies?${'a'.repeat(1025)}`), 'BAD_PARAM');
  assert.equal(code(`/dicom-web/studies?${'a'.repeat(1024)}`), 'ok');
});
