/**
 * CORS (Fetch standard §3.2) for viewers served from another origin.
 *
 * Preflights happen for every DICOMweb call a viewer makes with Authorization,
 * and for OHIF's frame requests even without it: their Accept
 * (`multipart/related; type="application/octet-stream"; transfer-syntax=*`)
 * contains quotes, which takes it off the CORS-safelisted list. We echo the
 * requested headers (token list only) and answer preflights here; they never
 * reach the PACS.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { mergeVary } from './headers.js';

const ALLOW_METHODS = 'GET, POST, OPTIONS';
// Retry-After (503s of /similar), WWW-Authenticate (401s), Server-Timing (/similar) and the
// thumbnail cache marker are documented answers a viewer on another origin must be able to read.
const EXPOSE =
  'Content-Type, Content-Length, Content-Location, Location, Warning, X-Request-Id, ' +
  'Retry-After, WWW-Authenticate, Server-Timing, X-Cbmir-Thumbnail-Cache';
const TOKEN_LIST_RE = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+(?:\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*$/;
const MAX_AGE_S = '600';

export class Cors {
  private readonly any: boolean;
  private readonly allowed: ReadonlySet<string>;

  constructor(origins: readonly string[] | '*') {
    this.any = origins === '*';
    this.allowed = new Set(origins === '*' ? [] : origins);
  }

  /** Adds CORS headers; returns true when the request was a preflight and has been answered. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const origin = req.headers.origin;
    const allowedOrigin = origin !== undefined && (this.any || this.allowed.has(origin));
    // With a list, whether the answer carries Access-Control-Allow-Origin depends on Origin, also
    // when there is none: a cache must not hand a copy stored for a plain <img> to a CORS fetch.
    if (this.allowed.size > 0) res.setHeader('vary', mergeVary(res.getHeader('vary'), 'Origin'));
    if (allowedOrigin) res.setHeader('access-control-allow-origin', this.any ? '*' : origin);
    const isPreflight = req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;
    if (!isPreflight) {
      if (allowedOrigin) res.setHeader('access-control-expose-headers', EXPOSE);
      return false;
    }
    if (allowedOrigin) {
      res.setHeader('access-control-allow-methods', ALLOW_METHODS);
      const requested = req.headers['access-control-request-headers'];
      if (requested && TOKEN_LIST_RE.test(requested.trim())) res.setHeader('access-control-allow-headers', requested.trim());
      res.setHeader('access-control-max-age', MAX_AGE_S);
    }
    res.writeHead(204, { 'content-length': '0' });
    res.end();
    return true;
  }
}
