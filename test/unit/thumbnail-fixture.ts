/**
 * A ThumbnailService (gateway/thumbnail.ts) between a stand-in PACS and a bare HTTP server, as
 * server.ts wires it: what the thumbnail unit tests share.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpProblem } from '../../core/errors.js';
import { ORTHANC_DICOMWEB_1_7 } from '../../gateway/pacs-quirks.js';
import type { ProxyContext } from '../../gateway/passthrough.js';
import { sendProblem } from '../../gateway/problem.js';
import { ThumbnailService } from '../../gateway/thumbnail.js';
import { Upstream, parseEndpoint } from '../../gateway/upstream.js';
import { UrlRewriter } from '../../gateway/url-rewrite.js';

export interface ThumbnailRig {
  /** The gateway's base URL. */
  readonly base: string;
  readonly port: number;
  close(): void;
}

export async function startThumbnailRig(opts: {
  /** The stand-in PACS. */
  readonly pacs: http.RequestListener;
  /** Path segments of the instance a request's path names (after the leading /). */
  readonly instance: (path: string) => string[];
  readonly cacheEntries: number;
  readonly onUpstreamError?: ProxyContext['onUpstreamError'];
}): Promise<ThumbnailRig> {
  const pacs = http.createServer(opts.pacs);
  pacs.listen(0, '127.0.0.1');
  await once(pacs, 'listening');
  const endpoint = parseEndpoint(`http://127.0.0.1:${(pacs.address() as AddressInfo).port}/dicom-web`);
  const upstream = new Upstream({ timeoutMs: 5000, maxSockets: 4, keepAliveMs: 0 });
  const ctx: ProxyContext = {
    upstream,
    rewriter: new UrlRewriter(endpoint, endpoint, '/dicom-web', '/wado'),
    quirks: ORTHANC_DICOMWEB_1_7,
    defaultAuthorization: undefined,
    maxBodyBytes: 1024,
    maxRewriteBytes: 1024,
    onUpstreamError: opts.onUpstreamError ?? (() => undefined),
  };
  const thumbnails = new ThumbnailService(ctx, endpoint, '128,128', opts.cacheEntries);
  // As server.ts calls it: a thrown HttpProblem becomes the problem answer.
  const gateway = http.createServer((req, res) => {
    const [path = '', query = ''] = (req.url ?? '').split('?');
    try {
      thumbnails.serve(req, res, opts.instance(path.slice(1)), query);
    } catch (err) {
      sendProblem(res, err instanceof HttpProblem ? err : new HttpProblem('INTERNAL'));
    }
  });
  gateway.listen(0, '127.0.0.1');
  await once(gateway, 'listening');
  const port = (gateway.address() as AddressInfo).port;
  return {
    base: `http://127.0.0.1:${port}`,
    port,
    close: () => {
      gateway.close();
      pacs.close();
      upstream.close();
    },
  };
}
