/**
 * PS3.18 §10.4.1.1.4 Thumbnail resources (…/thumbnail), served by the gateway
 * for PACSes without them (Orthanc's DICOMweb plugin 1.7 answers 404): the
 * PACS's /rendered for the same resource, asked for a small viewport, kept in
 * a bounded LRU.
 *
 *   query  viewport=vw,vh   each side 1…MAX_VIEWPORT (default: quirks.thumbnailViewport)
 *   accept image/jpeg (default) | image/png — from `accept` or Accept
 *
 * A hit is answered without asking the PACS, so the cache key includes a hash of
 * every request header that can carry who the caller is (Authorization, Cookie,
 * a token header of an authorization plugin: anything but the headers listed in
 * caller.ts's NOT_IDENTITY), and entries expire after CACHE_TTL_MS: one user's thumbnail is
 * never served to another, and a revoked permission stops being served soon.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { HttpProblem } from '../core/errors.js';
import { takeAcceptParam } from './accept.js';
import { callerKey } from './caller.js';
import { mergeVary, upstreamRequestHeaders } from './headers.js';
import { LruCache } from './lru.js';
import type { ProxyContext } from './passthrough.js';
import { sendProblem } from './problem.js';
import type { Endpoint, UpstreamError } from './upstream.js';

interface CachedImage {
  readonly contentType: string;
  readonly body: Buffer;
  readonly expires: number;
}

const VIEWPORT_RE = /^([1-9][0-9]{0,3}),([1-9][0-9]{0,3})$/;
/** Largest side asked of the PACS: a thumbnail is small, and a larger one can outgrow MAX_THUMBNAIL_BYTES. */
const MAX_VIEWPORT = 1024;
/** How long a cached thumbnail is served without asking the PACS. */
const CACHE_TTL_MS = 5 * 60_000;
/** Larger answers are served but not cached. */
const MAX_CACHED_BYTES = 512 * 1024;
/**
 * All cached thumbnails together: entries alone would allow 2,000 × 512 KiB (a caller varying
 * an ignored query parameter at a large viewport can fill it).
 */
const CACHE_MAX_BYTES = 64 * 1024 * 1024;
/** Larger answers are refused (a thumbnail is small; this bounds memory per request). */
const MAX_THUMBNAIL_BYTES = 8 * 1024 * 1024;

export class ThumbnailService {
  private readonly cache: LruCache<string, CachedImage>;

  constructor(
    private readonly ctx: ProxyContext,
    private readonly endpoint: Endpoint,
    private readonly defaultViewport: string,
    cacheEntries: number,
  ) {
    this.cache = new LruCache(cacheEntries, { maxBytes: CACHE_MAX_BYTES, sizeOf: (v) => v.body.length });
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  /** `segments`: the DICOMweb path of the thumbnail resource (ending in "thumbnail"). */
  serve(req: IncomingMessage, res: ServerResponse, segments: readonly string[], query: string): void {
    const { accept: acceptParam, rest } = takeAcceptParam(query);
    const params = new URLSearchParams(rest);
    const viewport = params.get('viewport') ?? this.defaultViewport;
    checkViewport(viewport);
    // Other parameters (a ?token= login, rendering options) go to the PACS as they came.
    params.delete('viewport');
    const others = params.toString();
    const wanted = acceptParam ?? req.headers.accept ?? '';
    const mediaType = /image\/png/i.test(wanted) && !/image\/jpeg/i.test(wanted) ? 'image/png' : 'image/jpeg';
    const renderedPath = `${this.endpoint.basePath}/${segments.slice(0, -1).join('/')}/rendered?viewport=${viewport}${others ? `&${others}` : ''}`;
    const key = `${renderedPath}|${mediaType}|${callerKey(req.headers)}`;

    const hit = this.cache.get(key);
    if (hit && hit.expires > Date.now()) {
      send(res, 200, hit.contentType, hit.body, 'HIT');
      return;
    }
    const headers = renderedRequestHeaders(
      upstreamRequestHeaders(req.headers, {
        host: this.endpoint.hostHeader,
        defaultAuthorization: this.ctx.defaultAuthorization,
        accept: mediaType,
        hasBody: false,
      }),
    );
    const abort = this.ctx.upstream.send(
      { endpoint: this.endpoint, method: 'GET', path: renderedPath, headers, body: null },
      (err, ures) => {
        if (err || !ures) {
          const e = err as UpstreamError;
          this.ctx.onUpstreamError(e.kind);
          sendProblem(res, new HttpProblem(e.kind === 'timeout' ? 'UPSTREAM_TIMEOUT' : 'UPSTREAM_UNREACHABLE', e.message));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        // A PACS that stops mid-body: answer 504 (nothing is sent yet) instead of hanging.
        const idle = setTimeout(() => {
          this.ctx.onUpstreamError('timeout');
          ures.destroy();
          sendProblem(res, new HttpProblem('UPSTREAM_TIMEOUT', 'the PACS stopped sending the rendered thumbnail'));
        }, this.ctx.upstream.timeoutMs);
        ures.on('close', () => clearTimeout(idle));
        ures.on('data', (c: Buffer) => {
          idle.refresh();
          size += c.length;
          if (size > MAX_THUMBNAIL_BYTES) {
            // The PACS's answer, not a fault of the gateway: a 502 like any unusable upstream answer.
            this.ctx.onUpstreamError('body');
            ures.destroy();
            sendProblem(
              res,
              new HttpProblem('UPSTREAM_UNREACHABLE', `the PACS's rendered thumbnail is larger than ${MAX_THUMBNAIL_BYTES >> 20} MiB`),
            );
            return;
          }
          chunks.push(c);
        });
        ures.on('error', () => res.destroy());
        ures.on('end', () => {
          if (res.writableEnded || res.destroyed) return;
          const body = Buffer.concat(chunks, size);
          const status = ures.statusCode ?? 502;
          const ct = ures.headers['content-type'] ?? (status === 200 ? mediaType : 'application/octet-stream');
          // Encoded although identity was asked for: passed on as it came, never cached.
          const encoding = ures.headers['content-encoding'];
          const encoded = encoding !== undefined && encoding.toLowerCase() !== 'identity';
          if (status === 200 && !encoded && body.length <= MAX_CACHED_BYTES)
            this.cache.set(key, { contentType: ct, body, expires: Date.now() + CACHE_TTL_MS });
          const challenge = ures.headers['www-authenticate'];
          send(res, status, ct, body, 'MISS', {
            ...(challenge === undefined ? {} : { 'www-authenticate': challenge }),
            ...(encoded ? { 'content-encoding': encoding } : {}),
          });
        });
      },
    );
    res.on('close', () => {
      if (!res.writableFinished) abort();
    });
  }
}

/** Request headers that would make the PACS answer something other than the whole image, as is. */
const NOT_FOR_RENDERED = ['range', 'if-range', 'if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since'];

/**
 * The body is served as it came to every caller with the same credentials, from the cache too,
 * without the PACS's Content-Encoding: so it must be the image itself, whole, and unencoded
 * (Orthanc ≤ 1.12.1 gzips any answer to a client that accepts it, with HttpCompressionEnabled).
 */
function renderedRequestHeaders(headers: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ...headers, 'accept-encoding': 'identity' };
  for (const name of NOT_FOR_RENDERED) delete out[name];
  return out;
}

function checkViewport(viewport: string): void {
  const m = VIEWPORT_RE.exec(viewport);
  if (!m || Number(m[1]) > MAX_VIEWPORT || Number(m[2]) > MAX_VIEWPORT)
    throw new HttpProblem('BAD_PARAM', `viewport must be "width,height" in pixels, each at most ${MAX_VIEWPORT}`);
}

function send(
  res: ServerResponse,
  status: number,
  contentType: string,
  body: Buffer,
  cache: 'HIT' | 'MISS',
  extra: Record<string, string | string[]> = {},
): void {
  if (res.headersSent) return;
  // A browser keeps the image no longer than the gateway's own cache (a revoked permission is
  // served for 5 minutes at most), and per credentials and media type: another token typed on a
  // shared workstation, or a PNG asked for by header, must not get this answer from its cache.
  const vary = mergeVary(res.getHeader('vary'), 'Authorization, Cookie, Accept');
  res.writeHead(status, {
    ...extra,
    'content-type': contentType,
    'content-length': body.length,
    'x-cbmir-thumbnail-cache': cache,
    vary,
    ...(status === 200 ? { 'cache-control': `private, max-age=${CACHE_TTL_MS / 1000}` } : {}),
  });
  res.end(body);
}
