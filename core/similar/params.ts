/**
 * /similar query parameters (docs/api.md "/similar"): parsed strictly, every
 * problem answered with a 400 problem body that names the parameter.
 *
 *   name                 values                              default
 *   StudyInstanceUID     UID (by-UIDs form of GET /similar)  —
 *   SeriesInstanceUID    UID                                 —
 *   SOPInstanceUID       UID                                 —
 *   limit                integer 1 … 100                     10 (or the maximum, when lower)
 *                        (up to CBMIR_SIMILAR_MAX_LIMIT ≤ 10000 when configured: evaluation reads full rankings)
 *   groupBy              instance | series | study           instance
 *   excludeSameStudy     true | false | 1 | 0                true
 *   excludeSamePatient   true | false | 1 | 0                true
 *   Modality             CS value(s), comma-separated or repeated (≤ 16 values)
 *   BodyPartExamined     CS value(s), likewise
 *
 * Unknown parameters are refused (400), not ignored: a typo such as
 * `excludeSamePatients=false` would otherwise silently change nothing, and a
 * radiologist would trust an answer that does not do what was asked.
 */
import { HttpProblem, isValidUid } from '../errors.js';

export type GroupBy = 'instance' | 'series' | 'study';

export interface SimilarParams {
  readonly limit: number;
  readonly groupBy: GroupBy;
  readonly excludeSameStudy: boolean;
  readonly excludeSamePatient: boolean;
  readonly modality?: readonly string[];
  readonly bodyPartExamined?: readonly string[];
}

export interface InstanceUids {
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopInstanceUid: string;
}

export const DEFAULT_LIMIT = 10;
export const MAX_LIMIT = 100;
const MAX_FILTER_VALUES = 16;
/** DICOM CS: upper-case letters, digits, space and underscore, ≤ 16 characters (PS3.5 §6.2). */
const CS_RE = /^[A-Z0-9 _]{1,16}$/;

const UID_PARAMS = ['StudyInstanceUID', 'SeriesInstanceUID', 'SOPInstanceUID'] as const;
const OPTION_PARAMS = ['limit', 'groupBy', 'excludeSameStudy', 'excludeSamePatient', 'Modality', 'BodyPartExamined'] as const;

function bad(detail: string): HttpProblem {
  return new HttpProblem('BAD_PARAM', detail);
}

/** The single value of a parameter; repeated → 400 (which one would we pick?). */
function single(q: URLSearchParams, name: string): string | undefined {
  const all = q.getAll(name);
  if (all.length > 1) throw bad(`${name} given ${all.length} times; give it once`);
  return all[0];
}

function parseBool(name: string, v: string | undefined, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  const s = v.toLowerCase();
  if (s === 'true' || s === '1') return true;
  if (s === 'false' || s === '0') return false;
  throw bad(`${name} must be true or false`);
}

function parseLimit(v: string | undefined, max: number): number {
  // A deployment that bounds a search below the default bounds the default too.
  if (v === undefined) return Math.min(DEFAULT_LIMIT, max);
  if (!/^[0-9]{1,6}$/.test(v)) throw bad(`limit must be an integer from 1 to ${max}`);
  const n = Number(v);
  if (n < 1 || n > max) throw bad(`limit must be an integer from 1 to ${max}`);
  return n;
}

function parseCsList(q: URLSearchParams, name: string): string[] | undefined {
  const raw = q.getAll(name);
  if (raw.length === 0) return undefined;
  // Code strings are upper case; the index stores them so (workers/index-worker.ts toDoc), and
  // "Brain" as written in many archives' BodyPartExamined matches BRAIN.
  const values = raw.flatMap((r) => r.split(',')).map((s) => s.trim().toUpperCase());
  if (values.length > MAX_FILTER_VALUES) throw bad(`${name}: at most ${MAX_FILTER_VALUES} values`);
  for (const v of values)
    if (!CS_RE.test(v)) throw bad(`${name} values are DICOM code strings (A-Z, 0-9, space, _; at most 16 characters)`);
  return [...new Set(values)];
}

/**
 * Parse the options of any /similar request. `allowUids` says whether the three
 * UID parameters are accepted here (GET /similar) or would be unknown (the
 * path form and POST, where they would contradict the path or the upload).
 */
export function parseSimilarParams(q: URLSearchParams, opts: { allowUids: boolean; maxLimit?: number }): SimilarParams {
  const known = new Set<string>([...OPTION_PARAMS, ...(opts.allowUids ? UID_PARAMS : [])]);
  const unknown = [...new Set(q.keys())].filter((k) => !known.has(k));
  if (unknown.length) {
    throw bad(
      `unknown parameter${unknown.length > 1 ? 's' : ''} ${unknown.map((u) => JSON.stringify(u.slice(0, 64))).join(', ')}; known: ${[...known].join(', ')}`,
    );
  }
  const groupBy = single(q, 'groupBy') ?? 'instance';
  if (groupBy !== 'instance' && groupBy !== 'series' && groupBy !== 'study') throw bad('groupBy must be instance, series or study');
  const modality = parseCsList(q, 'Modality');
  const bodyPartExamined = parseCsList(q, 'BodyPartExamined');
  return {
    limit: parseLimit(single(q, 'limit'), opts.maxLimit ?? MAX_LIMIT),
    groupBy,
    excludeSameStudy: parseBool('excludeSameStudy', single(q, 'excludeSameStudy'), true),
    excludeSamePatient: parseBool('excludeSamePatient', single(q, 'excludeSamePatient'), true),
    ...(modality ? { modality } : {}),
    ...(bodyPartExamined ? { bodyPartExamined } : {}),
  };
}

/** The three UIDs of GET /similar?StudyInstanceUID=…; each required, each a valid UID. */
export function parseQueryUids(q: URLSearchParams): InstanceUids {
  const get = (name: (typeof UID_PARAMS)[number]): string => {
    const v = single(q, name);
    if (v === undefined || v === '') throw bad(`${name} is required (or POST a DICOM instance to /similar)`);
    if (!isValidUid(v)) throw new HttpProblem('BAD_UID', `${name} must be a DICOM UID (digits and dots, at most 64 characters)`);
    return v;
  };
  return {
    studyInstanceUid: get('StudyInstanceUID'),
    seriesInstanceUid: get('SeriesInstanceUID'),
    sopInstanceUid: get('SOPInstanceUID'),
  };
}

/** The three UIDs of the path form /studies/{s}/series/{se}/instances/{i}/similar. */
export function pathUids(study: string, series: string, sop: string): InstanceUids {
  const check = (name: string, v: string): string => {
    if (!isValidUid(v))
      throw new HttpProblem('BAD_UID', `${name} UID in the path must be a DICOM UID (digits and dots, at most 64 characters)`);
    return v;
  };
  return {
    studyInstanceUid: check('study', study),
    seriesInstanceUid: check('series', series),
    sopInstanceUid: check('instance', sop),
  };
}
