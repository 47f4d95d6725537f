/**
 * Header policy of the pass-through (RFC 9110 §7.6.1): hop-by-hop headers stop
 * here in both directions; everything else passes unchanged — notably
 * Authorization, which belongs to the client and the PACS, not to us.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/**
 * Request headers the gateway speaks for itself to the PACS: the public URL goes up as
 * `Forwarded` when the PACS may use it (passthrough.ts), and a PACS that honours a client's
 * X-Forwarded-* would write URLs the gateway did not choose (and cannot map back).
 */
const GATEWAY_OWNED = new Set(['host', 'expect', 'forwarded', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port']);

/**
 * Method overrides: Orthanc (and other servers) read `X-HTTP-Method-Override: DELETE` on a GET
 * as a DELETE. The route table decides which methods reach the PACS; these never go up.
 */
export const METHOD_OVERRIDE_HEADERS: ReadonlySet<string> = new Set(['x-http-method-override', 'x-http-method', 'x-method-override']);

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Headers listed in `Connection: a, b` are hop-by-hop too. */
function connectionListed(headers: IncomingHttpHeaders): Set<string> | null {
  const c = headers.connection;
  if (!c) return null;
  const names = c
    .toLowerCase()
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s && s !== 'close' && s !== 'keep-alive');
  return names.length ? new Set(names) : null;
}

export interface UpstreamHeaderOptions {
  /** Host header for the PACS. */
  readonly host: string;
  /** `Basic …` sent only when the client sent no Authorization. */
  readonly defaultAuthorization: string | undefined;
  /** Replaces the client's Accept (query `accept` parameter, defaults); undefined keeps it. */
  readonly accept: string | undefined;
  /** Whether the request carries a body (STOW); GETs lose stray Content-Type/Length. */
  readonly hasBody: boolean;
}

export function upstreamRequestHeaders(inbound: IncomingHttpHeaders, o: UpstreamHeaderOptions): OutgoingHttpHeaders {
  const listed = connectionListed(inbound);
  const out: OutgoingHttpHeaders = {};
  for (const name in inbound) {
    if (HOP_BY_HOP.has(name) || GATEWAY_OWNED.has(name) || METHOD_OVERRIDE_HEADERS.has(name) || listed?.has(name)) continue;
    if (!o.hasBody && (name === 'content-type' || name === 'content-length')) continue;
    out[name] = inbound[name];
  }
  out.host = o.host;
  if (o.accept !== undefined) out.accept = o.accept;
  if (out.authorization === undefined && o.defaultAuthorization) out.authorization = o.defaultAuthorization;
  return out;
}

/**
 * Response headers to send to the client: hop-by-hop removed, URL-bearing ones mapped with
 * `mapUrl`. CORS is the gateway's to decide
 * (CBMIR_CORS_ORIGINS): a PACS or proxy that allows `*` must not open the gateway, which adds
 * its own PACS login, to every web page; so its access-control-* headers are dropped, and its
 * Vary is merged with the gateway's (`ownVary`, e.g. Origin) instead of replacing it.
 */
export function downstreamResponseHeaders(
  inbound: IncomingHttpHeaders,
  mapUrl: (s: string) => string,
  ownVary?: string,
): OutgoingHttpHeaders {
  const listed = connectionListed(inbound);
  const out: OutgoingHttpHeaders = {};
  for (const name in inbound) {
    if (HOP_BY_HOP.has(name) || listed?.has(name) || name.startsWith('access-control-')) continue;
    const v = inbound[name];
    out[name] = (name === 'location' || name === 'content-location') && typeof v === 'string' ? mapUrl(v) : v;
  }
  if (ownVary && out.vary !== undefined) out.vary = mergeVary(ownVary, out.vary);
  return out;
}

/** Vary field values merged: each name once (case-insensitive), the first spelling, in order. */
export function mergeVary(...values: Array<string | number | readonly string[] | undefined>): string {
  const seen = new Set<string>();
  const merged: string[] = [];
  for (const v of values) {
    if (v === undefined) continue;
    for (const f of String(v).split(',')) {
      const t = f.trim();
      if (t && !seen.has(t.toLowerCase())) {
        seen.add(t.toLowerCase());
        merged.push(t);
      }
    }
  }
  return merged.join(', ');
}

export function basicAuthorization(user: string | undefined, password: string | undefined): string | undefined {
  if (user === undefined || password === undefined) return undefined;
  return `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`;
}
