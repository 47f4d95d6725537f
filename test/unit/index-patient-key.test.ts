/** patientKey: a keyed hash that lets excludeSamePatient work without storing Patient IDs. */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { freshSecretProblem, loadPatientKeySecret, PATIENT_KEY_SECRET_FILE, patientKey } from '../../core/index/patient-key.js';

const dir = mkdtempSync(join(tmpdir(), 'cbmir-pk-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('patientKey is HMAC-SHA256(secret, issuer NUL id), 32 hex chars, and never contains the ID', () => {
  const key = patientKey('s3cret', '100360', 'HOSP');
  const want = createHmac('sha256', 's3cret').update('HOSP\u0000100360').digest('hex').slice(0, 32);
  assert.equal(key, want);
  assert.match(key!, /^[0-9a-f]{32}$/);
  assert.ok(!key!.includes('100360'));
});

test('patientKey: same patient same key; another secret, issuer or ID gives another key', () => {
  assert.equal(patientKey('a', 'P1'), patientKey('a', ' P1 '), 'DICOM pads values with spaces');
  assert.notEqual(patientKey('a', 'P1'), patientKey('b', 'P1'));
  assert.notEqual(patientKey('a', 'P1'), patientKey('a', 'P2'));
  assert.notEqual(patientKey('a', 'P1', 'X'), patientKey('a', 'P1', 'Y'));
  // The separator keeps (issuer "A", id "BC") apart from (issuer "AB", id "C").
  assert.notEqual(patientKey('a', 'BC', 'A'), patientKey('a', 'C', 'AB'));
});

test('patientKey is undefined without a Patient ID (nothing to exclude by)', () => {
  assert.equal(patientKey('a', undefined), undefined);
  assert.equal(patientKey('a', '   '), undefined);
});

test('loadPatientKeySecret: the configured secret wins; otherwise one is generated once, private, and reused', () => {
  assert.equal(loadPatientKeySecret('configured', dir), 'configured');
  const sub = join(dir, 'data');
  const first = loadPatientKeySecret(undefined, sub);
  assert.match(first, /^[0-9a-f]{64}$/);
  assert.equal(statSync(join(sub, PATIENT_KEY_SECRET_FILE)).mode & 0o777, 0o600);
  assert.equal(loadPatientKeySecret(undefined, sub), first, 'a restart keeps the same keys');
  assert.equal(readFileSync(join(sub, PATIENT_KEY_SECRET_FILE), 'utf8'), first);
});

test('patientKey: a process that would generate a secret over an index keyed with another one is stopped, naming the settings', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cbmir-pk-fresh-'));
  try {
    assert.equal(freshSecretProblem(undefined, dir, 0), undefined, 'an empty index: a new secret is fine');
    assert.equal(freshSecretProblem('configured', dir, 120), undefined);
    assert.match(freshSecretProblem(undefined, dir, 120) ?? '', /CBMIR_PATIENT_KEY_SECRET is not set .* already holds 120 documents/);
    loadPatientKeySecret(undefined, dir); // the secret kept with the data: the same as before
    assert.equal(freshSecretProblem(undefined, dir, 120), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
