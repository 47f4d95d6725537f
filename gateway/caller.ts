/**
 * Who is asking, as the PACS sees it. The pass-through forwards every end-to-end header, so a
 * PACS (or an authorization plugin, or a proxy in front of it) may know its users by
 * Authorization, a session cookie or a token header alike. What the gateway asks the PACS on a
 * caller's behalf — /similar's access checks, the virtual root's study records, thumbnails —
 * must carry the same headers, and whatever it caches must be keyed by all of them.
 */
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { METHOD_OVERRIDE_HEADERS } from './headers.js';

/**
 * Request headers that say nothing about who is asking: content negotiation, conditionals,
 * caching, and what proxies and tracers add per request (a per-request value in the key would
 * make every access check a cache miss, and a conditional sent on an access QIDO could make the
 * PACS answer 412).
 */
const NOT_IDENTITY = new Set([
  'accept',
  'accept-charset',
  'baggage',
  'cdn-loop',
  'cf-connecting-ip',
  'cf-ipcountry',
  'cf-ray',
  'cf-visitor',
  'if-match',
  'if-range',
  'if-unmodified-since',
  'sentry-trace',
  'true-client-ip',
  'via',
  'x-amzn-trace-id',
  'x-cloud-trace-context',
  'x-correlation-id',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-forwarded-proto',
  'x-real-ip',
  'x-request-start',
  'accept-encoding',
  'accept-language',
  'cache-control',
  'connection',
  'content-encoding',
  'content-length',
  'content-type',
  'dnt',
  'expect',
  'forwarded',
  'host',
  'if-modified-since',
  'if-none-match',
  'keep-alive',
  'origin',
  'pragma',
  'priority',
  'proxy-authorization',
  'proxy-connection',
  'range',
  'referer',
  'te',
  'trailer',
  'traceparent',
  'tracestate',
  'transfer-encoding',
  'upgrade',
  'upgrade-insecure-requests',
  'user-agent',
  'x-request-id',
]);

const isIdentity = (name: string) =>
  !NOT_IDENTITY.has(name) && !METHOD_OVERRIDE_HEADERS.has(name) && !name.startsWith('sec-') && !name.startsWith('x-b3-');

/** Hash of the identity-bearing request headers (empty when there are none). */
export function callerKey(headers: IncomingHttpHeaders): string {
  const parts: string[] = [];
  for (const name of Object.keys(headers).sort()) {
    if (!isIdentity(name)) continue;
    const v = headers[name];
    parts.push(`${name}:${Array.isArray(v) ? v.join('\u0000') : (v ?? '')}`);
  }
  return parts.length ? createHash('sha256').update(parts.join('\n')).digest('base64url').slice(0, 22) : '';
}

export interface Caller {
  readonly authorization: string | undefined;
  /** The other identity-bearing headers (Cookie, a plugin's token header …), sent along with Authorization. */
  readonly headers: Readonly<Record<string, string>>;
  /** callerKey of the request: '' for a caller that sent nothing that identifies them. */
  readonly key: string;
}

export const ANONYMOUS: Caller = Object.freeze({ authorization: undefined, headers: {}, key: '' });

export function callerOf(inbound: IncomingHttpHeaders): Caller {
  const headers: Record<string, string> = {};
  let authorization: string | undefined;
  for (const name of Object.keys(inbound)) {
    if (!isIdentity(name)) continue;
    const v = inbound[name];
    const value = Array.isArray(v) ? v.join(name === 'cookie' ? '; ' : ', ') : v;
    if (value === undefined || value === '') continue;
    if (name === 'authorization') authorization = value;
    else headers[name] = value;
  }
  return { authorization, headers, key: callerKey(inbound) };
}
