/**
 * The query string of QIDO `GET /similar-to/{sop}/dicom-web/studies` (PS3.18 §10.6.1.2),
 * split into what the gateway does itself and what the PACS is asked.
 *
 *   parameter                      handled by   how
 *   limit, offset                  gateway      paging over the ranked list (rank order); 400 unless a
 *                                               non-negative integer (limit 0 = no limit)
 *   StudyInstanceUID / 0020000D    gateway      intersected with the similar studies (a viewer opening a
 *                                               study asks for it by UID); comma-separated UIDs, 400 if malformed
 *   includefield                   PACS         all values joined with a literal "," (see pacs-quirks.ts)
 *   accept                         —            dropped: the answer is always application/dicom+json (one that
 *                                               rules it out, as the Accept header can, is 406: acceptsDicomJson)
 *   anything else (PatientName,    PACS         passed on as given (matching is the PACS's: the virtual root
 *   StudyDate, fuzzymatching …)                 lists the similar studies that also match the viewer's filters)
 *
 * The PACS query is rebuilt from decoded values (each re-encoded with
 * encodeURIComponent), never spliced from the raw string.
 */
import { HttpProblem, isValidUid } from '../core/errors.js';

export interface VirtualStudyQuery {
  /** Page size; undefined = all. */
  readonly limit: number | undefined;
  readonly offset: number;
  /** The viewer's StudyInstanceUID match, if any. */
  readonly studyUids: ReadonlySet<string> | undefined;
  /** includefield values (tags or keywords, or "all"), in order, without duplicates. */
  readonly includeFields: readonly string[];
  /** Other match/option parameters for the PACS, decoded, in order. */
  readonly pass: ReadonlyArray<readonly [string, string]>;
}

const INT_RE = /^[0-9]{1,9}$/;
const STUDY_UID_KEYS = new Set(['StudyInstanceUID', '0020000D', '0020000d']);

function nonNegative(name: string, v: string): number {
  if (!INT_RE.test(v)) throw new HttpProblem('BAD_PARAM', `${name} must be a non-negative integer`);
  return Number(v);
}

export function parseVirtualStudyQuery(query: string): VirtualStudyQuery {
  const q = new URLSearchParams(query);
  let limit: number | undefined;
  let offset = 0;
  let studyUids: Set<string> | undefined;
  const include = new Set<string>();
  const pass: [string, string][] = [];
  for (const [k, v] of q) {
    if (k === 'limit') {
      const n = nonNegative('limit', v);
      limit = n === 0 ? undefined : n;
    } else if (k === 'offset') {
      offset = nonNegative('offset', v);
    } else if (STUDY_UID_KEYS.has(k)) {
      const uids = v.split(/[,\\]/).filter((u) => u !== '');
      if (uids.length === 0) continue; // an empty value is universal matching (PS3.18 §8.3.4.1), not "no study"
      for (const u of uids)
        if (!isValidUid(u)) throw new HttpProblem('BAD_UID', 'StudyInstanceUID must be DICOM UIDs (digits and dots), comma-separated');
      // Repeated: a study must match every occurrence (QIDO keys combine with AND).
      studyUids = studyUids ? new Set(uids.filter((u) => studyUids!.has(u))) : new Set(uids);
    } else if (k.toLowerCase() === 'includefield') {
      for (const f of v.split(',')) if (f.trim() !== '') include.add(f.trim());
    } else if (k === 'accept') {
      continue;
    } else {
      pass.push([k, v]);
    }
  }
  return { limit, offset, studyUids, includeFields: [...include], pass };
}

/** Query string for the PACS: the given studies by UID list, the viewer's includefield and filters. */
export function pacsStudyQuery(studies: readonly string[], q: VirtualStudyQuery): string {
  const parts = [`StudyInstanceUID=${studies.join(',')}`, `limit=${studies.length}`];
  if (q.includeFields.length) parts.push(`includefield=${q.includeFields.map(encodeURIComponent).join(',')}`);
  for (const [k, v] of q.pass) parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  return parts.join('&');
}

/** Media ranges a study search can be answered in: DICOM JSON, JSON (which it also is), or a wildcard. */
const JSON_RANGES = new Set(['application/dicom+json', 'application/json', 'application/*', '*/*']);

/**
 * Whether `accept` (the `accept` parameter, else the Accept header) lets the answer be DICOM JSON.
 * A viewer that asks for XML only must get 406 (PS3.18 §8.3.3), not JSON it cannot parse.
 */
export function acceptsDicomJson(accept: string | undefined): boolean {
  if (accept === undefined || accept.trim() === '') return true;
  return accept.split(',').some((range) => {
    const [type = '', ...params] = range.split(';').map((s) => s.trim().toLowerCase());
    const q = params.find((p) => /^q\s*=/.test(p));
    return JSON_RANGES.has(type) && (q === undefined || Number(q.slice(q.indexOf('=') + 1)) > 0);
  });
}
