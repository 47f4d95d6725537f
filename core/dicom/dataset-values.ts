/**
 * Typed reads from a dcmjs "denaturalized" dataset (tag "GGGGEEEE" → {vr, Value}).
 * Values in files we did not write can be anything (wrong VR, UN bytes from implicit
 * VR private tags, empty arrays): every reader here returns undefined rather than throw.
 */
import type { DcmDataset } from 'dcmjs';

export function element(ds: DcmDataset | undefined, tag: string): { vr: string; Value?: unknown[] } | undefined {
  return ds?.[tag];
}

export function firstValue(ds: DcmDataset | undefined, tag: string): unknown {
  const v = ds?.[tag]?.Value;
  return Array.isArray(v) ? v[0] : undefined;
}

/** A string value; UN/OB bytes (implicit-VR private tags) are read as ASCII. */
export function str(ds: DcmDataset | undefined, tag: string): string | undefined {
  const v = firstValue(ds, tag);
  if (typeof v === 'string') return v.replace(/[\0 ]+$/, '').trim() || undefined;
  if (typeof v === 'number') return String(v);
  if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) {
    const u8 = v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    return Buffer.from(u8).toString('latin1').replace(/[\0 ]+$/, '').trim() || undefined;
  }
  return undefined;
}

/** A numeric value (US/SS/IS/DS/…); strings are parsed; NaN → undefined. */
export function num(ds: DcmDataset | undefined, tag: string, index = 0): number | undefined {
  const arr = ds?.[tag]?.Value;
  if (!Array.isArray(arr)) return undefined;
  const v = arr[index];
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : undefined;
}

export function nums(ds: DcmDataset | undefined, tag: string): number[] | undefined {
  const arr = ds?.[tag]?.Value;
  if (!Array.isArray(arr) || arr.length === 0) return undefined;
  const out = arr.map((v) => (typeof v === 'number' ? v : Number(v)));
  return out.every(Number.isFinite) ? out : undefined;
}

/** Items of a sequence (SQ) element. */
export function items(ds: DcmDataset | undefined, tag: string): DcmDataset[] {
  const arr = ds?.[tag]?.Value;
  return Array.isArray(arr) ? (arr.filter((x) => x !== null && typeof x === 'object' && !ArrayBuffer.isView(x) && !(x instanceof ArrayBuffer)) as DcmDataset[]) : [];
}

/** Raw bytes of an OB/OW/UN element (first buffer), or undefined. */
export function bytes(ds: DcmDataset | undefined, tag: string): Uint8Array | undefined {
  const v = firstValue(ds, tag);
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return undefined;
}
