/**
 * What viewers need beyond plain pass-through: media-type fixes (the `accept`
 * query parameter wins; `*∕*` and missing Accept get DICOM defaults), thumbnails
 * for a PACS without them, CORS preflights with quoted Accept values, public
 * URLs behind a reverse proxy, extension routes, health and graceful shutdown.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { testStack } from '../helpers/stack.js';
import { deleteStudies, json, raw, sample, startGateway, storeDirect, type Running, type StoredUids } from './gateway-fixture.js';

const OHIF_FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';

describe('gateway features viewers rely on', () => {
  const stack = testStack();
  let gw: Running;
  let u: StoredUids;
  let inst: string;

  before(async () => {
    u = await storeDirect(stack.orthancUrl, sample('transfer-syntax/siemens_mosaic_7.dcm'));
    inst = `/dicom-web/studies/${u.study}/series/${u.series}/instances/${u.instance}`;
    gw = await startGateway({ CBMIR_CORS_ORIGINS: 'http://viewer.example,http://other.example', CBMIR_THUMBNAIL_CACHE_ENTRIES: '2' });
  });
  after(async () => {
    await gw?.close();
    await deleteStudies(stack.orthancUrl, [u.study]);
  });

  test("OHIF's rendered request (multipart Accept + ?accept=image/jpeg) gets a JPEG; Orthanc alone refuses it", async () => {
    const headers = { accept: 'multipart/related; type="image/jpeg"' };
    const direct = await raw(`${stack.orthancUrl}${inst}/rendered?accept=image/jpeg`, { headers });
    assert.equal(direct.status, 400, 'the PACS alone rejects it (if this changes, the fix is no longer needed)');
    const r = await raw(`${gw.base}${inst}/rendered?accept=image%2Fjpeg`, { headers });
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'image/jpeg');
    assert.deepEqual([...r.body.subarray(0, 3)], [0xff, 0xd8, 0xff]);
    // The parameter wins over the header in the other direction too.
    const png = await raw(`${gw.base}${inst}/rendered?accept=image/png`, { headers: { accept: 'image/jpeg' } });
    assert.equal(png.headers['content-type'], 'image/png');
  });

  test('WADO-RS retrieve with */* or no Accept (and a stray Content-Type) gets multipart DICOM', async () => {
    for (const headers of [{ accept: '*/*', 'content-type': 'application/json' }, {}, { accept: '*/*;q=0.8' }] as Record<
      string,
      string
    >[]) {
      const r = await raw(`${gw.base}${inst}`, { headers });
      assert.equal(r.status, 200, JSON.stringify(headers));
      assert.match(r.headers['content-type'] ?? '', /^multipart\/related; type="application\/dicom"; boundary=/);
      assert.ok(r.body.includes(Buffer.from('DICM')), 'a Part 10 file is in the body');
    }
  });

  test('QIDO without Accept gets DICOM JSON', async () => {
    const r = await raw(`${gw.base}/dicom-web/studies?StudyInstanceUID=${u.study}`, { headers: { accept: '*/*' } });
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'] ?? '', /^application\/dicom\+json/);
    assert.equal(json<unknown[]>(r).length, 1);
  });

  test('thumbnails at every level, cached, in JPEG or PNG, with a viewport', async () => {
    const levels = [`/dicom-web/studies/${u.study}`, `/dicom-web/studies/${u.study}/series/${u.series}`, inst, `${inst}/frames/1`];
    for (const l of levels) {
      const direct = await raw(`${stack.orthancUrl}${l}/thumbnail`);
      assert.equal(direct.status, 404, 'plugin 1.7 has no thumbnails (if this changes, flip quirks.hasThumbnail)');
      const r = await raw(`${gw.base}${l}/thumbnail`);
      assert.equal(r.status, 200, l);
      assert.equal(r.headers['content-type'], 'image/jpeg');
      assert.deepEqual([...r.body.subarray(0, 2)], [0xff, 0xd8]);
    }
    const png = await raw(`${gw.base}${inst}/thumbnail?viewport=64,64`, { headers: { accept: 'image/png' } });
    assert.equal(png.headers['content-type'], 'image/png');
    assert.equal(png.body.readUInt32BE(16), 64, 'PNG width honours the viewport');
    // A browser keeps it no longer than the gateway's cache (api.md: 5 minutes), per credentials and media type.
    assert.equal(png.headers['cache-control'], 'private, max-age=300');
    for (const h of ['authorization', 'cookie', 'accept'])
      assert.ok(String(png.headers.vary).toLowerCase().split(/\s*,\s*/).includes(h), String(png.headers.vary));
    const hit = await raw(`${gw.base}${inst}/thumbnail?viewport=64,64`, { headers: { accept: 'image/png' } });
    assert.equal(hit.headers['x-cbmir-thumbnail-cache'], 'HIT');
    assert.ok(hit.body.equals(png.body));
    // A hit skips the PACS, so another caller's credentials (a session cookie, an auth plugin's token header) never share it.
    for (const who of [{ cookie: 'session=someone-else' }, { token: 'another-user' }] as Record<string, string>[]) {
      const other = await raw(`${gw.base}${inst}/thumbnail?viewport=64,64`, { headers: { accept: 'image/png', ...who } });
      assert.equal(other.status, 200);
      assert.equal(other.headers['x-cbmir-thumbnail-cache'], 'MISS', JSON.stringify(who));
    }
    // Other query parameters (a ?token= login) reach the PACS's /rendered.
    const withToken = await raw(`${gw.base}${inst}/thumbnail?viewport=64,64&token=abc`, { headers: { accept: 'image/png' } });
    assert.equal(withToken.status, 200);
    assert.equal(withToken.headers['x-cbmir-thumbnail-cache'], 'MISS');
    const bad = await raw(`${gw.base}${inst}/thumbnail?viewport=64`);
    assert.equal(bad.status, 400);
    const missing = await raw(`${gw.base}/dicom-web/studies/1.2.3.4.5.6/thumbnail`);
    assert.equal(missing.status, 404, 'a PACS 404 passes through');
  });

  test('CORS: preflight with Authorization and a quoted Accept; allowed origins only', async () => {
    const pre = await raw(`${gw.base}${inst}/frames/1`, {
      method: 'OPTIONS',
      headers: {
        origin: 'http://viewer.example',
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'authorization,accept',
      },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], 'http://viewer.example');
    assert.equal(pre.headers['access-control-allow-headers'], 'authorization,accept');
    assert.match(pre.headers['access-control-allow-methods'] ?? '', /GET/);
    const get = await raw(`${gw.base}${inst}/frames/1`, { headers: { origin: 'http://viewer.example', accept: OHIF_FRAME_ACCEPT } });
    assert.equal(get.status, 200);
    assert.equal(get.headers['access-control-allow-origin'], 'http://viewer.example');
    assert.match(get.headers['access-control-expose-headers'] ?? '', /Content-Type/);
    for (const h of ['Retry-After', 'WWW-Authenticate', 'Server-Timing', 'X-Cbmir-Thumbnail-Cache'])
      assert.ok((get.headers['access-control-expose-headers'] ?? '').split(/\s*,\s*/).includes(h), h);
    // Without Origin the answer has no CORS headers, and says it depends on Origin (a shared cache must not reuse it for a CORS fetch).
    const plain = await raw(`${gw.base}${inst}/thumbnail`);
    assert.equal(plain.headers['access-control-allow-origin'], undefined);
    assert.ok(String(plain.headers.vary).toLowerCase().split(/\s*,\s*/).includes('origin'), String(plain.headers.vary));
    const foreign = await raw(`${gw.base}/dicom-web/studies`, {
      method: 'OPTIONS',
      headers: { origin: 'http://evil.example', 'access-control-request-method': 'GET' },
    });
    assert.equal(foreign.headers['access-control-allow-origin'], undefined);
  });

  test('URLs in answers follow X-Forwarded-Host/-Proto, or CBMIR_PUBLIC_URL when set', async () => {
    const q = `/dicom-web/studies?StudyInstanceUID=${u.study}`;
    const fwd = await raw(`${gw.base}${q}`, { headers: { 'x-forwarded-host': 'pacs.example.org', 'x-forwarded-proto': 'https' } });
    assert.ok(fwd.body.toString().includes(`"https://pacs.example.org/dicom-web/studies/${u.study}"`));
    const vary = String(fwd.headers.vary).toLowerCase().split(/\s*,\s*/);
    assert.ok(vary.includes('x-forwarded-host') && vary.includes('x-forwarded-proto'), String(fwd.headers.vary));
    const fixed = await startGateway({ CBMIR_PUBLIC_URL: 'https://gw.example.org/cbmir' });
    try {
      const r = await raw(`${fixed.base}${q}`);
      assert.ok(r.body.toString().includes(`"https://gw.example.org/cbmir/dicom-web/studies/${u.study}"`));
      const meta = await raw(`${fixed.base}${inst}/metadata`);
      assert.ok(meta.body.toString().includes('"BulkDataURI" : "https://gw.example.org/cbmir/dicom-web/studies/'));
      assert.ok(!meta.body.toString().includes(stack.orthancUrl));
    } finally {
      await fixed.close();
    }
  });

  test('extension routes registered on app are served; unknown paths get a 404 problem', async () => {
    gw.gw.app.get('/similar-probe', (_req, res) => {
      res.json({ ok: true });
    });
    const r = await raw(`${gw.base}/similar-probe`);
    assert.equal(r.status, 200);
    assert.deepEqual(json(r), { ok: true });
    const nf = await raw(`${gw.base}/nothing-here`);
    assert.equal(nf.status, 404);
    assert.equal(json<{ code: string }>(nf).code, 'NOT_FOUND');
  });

  test('readiness includes pluggable checks; metrics count requests by route class', async () => {
    gw.gw.addReadinessCheck({ name: 'index', check: async () => Promise.reject(new Error('index offline')) });
    const r = await raw(`${gw.base}/readyz`);
    assert.equal(r.status, 503);
    const body = json<{ checks: Record<string, { ok: boolean; error?: string }> }>(r);
    assert.equal(body.checks.pacs?.ok, true);
    assert.deepEqual([body.checks.index?.ok, body.checks.index?.error], [false, 'index offline']);
    const m = (await raw(`${gw.base}/metrics`)).body.toString();
    assert.match(m, /cbmir_gateway_http_request_duration_seconds_count\{route="thumbnail",method="GET",status="200"\} [1-9]/);
    assert.ok(!m.includes(u.study), 'no UIDs in metrics');
  });

  test('graceful shutdown: in-flight requests finish, new ones get 503, then the port closes', { timeout: 30_000 }, async () => {
    const g = await startGateway({ CBMIR_SHUTDOWN_GRACE_MS: '3000' });
    let closeHookRan = false;
    // A hook that never finishes (a client stuck reconnecting) is cut off; the next one still runs.
    g.gw.addCloseHook(() => new Promise<void>(() => {}));
    g.gw.addCloseHook(() => {
      closeHookRan = true;
    });
    // An in-flight request: the instance retrieve has answered its headers (so the
    // gateway is surely serving it, however loaded the machine) and its body is unread.
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      http.get(`${g.base}${inst}`, { headers: { accept: 'multipart/related; type="application/dicom"' } }, resolve).on('error', reject);
    });
    res.pause();
    let socketClosedAt = 0;
    res.socket.once('close', () => (socketClosedAt = Date.now()));
    // A connection opened before the shutdown that sends its request after it: a new request
    // while draining. (A new connection would be refused: the listener is closed at once.)
    const port = Number(new URL(g.base).port);
    const late = net.connect(port, '127.0.0.1');
    await new Promise<void>((r) => late.once('connect', () => r()));
    const closing = g.close();
    late.write('GET /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const during = new Promise<string>((resolve) => {
      let got = '';
      late.on('data', (d: Buffer) => (got += d.toString('latin1')));
      late.on('error', () => undefined);
      late.on('close', () => resolve(got));
    });
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.resume();
    await new Promise<void>((resolve, reject) => res.on('end', resolve).on('error', reject));
    const endedAt = Date.now();
    assert.equal(res.statusCode, 200, 'in-flight request completed');
    assert.ok(Buffer.concat(chunks).length > 100_000, 'with its whole body');
    await closing;
    // Its keep-alive connection was closed as soon as it was idle, not after the keep-alive timeout.
    assert.ok(socketClosedAt > 0 && socketClosedAt - endedAt < 1_500, `connection closed ${socketClosedAt - endedAt} ms after the answer`);
    assert.ok(closeHookRan, 'close hooks run last');
    const wire = await during;
    assert.match(wire, /^HTTP\/1\.1 503 /, wire.slice(0, 200));
    assert.match(wire, /"code":"NOT_READY"/);
    const after = await raw(`${g.base}/healthz`).catch((e: Error) => e);
    assert.ok(after instanceof Error, 'port closed after shutdown');
  });
});
