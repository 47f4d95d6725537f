/**
 * When the PACS is down or stalls, the gateway answers 502/504 with a problem
 * body, quickly and never hangs. "Down" is a port nothing listens on; "slow"
 * is a TCP peer that accepts connections and never answers (the failure mode
 * of a wedged PACS), so the timeout path is exercised for real.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import http from 'node:http';
import { freePort } from '../helpers/ports.js';
import { testStack } from '../helpers/stack.js';
import {
  deleteStudies,
  json,
  raw,
  referencedSops,
  sample,
  startGateway,
  stowBody,
  uploadThenRead,
  type Running,
} from './gateway-fixture.js';

describe('gateway with an unavailable PACS', () => {
  let down: Running;
  let slow: Running;
  let stall: net.Server;
  const held: net.Socket[] = [];

  before(async () => {
    const deadPort = await freePort();
    down = await startGateway({ CBMIR_PACS_URL: `http://127.0.0.1:${deadPort}/dicom-web` });
    stall = net.createServer((s) => {
      held.push(s);
      s.on('error', () => {});
    });
    await new Promise<void>((r) => stall.listen(0, '127.0.0.1', r));
    const stallPort = (stall.address() as net.AddressInfo).port;
    slow = await startGateway({ CBMIR_PACS_URL: `http://127.0.0.1:${stallPort}/dicom-web`, CBMIR_PACS_TIMEOUT_MS: '500' });
    // First requests compile the hot path; the timing assertions are about the PACS, not about that.
    await raw(`${down.base}/dicom-web/studies`);
    await raw(`${down.base}/dicom-web/studies/1.2.3/series/1.2.4/instances/1.2.5/thumbnail`);
  });
  after(async () => {
    await down?.close();
    await slow?.close();
    for (const s of held) s.destroy();
    await new Promise<void>((r) => stall.close(() => r()));
  });

  test('PACS down → 502 problem within a second, for QIDO, WADO, STOW and thumbnails', async () => {
    for (const [method, path] of [
      ['GET', '/dicom-web/studies'],
      ['GET', '/dicom-web/studies/1.2.3/series/1.2.4/instances/1.2.5'],
      ['GET', '/dicom-web/studies/1.2.3/series/1.2.4/instances/1.2.5/thumbnail'],
      ['POST', '/dicom-web/studies'],
      ['GET', '/wado?requestType=WADO&studyUID=1.2&seriesUID=1.3&objectUID=1.4'],
    ] as const) {
      const r = await raw(down.base, {
        method,
        path,
        headers: method === 'POST' ? { 'content-type': 'multipart/related; type="application/dicom"; boundary=b' } : {},
        body: method === 'POST' ? Buffer.from('--b--\r\n') : undefined,
        timeoutMs: 3000,
      });
      assert.equal(r.status, 502, `${method} ${path}`);
      assert.equal(r.headers['content-type'], 'application/problem+json');
      assert.equal(json<{ code: string }>(r).code, 'UPSTREAM_UNREACHABLE');
      assert.ok(r.ms < 1000, `${path} took ${r.ms} ms`);
    }
    const ready = await raw(`${down.base}/readyz`);
    assert.equal(ready.status, 503);
    const body = json<{ checks: Record<string, { ok: boolean }> }>(ready);
    assert.equal(body.checks.pacs?.ok, false);
    // Alive, though not ready.
    assert.equal((await raw(`${down.base}/healthz`)).status, 200);
  });

  test('PACS down during a large STOW upload → the uploader reads the 502, not a connection reset', async () => {
    // An uploader that sends its whole body before it reads the answer (many DICOMweb clients do).
    const answer = await uploadThenRead(down.base, '/dicom-web/studies', 48 << 20);
    assert.match(answer, /^HTTP\/1\.1 502 /, answer.slice(0, 80));
    assert.match(answer, /UPSTREAM_UNREACHABLE/);
  });

  test('PACS stalls → 504 problem after CBMIR_PACS_TIMEOUT_MS', async () => {
    const r = await raw(`${slow.base}/dicom-web/studies`, { timeoutMs: 5000 });
    assert.equal(r.status, 504);
    assert.equal(json<{ code: string }>(r).code, 'UPSTREAM_TIMEOUT');
    assert.ok(r.ms >= 450 && r.ms < 2000, `took ${r.ms} ms`);
  });

  test('a STOW upload slower than CBMIR_PACS_TIMEOUT_MS is not cut: the clock starts when the body is sent', async () => {
    const stack = testStack();
    const gw = await startGateway({ CBMIR_PACS_TIMEOUT_MS: '400' });
    const file = sample('transfer-syntax/mr_small_implicit.dcm');
    const { body, contentType } = stowBody([file]);
    try {
      const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = http.request(`${gw.base}/dicom-web/studies`, { method: 'POST', headers: { 'content-type': contentType } }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        });
        req.on('error', reject);
        // 6 pieces, 250 ms apart: 1.25 s of upload against a 0.4 s PACS timeout.
        const step = Math.ceil(body.length / 6);
        let i = 0;
        const next = (): void => {
          const piece = body.subarray(i * step, (i + 1) * step);
          i++;
          if (i >= 6) req.end(piece);
          else req.write(piece, () => setTimeout(next, 250));
        };
        next();
      });
      assert.equal(answer.status, 200, answer.text.slice(0, 200));
      const sops = referencedSops(JSON.parse(answer.text));
      assert.equal(sops.length, 1);
      const found = json<Record<string, { Value: string[] }>[]>(
        await raw(`${stack.orthancDicomWebUrl}/instances?SOPInstanceUID=${sops[0]}`),
      );
      await deleteStudies(
        stack.orthancUrl,
        found.map((f) => f['0020000D']!.Value[0]!),
      );
    } finally {
      await gw.close();
    }
  });

  test('a STOW the PACS answers after CBMIR_PACS_TIMEOUT_MS is answered: after the upload the wait is CBMIR_PACS_STOW_TIMEOUT_MS', async () => {
    const storing = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => setTimeout(() => res.writeHead(200, { 'content-type': 'application/dicom+json' }).end('{}'), 1200));
    });
    await new Promise<void>((r) => storing.listen(0, '127.0.0.1', r));
    const port = (storing.address() as net.AddressInfo).port;
    const gw = await startGateway({
      CBMIR_PACS_URL: `http://127.0.0.1:${port}/dicom-web`,
      CBMIR_PACS_TIMEOUT_MS: '400',
      CBMIR_PACS_STOW_TIMEOUT_MS: '5000',
    });
    try {
      const r = await raw(`${gw.base}/dicom-web/studies`, {
        method: 'POST',
        headers: { 'content-type': 'multipart/related; type="application/dicom"; boundary=b' },
        body: Buffer.from('--b--\r\n'),
        timeoutMs: 10_000,
      });
      assert.equal(r.status, 200, r.body.toString());
    } finally {
      await gw.close();
      storing.closeAllConnections();
      storing.close();
    }
  });

  test('upstream failures are counted in /metrics', async () => {
    const m = (await raw(`${down.base}/metrics`)).body.toString();
    assert.match(m, /cbmir_gateway_upstream_errors_total\{kind="unreachable"\} [1-9]/);
    assert.match(m, /cbmir_gateway_http_request_duration_seconds_count\{route="qido",method="GET",status="502"\} 2/);
  });
});
