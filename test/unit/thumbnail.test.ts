/**
 * gateway/thumbnail.ts against a stand-in PACS: the viewport is bounded to a thumbnail's size,
 * and a /rendered answer too large to hold is the PACS's fault (502), not the gateway's (500).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { HttpProblem } from '../../core/errors.js';
import { ORTHANC_DICOMWEB_1_7 } from '../../gateway/pacs-quirks.js';
import type { ProxyContext } from '../../gateway/passthrough.js';
import { sendProblem } from '../../gateway/problem.js';
import { ThumbnailService } from '../../gateway/thumbnail.js';
import { Upstream, parseEndpoint } from '../../gateway/upstream.js';
import { UrlRewriter } from '../../gateway/url-rewrite.js';

const INSTANCE = ['studies', '1.2', 'series', '1.2.3', 'instances', '1.2.3.4', 'thumbnail'];
const NINE_MIB = 9 * 1024 * 1024;

describe('gateway thumbnails', () => {
  const asked: string[] = [];
  const upstreamErrors: string[] = [];
  let pacs: http.Server;
  let gateway: http.Server;
  let base = '';
  let upstream: Upstream;

  before(async () => {
    // /rendered?…&huge=1 streams more than the 8 MiB a thumbnail may take; anything else is a small JPEG.
    pacs = http.createServer((req, res) => {
      asked.push(req.url ?? '');
      if ((req.url ?? '').includes('huge=1')) {
        res.writeHead(200, { 'content-type': 'image/jpeg' });
        const chunk = Buffer.alloc(256 * 1024);
        let sent = 0;
        const pump = (): void => {
          while (sent < NINE_MIB && !res.destroyed) {
            sent += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
        return;
      }
      res.writeHead(200, { 'content-type': 'image/jpeg' }).end(Buffer.from([0xff, 0xd8, 0xff, 0xd9]));
    });
    pacs.listen(0, '127.0.0.1');
    await once(pacs, 'listening');
    const endpoint = parseEndpoint(`http://127.0.0.1:${(pacs.address() as AddressInfo).port}/dicom-web`);
    upstream = new Upstream({ timeoutMs: 5000, maxSockets: 4, keepAliveMs: 0 });
    const ctx: ProxyContext = {
      upstream,
      rewriter: new UrlRewriter(endpoint, endpoint, '/dicom-web', '/wado'),
      quirks: ORTHANC_DICOMWEB_1_7,
      defaultAuthorization: undefined,
      maxBodyBytes: 1024,
      maxRewriteBytes: 1024,
      onUpstreamError: (kind) => upstreamErrors.push(kind),
    };
    const thumbnails = new ThumbnailService(ctx, endpoint, '128,128', 0);
    // As server.ts calls it: a thrown HttpProblem becomes the problem answer.
    gateway = http.createServer((req, res) => {
      try {
        thumbnails.serve(req, res, INSTANCE, (req.url ?? '').split('?')[1] ?? '');
      } catch (err) {
        sendProblem(res, err instanceof HttpProblem ? err : new HttpProblem('INTERNAL'));
      }
    });
    gateway.listen(0, '127.0.0.1');
    await once(gateway, 'listening');
    base = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
  });

  after(() => {
    gateway.close();
    pacs.close();
    upstream.close();
  });

  test('viewport: each side 1…1024, else 400 BAD_PARAM without asking the PACS', async () => {
    const before = asked.length;
    for (const bad of ['1025,128', '128,1025', '5000,5000', '9999,9999', '0,128', '128', '128,128,1']) {
      const r = await fetch(`${base}/thumbnail?viewport=${bad}`);
      assert.equal(r.status, 400, bad);
      assert.equal(((await r.json()) as { code: string }).code, 'BAD_PARAM', bad);
    }
    assert.equal(asked.length, before, 'refused before the PACS is asked');
    for (const ok of ['1024,1024', '1,1', '128,64']) {
      const r = await fetch(`${base}/thumbnail?viewport=${ok}`);
      assert.equal(r.status, 200, ok);
      await r.arrayBuffer();
      assert.match(asked.at(-1)!, new RegExp(`/rendered\\?viewport=${ok}$`));
    }
  });

  test('a /rendered answer over 8 MiB is 502 UPSTREAM_UNREACHABLE (the PACS’s doing), counted as a body error', async () => {
    const r = await fetch(`${base}/thumbnail?viewport=1024,1024&huge=1`);
    assert.equal(r.status, 502);
    assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/);
    const p = (await r.json()) as { code: string; detail: string };
    assert.equal(p.code, 'UPSTREAM_UNREACHABLE');
    assert.match(p.detail, /larger than 8 MiB/);
    assert.deepEqual(upstreamErrors, ['body']);
  });
});
