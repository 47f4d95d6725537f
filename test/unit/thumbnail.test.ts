/**
 * gateway/thumbnail.ts against a stand-in PACS: the viewport is bounded to a thumbnail's size,
 * and a /rendered answer too large to hold is the PACS's fault (502), not the gateway's (500).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startThumbnailRig, type ThumbnailRig } from './thumbnail-fixture.js';

const INSTANCE = ['studies', '1.2', 'series', '1.2.3', 'instances', '1.2.3.4', 'thumbnail'];
const NINE_MIB = 9 * 1024 * 1024;

describe('gateway thumbnails', () => {
  const asked: string[] = [];
  const upstreamErrors: string[] = [];
  let rig: ThumbnailRig;
  let base = '';

  before(async () => {
    // /rendered?…&huge=1 streams more than the 8 MiB a thumbnail may take; anything else is a small JPEG.
    rig = await startThumbnailRig({
      instance: () => INSTANCE,
      cacheEntries: 0,
      onUpstreamError: (kind) => upstreamErrors.push(kind),
      pacs: (req, res) => {
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
      },
    });
    base = rig.base;
  });

  after(() => rig.close());

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
