/**
 * The gateway's public base URL, as the client sees it: CBMIR_PUBLIC_URL when
 * configured (behind a reverse proxy that is the only trustworthy source),
 * otherwise derived per request from X-Forwarded-Proto/-Host or Host. Only
 * that client's own answer is affected by what it sends (answers built from a
 * derived base carry `Vary: DERIVED_BASE_VARY`, so a shared cache keeps them
 * apart), and the host is validated so it cannot inject anything into URLs or
 * the Forwarded header.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { isIPv6 } from 'node:net';

export interface PublicBase {
  /** e.g. "https://gw.example/cbmir" (no trailing slash) */
  readonly base: string;
  /** Host (with port) and scheme, for the Forwarded header; path-less bases only. */
  readonly host: string;
  readonly proto: 'http' | 'https';
  /** Path part of the base ("" for a root deployment). */
  readonly path: string;
}

/** The request headers a derived base is read from, besides Host (which every cache keys on already). */
export const DERIVED_BASE_VARY = 'X-Forwarded-Host, X-Forwarded-Proto';

/**
 * A host name (RFC 3986 reg-name: letters, digits, "-", and "_" "~" as in Docker service names)
 * or a bracketed IPv6 literal, with an optional port. Nothing that could end a URL, a JSON string
 * or a `Forwarded` value (`;,"/?#@`, whitespace) gets through.
 */
const HOST_RE = /^(?:[A-Za-z0-9_~-]+(?:\.[A-Za-z0-9_~-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;

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

/** 0.0.0.0, ::, [::]: addresses a server listens on, never one a client can reach it by. */
export function isWildcardAddress(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  return h === '0.0.0.0' || (isIPv6(h) && /^[0:]+$/.test(h));
}

/**
 * Host (with port) to write into URLs for a client that sent no usable Host: the address the
 * gateway is bound to, or, bound to a wildcard, the address this connection reached it on.
 */
export function fallbackHost(bindHost: string, bindPort: number, socket: { localAddress?: string; localPort?: number }): string {
  if (!isWildcardAddress(bindHost)) return `${bracketed(bindHost)}:${bindPort}`;
  const local = socket.localAddress;
  if (local === undefined) return `localhost:${bindPort}`; // the connection is already gone: nobody reads this
  // A dual-stack socket reports an IPv4 client's connection as ::ffff:a.b.c.d.
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(local)?.[1];
  return `${v4 ?? bracketed(local)}:${socket.localPort ?? bindPort}`;
}

function bracketed(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}
