/**
 * Input checks shared by both backends, so both refuse the same things with the same
 * words: a malformed UID, a vector of the wrong length or with NaN, an absurd k.
 */
import { isValidUid } from '../errors.js';
import { IndexError } from './errors.js';
import { MAX_K, type KnnOptions, type VectorDoc } from './types.js';

/**
 * A model version as a storage-name component: lower case, [a-z0-9._-] only (other
 * characters become '-'), not starting with '-', '_' or '.'. Elasticsearch index names
 * must be lower case and may not contain , : " * + / \ | ? # > < or spaces.
 * Two versions that differ only in case or punctuation would collide: refuse them at
 * ensure() time rather than silently sharing storage (see assertVersionName).
 */
export function sanitiseVersion(modelVersion: string): string {
  return modelVersion
    .toLowerCase()
    .replace(/[^a-z0-9._-]/g, '-')
    .replace(/^[-_.]+/, '');
}

export function assertVersionName(modelVersion: string): string {
  if (typeof modelVersion !== 'string' || modelVersion.length === 0 || modelVersion.length > 100) {
    throw new IndexError('BAD_INPUT', 'model version must be a non-empty string of at most 100 characters');
  }
  const s = sanitiseVersion(modelVersion);
  if (!s) throw new IndexError('BAD_INPUT', `model version ${JSON.stringify(modelVersion)} has no usable characters`);
  return s;
}

export function assertDims(dims: number): void {
  if (!Number.isInteger(dims) || dims < 1 || dims > 4096) {
    throw new IndexError('BAD_INPUT', `dims must be an integer in 1…4096 (Elasticsearch's dense_vector limit), got ${dims}`);
  }
}

/** Copy a vector into a Float32Array after checking its length and that every value is finite. */
export function toVector(v: Float32Array | readonly number[], dims: number, what = 'vector'): Float32Array {
  if (!(v instanceof Float32Array) && !Array.isArray(v)) throw new IndexError('BAD_INPUT', `${what} must be an array of numbers`);
  if (v.length !== dims) throw new IndexError('DIMS_MISMATCH', `${what} has ${v.length} dimensions, the index has ${dims}`);
  const out = Float32Array.from(v as ArrayLike<number>);
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i])) throw new IndexError('BAD_INPUT', `${what}[${i}] is not a finite number`);
  }
  return out;
}

/** Longest modality, body part, label or patient key a document may carry. */
export const MAX_TEXT_FIELD = 256;

/** Check one document's identity fields; returns a human reason or undefined when fine. */
export function docProblem(doc: VectorDoc, dims: number, modelVersion: string): string | undefined {
  if (!isValidUid(doc.sopInstanceUid)) return 'sopInstanceUid is not a DICOM UID';
  if (!isValidUid(doc.studyInstanceUid)) return 'studyInstanceUid is not a DICOM UID';
  if (!isValidUid(doc.seriesInstanceUid)) return 'seriesInstanceUid is not a DICOM UID';
  if (doc.sopClassUid !== undefined && !isValidUid(doc.sopClassUid)) return 'sopClassUid is not a DICOM UID';
  if (doc.modelVersion !== modelVersion) return `modelVersion ${doc.modelVersion} does not match the index version ${modelVersion}`;
  if (doc.frame !== undefined && (!Number.isInteger(doc.frame) || doc.frame < 0)) return 'frame must be a non-negative integer';
  if (Number.isNaN(Date.parse(doc.indexedAt))) return 'indexedAt is not an ISO 8601 time';
  for (const k of ['modality', 'bodyPartExamined', 'label', 'patientKey'] as const) {
    const v = doc[k];
    if (v !== undefined && (typeof v !== 'string' || v.length > MAX_TEXT_FIELD)) return `${k} must be a string of at most ${MAX_TEXT_FIELD} characters`;
  }
  try {
    toVector(doc.vector, dims);
  } catch (err) {
    return (err as Error).message;
  }
  return undefined;
}

export function assertK(opts: KnnOptions): number {
  const k = opts.k;
  if (!Number.isInteger(k) || k < 1 || k > MAX_K) throw new IndexError('BAD_INPUT', `k must be an integer in 1…${MAX_K}, got ${k}`);
  if (opts.numCandidates !== undefined && (!Number.isInteger(opts.numCandidates) || opts.numCandidates < k || opts.numCandidates > 10_000)) {
    throw new IndexError('BAD_INPUT', `numCandidates must be an integer in k…10000, got ${opts.numCandidates}`);
  }
  return k;
}

/** A filter value given as one string or a list, as a list (empty = no constraint). */
export function asList(v: string | readonly string[] | undefined): readonly string[] {
  if (v === undefined) return [];
  return typeof v === 'string' ? [v] : v;
}
