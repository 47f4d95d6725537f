/**
 * gateway/thumbnail.ts serves and caches the PACS's /rendered body for every caller with the
 * same credentials, so it asks for the whole image, unencoded: a client's Accept-Encoding (Orthanc
 * ≤ 1.12.1 gzips anything then), Range or conditionals do not reach the PACS.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { startThumbnailRig, type ThumbnailRig } from './thumbnail-fixture.js';

const JPEG = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46, 0x49, 0x46, 0xff, 0xd9]);
const instance = (sop: string) => ['studies', '1.2', 'series', '1.2.3', 'instances', sop, 'thumbnail'];

describe('thumbnails: the PACS is asked for the image as is', () => {
  const seen: http.IncomingHttpHeaders[] = [];
  let rig: ThumbnailRig;

  before(async () => {
    // Gzips when the request accepts it (as Orthanc with HttpCompressionEnabled); ?always=1 even when not.
    rig = await startThumbnailRig({
      instance,
      cacheEntries: 100,
      pacs: (req, res) => {
        seen.push(req.headers);
        const always = (req.url ?? '').includes('always=1');
        if (always || /gzip/.test(req.headers['accept-encoding'] ?? '')) {
          res.writeHead(200, { 'content-type': 'image/jpeg', 'content-encoding': 'gzip' }).end(gzipSync(JPEG));
        } else res.writeHead(200, { 'content-type': 'image/jpeg' }).end(JPEG);
      },
    });
  });

  after(() => rig.close());

  /** A raw GET: the body exactly as sent, never decoded by the client. */
  const get = (path: string, headers: Record<string, string>) =>
    new Promise<{ headers: http.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: rig.port, path, headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
        })
        .on('error', reject);
    });

  test('a client that accepts gzip gets the JPEG itself, and so does the next caller from the cache', async () => {
    const first = await get('/1.2.3.4', { 'accept-encoding': 'gzip, deflate, br', authorization: 'Basic YTpi' });
    assert.equal(seen.at(-1)?.['accept-encoding'], 'identity');
    assert.deepEqual([...first.body.subarray(0, 2)], [0xff, 0xd8]);
    assert.equal(first.headers['content-encoding'], undefined);
    const second = await get('/1.2.3.4', { authorization: 'Basic YTpi' });
    assert.equal(second.headers['x-cbmir-thumbnail-cache'], 'HIT');
    assert.deepEqual(second.body, JPEG);
  });

  test('Range and conditionals stay with the gateway: the PACS is asked for the whole image', async () => {
    await get('/1.2.3.5', {
      range: 'bytes=0-1',
      'if-range': '"e"',
      'if-none-match': '"e"',
      'if-modified-since': 'Thu, 01 Jan 2026 00:00:00 GMT',
      'if-match': '"e"',
      'if-unmodified-since': 'Thu, 01 Jan 2026 00:00:00 GMT',
    });
    const h = seen.at(-1) ?? {};
    for (const name of ['range', 'if-range', 'if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since'])
      assert.equal(h[name], undefined, name);
  });

  test('a PACS that encodes all the same: its Content-Encoding is passed on, and the answer is not cached', async () => {
    const first = await get('/1.2.3.6?always=1', {});
    assert.equal(first.headers['content-encoding'], 'gzip');
    assert.deepEqual([...first.body.subarray(0, 2)], [0x1f, 0x8b]);
    const again = await get('/1.2.3.6?always=1', {});
    assert.equal(again.headers['x-cbmir-thumbnail-cache'], 'MISS');
  });
});
