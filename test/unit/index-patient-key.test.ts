/** patientKey: a keyed hash that lets excludeSamePatient work without storing Patient IDs. */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { freshSecretProblem, loadPatientKeySecret, PATIENT_KEY_SECRET_FILE, patientKey } from '../../core/index/patient-key.js';
import { patientKeySecretAtStart } from '../../workers/worker-process.js';

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

test('a worker with no secret set or kept, whose index cannot be counted, does not start and writes no secret', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cbmir-pk-start-'));
  const file = join(dir, PATIENT_KEY_SECRET_FILE);
  const down = async (): Promise<number> => {
    throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9200'), { code: 'ECONNREFUSED' });
  };
  try {
    const r = await patientKeySecretAtStart(undefined, dir, down);
    assert.ok('problem' in r, 'refused');
    assert.match(
      r.problem,
      /CBMIR_PATIENT_KEY_SECRET is not set .* the index could not be counted \(connect ECONNREFUSED 127\.0\.0\.1:9200\)/,
    );
    assert.equal(r.exitCode, 1, 'a later start can succeed');
    assert.equal(existsSync(file), false, 'no secret made while the index is away');

    // It answers, and holds documents keyed with another secret: refused, as a configuration fault.
    const keyed = await patientKeySecretAtStart(undefined, dir, async () => 120);
    assert.ok('problem' in keyed && keyed.exitCode === 2 && /already holds 120 documents/.test(keyed.problem));
    assert.equal(existsSync(file), false);

    // It answers empty: the secret is made then, and kept.
    const fresh = await patientKeySecretAtStart(undefined, dir, async () => 0);
    assert.ok('secret' in fresh);
    assert.equal(readFileSync(file, 'utf8'), fresh.secret);
    // Kept or configured, the index is not asked at all (it may be down at this start).
    assert.deepEqual(await patientKeySecretAtStart(undefined, dir, down), { secret: fresh.secret });
    assert.deepEqual(await patientKeySecretAtStart('configured', join(dir, 'other'), down), { secret: 'configured' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
