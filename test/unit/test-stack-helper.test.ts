import assert from 'node:assert/strict';
import test from 'node:test';

import { orthancAuthHeader, readTestStack, TestStackMissingError } from '../helpers/stack.js';

const env = {
  CBMIR_TEST_ORTHANC_URL: 'http://127.0.0.1:18042/',
  CBMIR_TEST_ORTHANC_DICOM_PORT: '14242',
  CBMIR_TEST_ORTHANC_AUTH_URL: 'http://127.0.0.1:18043',
  CBMIR_TEST_ORTHANC_AUTH: 'alice:pa:ss',
  CBMIR_TEST_REDIS_URL: 'redis://127.0.0.1:16379',
  CBMIR_TEST_ES_URL: 'http://127.0.0.1:19200',
};

test('readTestStack derives the DICOMweb roots and splits the credentials at the first colon', () => {
  const s = readTestStack(env);
  assert.equal(s.orthancUrl, 'http://127.0.0.1:18042');
  assert.equal(s.orthancDicomWebUrl, 'http://127.0.0.1:18042/dicom-web');
  assert.equal(s.orthancAuthDicomWebUrl, 'http://127.0.0.1:18043/dicom-web');
  assert.equal(s.orthancDicomPort, 14242);
  assert.equal(s.orthancAet, 'ORTHANC');
  assert.deepEqual(s.orthancAuth, { user: 'alice', password: 'pa:ss' });
  assert.equal(orthancAuthHeader(s.orthancAuth), `Basic ${Buffer.from('alice:pa:ss').toString('base64')}`);
});

test('a missing variable names itself and says to use npm test', () => {
  const { CBMIR_TEST_ES_URL: _omitted, ...partial } = env;
  assert.throws(
    () => readTestStack(partial),
    (e: unknown) => e instanceof TestStackMissingError && e.variable === 'CBMIR_TEST_ES_URL' && /npm test/.test(e.message),
  );
});

test('malformed credentials and ports are rejected', () => {
  assert.throws(() => readTestStack({ ...env, CBMIR_TEST_ORTHANC_AUTH: 'nocolon' }), /CBMIR_TEST_ORTHANC_AUTH/);
  assert.throws(() => readTestStack({ ...env, CBMIR_TEST_ORTHANC_DICOM_PORT: '99999' }), /CBMIR_TEST_ORTHANC_DICOM_PORT/);
});
