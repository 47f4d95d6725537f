/**
 * patientKey: lets /similar exclude the query patient's own images without the index
 * ever holding a Patient ID.
 *
 * patientKey = hex(HMAC-SHA256(secret, IssuerOfPatientID ‖ 0x00 ‖ PatientID))[0:32]
 *
 * Why a keyed hash and not a plain salted hash: Patient IDs have little entropy (often
 * 6–10 digits), so anyone holding the index and a public salt could hash every possible
 * ID in minutes. With a secret key (CBMIR_PATIENT_KEY_SECRET, or a random one generated
 * once and kept in the data directory with mode 0600; see loadPatientKeySecret) the keys are unlinkable to IDs
 * for anyone without the secret. Every worker that writes one index must use the same
 * secret, otherwise the same patient gets different keys (set the env var on clusters).
 * 128 bits of output is plenty to make accidental collisions impossible in practice.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const PATIENT_KEY_SECRET_FILE = 'patient-key.secret';

/** Compute the key; undefined when the instance has no Patient ID (nothing to exclude by). */
export function patientKey(secret: string | Buffer, patientId: string | undefined, issuer = ''): string | undefined {
  const id = patientId?.trim();
  if (!id) return undefined;
  return createHmac('sha256', secret).update(`${issuer.trim()}\u0000${id}`, 'utf8').digest('hex').slice(0, 32);
}

/**
 * Why a process that writes the index must not start: no secret is configured or kept in its
 * data directory, so it would generate a new one, yet the index already holds documents keyed
 * with another (a worker or `cbmir reindex` on another machine or in another directory). Its
 * keys would never match theirs, and excludeSamePatient would silently let a patient's own
 * images through.
 */
export function freshSecretProblem(configured: string | undefined, dataDir: string, indexedDocuments: number): string | undefined {
  if (configured || indexedDocuments === 0) return undefined;
  const file = join(dataDir, PATIENT_KEY_SECRET_FILE);
  if (existsSync(file)) return undefined;
  return (
    `CBMIR_PATIENT_KEY_SECRET is not set and ${file} does not exist, but the index already holds ${indexedDocuments} documents ` +
    'keyed with a patient-key secret: a new one would make excludeSamePatient miss patients across them. Set CBMIR_PATIENT_KEY_SECRET, ' +
    'or CBMIR_DATA_DIR to the directory of the processes that wrote the index (its patient-key.secret)'
  );
}

/**
 * The secret: the configured one, else the one kept in dataDir, else a new random one
 * written there (mode 0600, created exclusively so two processes starting at once agree).
 */
export function loadPatientKeySecret(configured: string | undefined, dataDir: string): string {
  if (configured) return configured;
  const file = join(dataDir, PATIENT_KEY_SECRET_FILE);
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  mkdirSync(dataDir, { recursive: true });
  // Write a private temp file, then hard-link it into place: link() is atomic and fails
  // if the name exists, so a reader never sees a half-written secret and two processes
  // starting at once end up with the same one.
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  writeFileSync(tmp, randomBytes(32).toString('hex'), { mode: 0o600, flag: 'wx' });
  try {
    linkSync(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // another process won the race: use its secret
  } finally {
    unlinkSync(tmp);
  }
  return readFileSync(file, 'utf8').trim();
}
