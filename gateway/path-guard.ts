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
 *   - under the DICOMweb and WADO-URI roots: any character outside
 *     [A-Za-z0-9.,-] (UIDs, keywords, frame lists, bulk tags), except %2C
 *     for an encoded comma in a frame list;
 *   - "/dicom-webX", "/wado/x"-style near-misses of the two roots.
 * Query strings are bounded in length and passed on verbatim.
 */
import { HttpProblem } from '../core/errors.js';

export const DICOMWEB_ROOT = '/dicom-web';
export const WADO_URI_ROOT = '/wado';

export type GuardedTarget =
  | { readonly kind: 'dicomweb'; readonly segments: readonly string[]; readonly query: string }
  | { readonly kind: 'wado-uri'; readonly query: string }
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
  if (path.length > 1 && path.includes('//')) throw bad('empty path segments are not allowed');
  for (const seg of path.split('/')) if (seg === '.' || seg === '..') throw bad('dot segments are not allowed');

  if (path === DICOMWEB_ROOT || path.startsWith(DICOMWEB_ROOT)) {
    if (path.length > DICOMWEB_ROOT.length && path.charCodeAt(DICOMWEB_ROOT.length) !== 47)
      throw bad(`unknown root (did you mean ${DICOMWEB_ROOT}/…?)`);
    const rest = path.slice(DICOMWEB_ROOT.length + 1).replace(/%2c/gi, ',');
    const segments = rest.length ? rest.replace(/\/$/, '').split('/') : [];
    for (const s of segments)
      if (!DICOMWEB_SEGMENT_RE.test(s)) throw bad('DICOMweb path segments are UIDs, keywords, frame lists or bulk tags');
    return { kind: 'dicomweb', segments, query };
  }
  if (path === WADO_URI_ROOT || path === `${WADO_URI_ROOT}/`) return { kind: 'wado-uri', query };
  if (path.startsWith(WADO_URI_ROOT)) throw bad(`WADO-URI is served at ${WADO_URI_ROOT} only`);
  return { kind: 'other', path, query };
}

function bad(detail: string): HttpProblem {
  return new HttpProblem('BAD_PATH', detail);
}
