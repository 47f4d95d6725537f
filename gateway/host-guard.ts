/**
 * DNS-rebinding guard: a web page can point a name it controls at 127.0.0.1 and
 * then call the gateway as "its own" origin, past CORS. The browser still sends
 * that name in Host, so a gateway bound to loopback answers only to the names
 * it is really reached by (core/config.ts `allowedHosts`).
 */
import { HttpProblem } from '../core/errors.js';

/** Host header → lower-case name without port (IPv6 keeps its brackets); undefined when absent. */
export function hostName(header: string | undefined): string | undefined {
  if (header === undefined || header === '') return undefined;
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end < 0 ? h : h.slice(0, end + 1);
  }
  const colon = h.indexOf(':');
  return colon < 0 ? h : h.slice(0, colon);
}

/** Throws HOST_NOT_ALLOWED for a Host outside the list; a request without Host (HTTP/1.0 tools) passes. */
export function checkHost(header: string | undefined, allowed: readonly string[] | '*'): void {
  if (allowed === '*') return;
  const name = hostName(header);
  if (name === undefined || allowed.includes(name)) return;
  throw new HttpProblem('HOST_NOT_ALLOWED', 'this Host is not one the gateway answers to (CBMIR_ALLOWED_HOSTS)');
}
