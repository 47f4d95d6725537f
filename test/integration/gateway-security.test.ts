/**
 * Only the DICOMweb surface is reachable through the gateway: every spelling
 * of a way out of /dicom-web is refused with a 400 problem body before the
 * PACS sees it, Orthanc's own REST API and the plugin's other resources stay
 * unreachable, and header, body and query sizes are bounded.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { after, before, describe, test } from 'node:test';
import { testStack } from '../helpers/stack.js';
import { json, raw, startGateway, uploadThenRead, type Running } from './gateway-fixture.js';

interface Problem {
  code: string;
  status: number;
  type: string;
  title: string;
}

describe('gateway security', () => {
  const stack = testStack();
  let gw: Running;

  before(async () => {
    gw = await startGateway({ CBMIR_MAX_BODY_BYTES: '65536', CBMIR_MAX_QUERY_BYTES: '1024', CBMIR_MAX_HEADER_BYTES: '4096' });
  });
  after(() => gw?.close());

  test('traversal and near-miss paths are refused with 400 and a problem body', async () => {
    const attempts = [
      '/dicom-web/../system',
      '/dicom-web/./studies',
      '/dicom-web/%2e%2e/system',
      '/dicom-web/%2E%2E/system',
      '/dicom-web/.%2e/system',
      '/dicom-web/..%2fsystem',
      '/dicom-web/..%2Fsystem',
      '/dicom-web/studies%2f..%2f..%2fsystem',
      '/dicom-web/%252e%252e/system',
      '/dicom-web/..\\system',
      '/dicom-web\\..\\system',
      '/dicom-web/%5c../system',
      '/dicom-webX',
      '/dicom-web..',
      '/dicom-web-tools/system',
      '/dicom-web//studies',
      '//dicom-web/studies',
      '/dicom-web/studies/%00',
      '/dicom-web/studies;/../../system',
      '/wado/../system',
      '/wadoX',
    ];
    for (const path of attempts) {
      const r = await raw(gw.base, { path });
      assert.equal(r.status, 400, `${path} → ${r.status}`);
      assert.equal(r.headers['content-type'], 'application/problem+json', path);
      const p = json<Problem>(r);
      assert.equal(p.status, 400);
      assert.ok(p.code === 'BAD_PATH' || p.code === 'BAD_UID', `${path}: ${p.code}`);
    }
  });

  test("Orthanc's REST API and the plugin's other resources are unreachable", async () => {
    // Each exists on the PACS (sanity check), but not through the gateway.
    const orthancOnly = ['/system', '/instances', '/patients', '/tools/find', '/plugins', '/app/explorer.html'];
    for (const path of orthancOnly) {
      const direct = await raw(stack.orthancUrl, { path });
      assert.notEqual(direct.status, 404, `${path} exists on Orthanc`);
      const r = await raw(gw.base, { path });
      assert.equal(r.status, 404, `${path} → ${r.status}`);
      assert.equal(json<Problem>(r).code, 'NOT_FOUND');
      assert.ok(!r.body.toString().includes('ApiVersion'));
    }
    for (const path of ['/dicom-web/servers', '/dicom-web/info', '/dicom-web/studies/1.2.3/series/1.2.4/instances/1.2.5/../../../..']) {
      const r = await raw(gw.base, { path });
      assert.ok(r.status === 404 || r.status === 400, `${path} → ${r.status}`);
      // The gateway's own refusal, not the PACS's 404 passed through.
      assert.match(r.headers['content-type'] ?? '', /^application\/problem\+json/, path);
      assert.ok(['NOT_FOUND', 'BAD_PATH'].includes(json<Problem>(r).code), `${path}: ${r.body.toString()}`);
    }
    // DELETE on a DICOMweb resource never reaches Orthanc's REST API.
    const del = await raw(gw.base, { path: '/dicom-web/studies/1.2.3', method: 'DELETE' });
    assert.equal(del.status, 405);
    assert.equal(json<Problem>(del).code, 'METHOD_NOT_ALLOWED');
    assert.equal(del.headers.allow, 'GET, HEAD, POST, OPTIONS', 'a 405 says what the resource serves');
  });

  test('method overrides never reach Orthanc, which would read a GET carrying one as a DELETE', async () => {
    // Orthanc's own reading: the override turns the QIDO into a DELETE (405 on this route; on its REST API, a deletion).
    const path = '/dicom-web/studies?limit=1';
    assert.equal((await raw(stack.orthancUrl, { path, headers: { 'x-http-method-override': 'DELETE' } })).status, 405);
    assert.equal((await raw(stack.orthancUrl, { path: `${path}&_method=DELETE` })).status, 405);
    // Through the gateway: the header is dropped (the GET is answered), the parameter refused.
    const overridden = await raw(gw.base, { path, headers: { 'x-http-method-override': 'DELETE' } });
    assert.equal(overridden.status, 200, overridden.body.toString());
    const param = await raw(gw.base, { path: `${path}&_method=DELETE` });
    assert.equal(param.status, 400);
    assert.equal(json<Problem>(param).code, 'BAD_PARAM');
  });

  test('malformed UIDs in paths and WADO-URI queries are refused', async () => {
    for (const path of [
      '/dicom-web/studies/1.2.abc/series',
      '/dicom-web/studies/1..2/metadata',
      `/dicom-web/studies/${'1.'.repeat(40)}1/metadata`,
      '/dicom-web/studies/1.2/series/1.3/instances/1.4/frames/0',
      '/dicom-web/studies/1.2/series/1.3/instances/1.4/frames/1,x',
      '/wado?requestType=WADO&studyUID=1.2&seriesUID=1.3&objectUID=1.4x',
      '/wado?studyUID=1.2&seriesUID=1.3&objectUID=1.4',
      '/wado?requestType=WADO&studyUID=1.2&seriesUID=1.3&objectUID=1.4&objectUID=..%2Fsystem',
    ]) {
      const r = await raw(gw.base, { path });
      assert.equal(r.status, 400, `${path} → ${r.status}`);
    }
  });

  test('a loopback-bound gateway answers only to loopback Host names (DNS rebinding)', async () => {
    for (const host of [`127.0.0.1:${gw.port}`, `localhost:${gw.port}`, `[::1]:${gw.port}`, 'LOCALHOST']) {
      const r = await raw(gw.base, { path: '/healthz', headers: { host } });
      assert.equal(r.status, 200, host);
    }
    for (const host of [`rebind.attacker.example:${gw.port}`, '127.0.0.1.attacker.example', 'localhost.']) {
      const r = await raw(gw.base, { path: '/dicom-web/studies', headers: { host } });
      assert.equal(r.status, 403, host);
      assert.equal(json<Problem>(r).code, 'HOST_NOT_ALLOWED');
    }
  });

  test('no cross-origin access unless origins are configured', async () => {
    const r = await raw(gw.base, { path: '/dicom-web/studies', headers: { origin: 'https://any-site.example' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers['access-control-allow-origin'], undefined);
    const pre = await raw(gw.base, {
      method: 'OPTIONS',
      path: '/dicom-web/studies',
      headers: {
        origin: 'https://any-site.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type',
      },
    });
    assert.equal(pre.headers['access-control-allow-origin'], undefined);
    assert.equal(pre.headers['access-control-allow-methods'], undefined);
  });

  test('query strings, headers and STOW bodies are bounded', async () => {
    const longQuery = await raw(gw.base, { path: `/dicom-web/studies?PatientName=${'A'.repeat(2000)}` });
    assert.equal(longQuery.status, 400);
    assert.equal(json<Problem>(longQuery).code, 'BAD_PARAM');

    const bigHeader = await raw(gw.base, { path: '/dicom-web/studies', headers: { 'x-filler': 'x'.repeat(8000) } });
    assert.equal(bigHeader.status, 431);

    const declared = await raw(gw.base, {
      path: '/dicom-web/studies',
      method: 'POST',
      headers: { 'content-type': 'multipart/related; type="application/dicom"; boundary=x' },
      body: Buffer.alloc(70_000, 0x20),
    });
    assert.equal(declared.status, 413);
    assert.equal(json<Problem>(declared).code, 'PAYLOAD_TOO_LARGE');
  });

  test('an upload declared over the limit is answered 413 after it is read, not reset under the client', async () => {
    // The uploader sends its whole body before it reads the answer.
    const answer = await uploadThenRead(gw.base, '/dicom-web/studies', 8 << 20);
    assert.match(answer, /^HTTP\/1\.1 413 /, answer.slice(0, 80));
    assert.match(answer, /PAYLOAD_TOO_LARGE/);
  });

  test('an upload declared over the limit with Expect: 100-continue is refused before its body: 413, no 100', async () => {
    const { port } = new URL(gw.base);
    const answer = await new Promise<string>((resolve) => {
      const sock = net.connect(Number(port), '127.0.0.1');
      let got = '';
      sock.on('data', (d) => (got += d.toString('latin1')));
      sock.on('error', () => undefined);
      sock.on('close', () => resolve(got));
      sock.write(
        'POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Length: 3000000000\r\n' +
          'Content-Type: multipart/related; type="application/dicom"; boundary=b\r\n\r\n',
      );
      setTimeout(() => sock.destroy(), 5000);
    });
    assert.match(answer, /^HTTP\/1\.1 413 /, answer.slice(0, 80));
    assert.ok(!answer.includes('100 Continue'), 'the client is never invited to send the body');
    assert.match(answer, /\r\nConnection: close\r\n/i);
    assert.match(answer, /PAYLOAD_TOO_LARGE/);
  });

  test('a chunked STOW body is counted while it streams and cut at the limit', async () => {
    const { port } = new URL(gw.base);
    const answer = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(Number(port), '127.0.0.1');
      let got = '';
      sock.on('data', (d) => (got += d.toString('latin1')));
      sock.on('close', () => resolve(got));
      sock.on('error', (e) => (got ? resolve(got) : reject(e)));
      sock.write(
        'POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n' +
          'Content-Type: multipart/related; type="application/dicom"; boundary=b\r\n\r\n',
      );
      const chunk = Buffer.alloc(16 * 1024, 0x41);
      let sent = 0;
      const pump = (): void => {
        if (sent >= 10 || sock.destroyed) return;
        sent++;
        sock.write(`${chunk.length.toString(16)}\r\n`);
        sock.write(chunk);
        sock.write('\r\n', () => setTimeout(pump, 5));
      };
      pump();
      setTimeout(() => sock.destroy(), 5000);
    });
    assert.match(answer, /^HTTP\/1\.1 413 /, answer.slice(0, 80));
    assert.match(answer, /PAYLOAD_TOO_LARGE/);
  });

  test('problem bodies and request logs carry no query string, UID or credential', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }));
    const logged = await startGateway({}, { logger });
    try {
      const r = await raw(logged.base, { path: '/dicom-web/studies/not-a-uid?PatientName=Doe^Jane' });
      assert.equal(r.status, 400);
      assert.ok(!r.body.toString().includes('Doe'));
      const q = await raw(logged.base, {
        path: '/dicom-web/studies?PatientName=Doe^Jane&StudyInstanceUID=1.2.826.0.1.3680043.99.1',
        headers: { authorization: 'Basic c2VjcmV0OnNlY3JldA==' },
      });
      assert.equal(q.status, 200);
      await new Promise((res) => setTimeout(res, 20));
      const all = lines.join('');
      assert.match(all, /"route":"qido"/, 'the request is logged by route class');
      for (const secret of ['Doe', 'PatientName', '1.2.826.0.1.3680043.99.1', 'c2VjcmV0', 'not-a-uid']) {
        assert.ok(!all.includes(secret), `log must not contain ${secret}`);
      }
    } finally {
      await logged.close();
    }
  });
});
