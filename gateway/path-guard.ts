/**
 * Request-target guard: runs on the raw URL before any routing, so that no
 * spelling of a path can climb out of the DICOMweb root into the PACS's other
 * APIs (Orthanc's REST API, with DELETE, sits beside /dicom-web).
 *
 * We never decode-and-normalise (that is how traversal bugs are born); we
 * refuse anything a well-behaved DICOMweb client does not send:
 *   - absolute-form or non-"/" targets, backslashes, empty segments ("//"),
 *     dot segments ("." / ".."), in any percent-encoding;
 *   - percent-encoded "/", "\", "." and "%" (%2F %5C %2E %25) and NUL;
 *   - malformed percent-escapes (%ZZ, a lone %, bytes that are not UTF-8);
 *   - under the DICOMweb and WADO-URI roots: any character outside
 *     [A-Za-z0-9.,-] (UIDs, keywords, frame lists, bulk tags), except %2C
 *     for an encoded comma in a frame list;
 *   - "/dicom-webX", "/wado/x"-style near-misses of the two roots.
 * Virtual roots (virtual-root.ts), /similar-to/{SOPInstanceUID}/dicom-web/… and
 * …/wado, pass the same checks: the generic ones above on the whole path, then
 * the UID, then the root rules on what follows it. They are tagged with the
 * query instance (`virtualSop`) and otherwise routed exactly like the real roots.
 * Query strings are bounded in length and passed on verbatim, except that a `_method`
 * parameter is refused under the roots: Orthanc (and Rails-style servers) read
 * `GET …?_method=DELETE` as a DELETE, which would step past the route table's methods.
 */
import { HttpProblem, isValidUid } from '../core/errors.js';

export const DICOMWEB_ROOT = '/dicom-web';
export const WADO_URI_ROOT = '/wado';
/** Prefix of the per-query virtual DICOMweb roots: /similar-to/{SOPInstanceUID}/dicom-web. */
export const SIMILAR_TO_ROOT = '/similar-to';

export type GuardedTarget =
  | { readonly kind: 'dicomweb'; readonly segments: readonly string[]; readonly query: string; readonly virtualSop?: string }
  | { readonly kind: 'wado-uri'; readonly query: string; readonly virtualSop?: string }
  | { readonly kind: 'other'; readonly path: string; readonly query: string };

const FORBIDDEN_ENCODED_RE = /%(?:2f|5c|2e|25|00)/i;
const GENERIC_PATH_RE = /^[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/;
const DICOMWEB_SEGMENT_RE = /^[A-Za-z0-9.,-]+$/;

/** Classify and validate a raw request target; throws HttpProblem BAD_PATH on anything suspicious. */
export function guardTarget(rawUrl: string, maxQueryBytes: number): GuardedTarget {
  if (rawUrl.length === 0 || rawUrl.charCodeAt(0) !== 47 /* / */) throw bad('request target must be an absolute path');
  const q = rawUrl.indexOf('?');
  const path = q === -1 ? rawUrl : rawUrl.slice(0, q);
  const query = q === -1 ? '' : rawUrl.slice(q + 1);
  if (query.length > maxQueryBytes) throw new HttpProblem('BAD_PARAM', `query string longer than ${maxQueryBytes} bytes`);
  if (path.includes('\\')) throw bad('backslashes are not allowed in paths');
  if (FORBIDDEN_ENCODED_RE.test(path)) throw bad('encoded "/", "\\", "." or "%" are not allowed in paths');
  if (!GENERIC_PATH_RE.test(path)) throw bad('path contains characters that need no use here');
  // Routers decode path parameters; an escape that does not decode must be the client's 400, not their 500.
  if (path.includes('%') && !decodes(path)) throw bad('malformed percent-escape in the path');
  if (path.length > 1 && path.includes('//')) throw bad('empty path segments are not allowed');
  for (const seg of path.split('/')) if (seg === '.' || seg === '..') throw bad('dot segments are not allowed');

  if (path.startsWith(SIMILAR_TO_ROOT)) {
    if (path.length > SIMILAR_TO_ROOT.length && path.charCodeAt(SIMILAR_TO_ROOT.length) !== 47)
      throw bad(`unknown root (did you mean ${SIMILAR_TO_ROOT}/{SOPInstanceUID}${DICOMWEB_ROOT}/…?)`);
    const rest = path.slice(SIMILAR_TO_ROOT.length + 1);
    const slash = rest.indexOf('/');
    const sop = slash === -1 ? rest : rest.slice(0, slash);
    if (!isValidUid(sop)) throw new HttpProblem('BAD_UID', 'SOP Instance UID must be digits and dots, at most 64 characters');
    const inner = classifyRoot(slash === -1 ? '' : rest.slice(slash), query);
    if (inner.kind === 'other') throw new HttpProblem('NOT_FOUND', `a virtual root serves ${DICOMWEB_ROOT}/… and ${WADO_URI_ROOT} only`);
    return { ...inner, virtualSop: sop };
  }
  return classifyRoot(path, query);
}

/** The DICOMweb and WADO-URI roots (and their near-misses); anything else is "other". */
function classifyRoot(path: string, query: string): GuardedTarget {
  if (path === DICOMWEB_ROOT || path.startsWith(DICOMWEB_ROOT)) {
    if (path.length > DICOMWEB_ROOT.length && path.charCodeAt(DICOMWEB_ROOT.length) !== 47)
      throw bad(`unknown root (did you mean ${DICOMWEB_ROOT}/…?)`);
    const rest = path.slice(DICOMWEB_ROOT.length + 1).replace(/%2c/gi, ',');
    const segments = rest.length ? rest.replace(/\/$/, '').split('/') : [];
    for (const s of segments)
      if (!DICOMWEB_SEGMENT_RE.test(s)) throw bad('DICOMweb path segments are UIDs, keywords, frame lists or bulk tags');
    refuseMethodOverride(query);
    return { kind: 'dicomweb', segments, query };
  }
  if (path === WADO_URI_ROOT || path === `${WADO_URI_ROOT}/`) {
    refuseMethodOverride(query);
    return { kind: 'wado-uri', query };
  }
  if (path.startsWith(WADO_URI_ROOT)) throw bad(`WADO-URI is served at ${WADO_URI_ROOT} only`);
  return { kind: 'other', path, query };
}

/** A `_method` query parameter, however spelled (`%5Fmethod`, `_METHOD`), is the client's 400. */
function refuseMethodOverride(query: string): void {
  if (!/_|%5f/i.test(query)) return;
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    const raw = eq === -1 ? pair : pair.slice(0, eq);
    let name = raw;
    try {
      name = decodeURIComponent(raw.replace(/\+/g, ' '));
    } catch {
      // undecodable: compared as sent
    }
    if (name.trim().toLowerCase() === '_method')
      throw new HttpProblem('BAD_PARAM', 'the _method parameter is not forwarded: a PACS may read it as another HTTP method');
  }
}

/** Percent-escapes are well-formed and spell UTF-8 (what decodeURIComponent accepts). */
function decodes(path: string): boolean {
  try {
    decodeURIComponent(path);
    return true;
  } catch {
    return false;
  }
}

function bad(detail: string): HttpProblem {
  return new HttpProblem('BAD_PATH', detail);
}
