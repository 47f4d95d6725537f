/**
 * The gateway's public base URL, as the client sees it: CBMIR_PUBLIC_URL when
 * configured (behind a reverse proxy that is the only trustworthy source),
 * otherwise derived per request from X-Forwarded-Proto/-Host or Host. Only
 * that client's own answer is affected by what it sends, and the host is
 * validated so it cannot inject anything into URLs or the Forwarded header.
 */
import type { IncomingHttpHeaders } from 'node:http';

export interface PublicBase {
  /** e.g. "https://gw.example/cbmir" (no trailing slash) */
  readonly base: string;
  /** Host (with port) and scheme, for the Forwarded header; path-less bases only. */
  readonly host: string;
  readonly proto: 'http' | 'https';
  /** Path part of the base ("" for a root deployment). */
  readonly path: string;
}

const HOST_RE = /^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;

function first(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined) return undefined;
  const c = s.indexOf(',');
  return (c === -1 ? s : s.slice(0, c)).trim();
}

export function fixedPublicBase(url: string): PublicBase {
  const u = new URL(url);
  const path = u.pathname.replace(/\/+$/, '');
  return { base: `${u.origin}${path}`, host: u.host, proto: u.protocol === 'https:' ? 'https' : 'http', path };
}

/** Derive the base from request headers; `fallbackHost` when the client sent nothing usable. */
export function derivePublicBase(headers: IncomingHttpHeaders, fallbackHost: string): PublicBase {
  const xfProto = first(headers['x-forwarded-proto'])?.toLowerCase();
  const proto = xfProto === 'https' ? 'https' : 'http';
  const candidate = first(headers['x-forwarded-host']) ?? headers.host;
  const host = candidate !== undefined && HOST_RE.test(candidate) ? candidate : fallbackHost;
  return { base: `${proto}://${host}`, host, proto, path: '' };
}
