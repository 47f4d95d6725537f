/**
 * The DICOMweb surface the gateway exposes — one table, read top to bottom.
 *
 * PS3.18 (DICOMweb) resources, relative to the gateway's DICOMweb root
 * (/dicom-web). Anything not in this table never reaches the PACS: Orthanc's
 * plugin serves more under its root (/servers: an outbound DICOMweb client,
 * /info), and Orthanc's REST API (including DELETE) lives beside it.
 *
 *   QIDO-RS  §10.6   GET  studies | series | instances | studies/{s}/series
 *                         | studies/{s}/series/{se}/instances | studies/{s}/instances
 *   WADO-RS  §10.4   GET  studies/{s}[/series/{se}[/instances/{i}]]            (retrieve)
 *                         …/metadata, …/instances/{i}/frames/{list}            (metadata, frames)
 *                         …/rendered, …/frames/{list}/rendered                 (rendered, §10.4.1.1.3)
 *                         …/thumbnail, …/frames/{list}/thumbnail               (served by the gateway)
 *                         …/instances/{i}/bulk/{tag}[/{item}/{tag}]*           (Orthanc's BulkDataURI shape)
 *   STOW-RS  §10.5   POST studies | studies/{s}
 *   WADO-URI §9      GET  /wado?requestType=WADO&studyUID=…&seriesUID=…&objectUID=…   (separate root)
 */
import { HttpProblem, isValidUid } from '../core/errors.js';
import { MethodNotAllowed } from './problem.js';

/** Metrics/logging label: which kind of request this is (never the URL: it can carry PHI-bearing query strings). */
export type RouteClass = 'qido' | 'wado' | 'metadata' | 'frames' | 'rendered' | 'thumbnail' | 'bulkdata' | 'stow' | 'wado-uri';

/** What serves a matched route. */
export type RouteHandlerKind = 'pass' | 'stow' | 'thumbnail';

export interface DicomwebRoute {
  readonly method: 'GET' | 'POST';
  /** Path segments under the DICOMweb root; `:name` captures one validated segment, `*bulk` the rest. */
  readonly pattern: readonly string[];
  readonly routeClass: RouteClass;
  readonly handler: RouteHandlerKind;
}

const S = ['studies', ':study'];
const SE = [...S, 'series', ':series'];
const I = [...SE, 'instances', ':instance'];
const F = [...I, 'frames', ':frames'];

const r = (
  method: DicomwebRoute['method'],
  path: readonly string[],
  routeClass: RouteClass,
  handler: RouteHandlerKind = 'pass',
): DicomwebRoute => ({
  method,
  pattern: path,
  routeClass,
  handler,
});

export const DICOMWEB_ROUTES: readonly DicomwebRoute[] = [
  // QIDO-RS
  r('GET', ['studies'], 'qido'),
  r('GET', ['series'], 'qido'),
  r('GET', ['instances'], 'qido'),
  r('GET', [...S, 'series'], 'qido'),
  r('GET', [...SE, 'instances'], 'qido'),
  r('GET', [...S, 'instances'], 'qido'),
  // WADO-RS retrieve
  r('GET', S, 'wado'),
  r('GET', SE, 'wado'),
  r('GET', I, 'wado'),
  // WADO-RS metadata
  r('GET', [...S, 'metadata'], 'metadata'),
  r('GET', [...SE, 'metadata'], 'metadata'),
  r('GET', [...I, 'metadata'], 'metadata'),
  // WADO-RS frames and bulk data
  r('GET', F, 'frames'),
  r('GET', [...I, 'bulk', '*bulk'], 'bulkdata'),
  // WADO-RS rendered
  r('GET', [...S, 'rendered'], 'rendered'),
  r('GET', [...SE, 'rendered'], 'rendered'),
  r('GET', [...I, 'rendered'], 'rendered'),
  r('GET', [...F, 'rendered'], 'rendered'),
  // thumbnails (the PACS may have none: served from its /rendered)
  r('GET', [...S, 'thumbnail'], 'thumbnail', 'thumbnail'),
  r('GET', [...SE, 'thumbnail'], 'thumbnail', 'thumbnail'),
  r('GET', [...I, 'thumbnail'], 'thumbnail', 'thumbnail'),
  r('GET', [...F, 'thumbnail'], 'thumbnail', 'thumbnail'),
  // STOW-RS
  r('POST', ['studies'], 'stow', 'stow'),
  r('POST', S, 'stow', 'stow'),
];

export interface RouteMatch {
  readonly route: DicomwebRoute;
  readonly params: Readonly<Record<string, string>>;
}

const FRAME_LIST_RE = /^[1-9][0-9]{0,8}(,[1-9][0-9]{0,8}){0,999}$/;
const BULK_SEGMENT_RE = /^(?:[0-9a-fA-F]{8}|[0-9]{1,9})$/;

/** Validate one captured segment; throws the problem a client should see. */
function checkParam(name: string, value: string): void {
  switch (name) {
    case 'study':
    case 'series':
    case 'instance':
      if (!isValidUid(value)) throw new HttpProblem('BAD_UID', `${name} UID must be digits and dots, at most 64 characters`);
      return;
    case 'frames':
      if (!FRAME_LIST_RE.test(value)) throw new HttpProblem('BAD_PARAM', 'frame list must be comma-separated frame numbers starting at 1');
      return;
    default:
      throw new Error(`route table uses unknown parameter :${name}`);
  }
}

/**
 * Match DICOMweb path segments (already split, without the root) against the table.
 * Returns null when no pattern fits the shape; throws METHOD_NOT_ALLOWED (with the
 * allowed methods) when the shape exists under another method, and BAD_UID/BAD_PARAM
 * for invalid captures. `readOnly` (a virtual root) leaves POST out of those methods.
 */
export function matchDicomweb(method: string, segments: readonly string[], readOnly = false): RouteMatch | null {
  let shapeMatched = false;
  for (const route of candidates(segments.length)) {
    const params = matchPattern(route.pattern, segments);
    if (!params) continue;
    shapeMatched = true;
    // HEAD is GET without the body (RFC 9110 9.3.2): it reaches the PACS as HEAD, untouched.
    if (route.method !== method && !(method === 'HEAD' && route.method === 'GET')) continue;
    for (const [name, value] of Object.entries(params)) if (name !== 'bulk') checkParam(name, value);
    return { route, params };
  }
  if (shapeMatched) throw new MethodNotAllowed(allowedMethods(segments, readOnly), `${method} is not supported on this resource`);
  return null;
}

const METHOD_ORDER = ['GET', 'HEAD', 'POST', 'OPTIONS'] as const;

/**
 * The methods served on a path of this shape: the table's, HEAD wherever GET is, and OPTIONS
 * (answered by the gateway for every DICOMweb resource). `readOnly` leaves POST out (virtual
 * roots). Empty when no route has this shape.
 */
export function allowedMethods(segments: readonly string[], readOnly = false): string[] {
  const found = new Set<string>();
  for (const route of candidates(segments.length)) if (matchPattern(route.pattern, segments)) found.add(route.method);
  if (readOnly) found.delete('POST');
  if (found.size === 0) return [];
  if (found.has('GET')) found.add('HEAD');
  found.add('OPTIONS');
  return METHOD_ORDER.filter((m) => found.has(m));
}

/** Routes that can match a path of `n` segments (exact-length patterns, then rest patterns), precomputed once. */
const BY_LENGTH = new Map<number, DicomwebRoute[]>();
const REST_ROUTES = DICOMWEB_ROUTES.filter((r) => (r.pattern.at(-1) as string).startsWith('*'));
for (const r of DICOMWEB_ROUTES) {
  if (REST_ROUTES.includes(r)) continue;
  const list = BY_LENGTH.get(r.pattern.length) ?? [];
  list.push(r);
  BY_LENGTH.set(r.pattern.length, list);
}
function candidates(n: number): readonly DicomwebRoute[] {
  const exact = BY_LENGTH.get(n) ?? [];
  const rest = REST_ROUTES.filter((r) => n >= r.pattern.length);
  return rest.length ? [...exact, ...rest] : exact;
}

function matchPattern(pattern: readonly string[], segments: readonly string[]): Record<string, string> | null {
  const last = pattern[pattern.length - 1] as string;
  const rest = last.startsWith('*');
  if (rest ? segments.length < pattern.length : segments.length !== pattern.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i] as string;
    const s = segments[i] as string;
    if (p.startsWith('*')) {
      const tail = segments.slice(i);
      if (!tail.every((t) => BULK_SEGMENT_RE.test(t))) return null;
      params[p.slice(1)] = tail.join('/');
      return params;
    }
    if (p.startsWith(':')) params[p.slice(1)] = s;
    else if (p !== s) return null;
  }
  return params;
}
