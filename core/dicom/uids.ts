/**
 * Deterministic DICOM UIDs without a registered root (PS3.5 §B.2): "2.25." followed by
 * the decimal value of a UUID. We use name-based UUIDs (RFC 9562 version 5, SHA-1) in
 * a fixed project namespace, so the same dataset/patient/file always maps to the same
 * Study/Series/SOP Instance UID: re-running `cbmir load` re-sends the same instances
 * (the PACS and the index dedupe) instead of duplicating them.
 * A 128-bit value has at most 39 decimal digits, so every UID is ≤ 44 characters.
 */
import { createHash } from 'node:crypto';

/** The project's namespace UUID (chosen once, never change it: every loaded UID depends on it). */
export const CBMIR_UUID_NAMESPACE = '6f1c3a52-9d0e-4b8a-a3f1-5c2e7d90b4e1';

function uuidBytes(uuid: string): Buffer {
  const hex = uuid.replace(/-/g, '');
  if (!/^[0-9a-f]{32}$/i.test(hex)) throw new Error(`not a UUID: ${uuid}`);
  return Buffer.from(hex, 'hex');
}

const nsBytes = uuidBytes(CBMIR_UUID_NAMESPACE);

/** RFC 9562 version-5 UUID bytes of `name` in `namespace`. */
export function uuidV5Bytes(name: string, namespace: Buffer = nsBytes): Buffer {
  const digest = createHash('sha1').update(namespace).update(name, 'utf8').digest();
  const b = Buffer.from(digest.subarray(0, 16));
  b[6] = (b[6]! & 0x0f) | 0x50; // version 5
  b[8] = (b[8]! & 0x3f) | 0x80; // RFC variant
  return b;
}

/** "2.25.<decimal>" for a 16-byte UUID. */
export function uuidToOid(bytes: Buffer): string {
  if (bytes.length !== 16) throw new Error('UUID must be 16 bytes');
  return `2.25.${BigInt(`0x${bytes.toString('hex')}`).toString(10)}`;
}

/** Deterministic UID for a name; `parts` are joined unambiguously (length-prefixed). */
export function deterministicUid(...parts: string[]): string {
  const name = parts.map((p) => `${p.length}:${p}`).join('|');
  return uuidToOid(uuidV5Bytes(name));
}
