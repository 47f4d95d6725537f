/**
 * Media-type negotiation fixes, applied before forwarding (PS3.18 §8.3.3).
 *
 * - The `accept` query parameter wins over the Accept header (§8.3.3.1: "the
 *   Accept query parameter … shall take precedence"). OHIF v3 asks /rendered
 *   with a multipart Accept header and `?accept=image/jpeg`; Orthanc's plugin
 *   1.7 ignores the parameter and rejects the header with 400. We move the
 *   parameter into the header and drop it from the forwarded query.
 * - WADO-RS retrieve with no Accept or only `*∕*` gets
 *   `multipart/related; type="application/dicom"` (the only representation a
 *   retrieve can have; some PACSes reject the wildcard).
 * - QIDO and metadata with no Accept or only `*∕*` get `application/dicom+json`.
 */
import { HttpProblem } from '../core/errors.js';
import type { RouteClass } from './routes.js';

export const DICOM_MULTIPART = 'multipart/related; type="application/dicom"';
export const DICOM_JSON = 'application/dicom+json';

export interface Negotiated {
  /** Accept header to send upstream; undefined keeps the client's. */
  readonly accept: string | undefined;
  /** Query string to forward (without the `accept` parameter). */
  readonly query: string;
}

/** Is the Accept value absent or nothing but `*∕*` ranges? */
export function isWildcardAccept(accept: string | undefined): boolean {
  if (accept === undefined || accept.trim() === '') return true;
  return accept.split(',').every((range) => (range.split(';')[0] ?? '').trim() === '*/*');
}

/** Split off the `accept` query parameter (first occurrence wins; repeats are dropped). */
export function takeAcceptParam(query: string): { accept: string | undefined; rest: string } {
  if (query === '' || !/(^|&)accept=/i.test(query)) return { accept: undefined, rest: query };
  let accept: string | undefined;
  const kept: string[] = [];
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    const name = eq === -1 ? pair : pair.slice(0, eq);
    if (name.toLowerCase() !== 'accept') {
      kept.push(pair);
      continue;
    }
    if (accept !== undefined) continue;
    try {
      // Form encoding (URLSearchParams, Python requests) writes a space as '+': next to ';' or ','
      // it is one ("multipart/related;+type=…"); between letters it is a media-type suffix
      // ("application/dicom+json", often written unencoded) and stays.
      const parts = pair
        .slice(eq + 1)
        .split('+')
        .map(decodeURIComponent);
      accept = joinFormParts(parts);
    } catch {
      throw new HttpProblem('BAD_PARAM', 'accept query parameter is not valid percent-encoding');
    }
    if (!/^[\x20-\x7e]*$/.test(accept)) throw new HttpProblem('BAD_PARAM', 'accept query parameter must be printable ASCII');
  }
  return { accept: accept === '' ? undefined : accept, rest: kept.join('&') };
}

/**
 * The `+`-separated parts of a form-encoded value joined back: a space next to ';' or ',', a
 * '+' elsewhere. In one pass, remembering the last character that is not white space: testing
 * the growing string with a regex each time was quadratic (8 KiB of ";+" held the event loop
 * for ~100 ms, before any authentication).
 */
function joinFormParts(parts: readonly string[]): string {
  let out = parts[0] ?? '';
  let last = out.trimEnd().at(-1);
  for (const p of parts.slice(1)) {
    const sep = last === ';' || last === ',' || /^\s*[;,]/.test(p) ? ' ' : '+';
    out += sep + p;
    last = p.trimEnd().at(-1) ?? (sep === '+' ? '+' : last);
  }
  return out.trim();
}

export function negotiate(routeClass: RouteClass, headerAccept: string | undefined, query: string): Negotiated {
  const { accept: param, rest } = takeAcceptParam(query);
  const effective = param ?? headerAccept;
  if (isWildcardAccept(effective)) {
    if (routeClass === 'wado') return { accept: DICOM_MULTIPART, query: rest };
    if (routeClass === 'qido' || routeClass === 'metadata') return { accept: DICOM_JSON, query: rest };
  }
  return { accept: param, query: rest };
}
