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

const ALLOW_METHODS = 'GET, POST, OPTIONS';
const EXPOSE = 'Content-Type, Content-Length, Content-Location, Location, Warning, X-Request-Id';
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
    if (allowedOrigin) {
      res.setHeader('access-control-allow-origin', this.any ? '*' : origin);
      if (!this.any) res.setHeader('vary', 'Origin');
    }
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
