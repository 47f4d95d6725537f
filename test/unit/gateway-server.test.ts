/**
 * The gateway's HTTP edge (gateway/server.ts) in front of a stand-in PACS: a node:http server
 * that records what reaches it and answers a QIDO with a RetrieveURL under its own root. Raw
 * sockets where the bytes on the wire matter (100 Continue, pipelining, error replies).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../core/config.js';
import { createGateway, type Gateway } from '../../gateway/server.js';

interface FakePacs {
  readonly url: string;
  readonly seen: http.IncomingHttpHeaders[];
  close(): Promise<void>;
}

async function startFakePacs(): Promise<FakePacs> {
  const seen: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.headers);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const root = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/dicom-web`;
      const body = JSON.stringify([{ '00081190': { vr: 'UR', Value: [`${root}/studies/1.2.3`] }, bytes: Buffer.concat(chunks).length }]);
      res.writeHead(200, { 'content-type': 'application/dicom+json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/dicom-web`,
    seen,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

interface Running {
  readonly gw: Gateway;
  readonly port: number;
  readonly base: string;
}

async function startGateway(env: Record<string, string>, host = '127.0.0.1'): Promise<Running> {
  const gw = createGateway(loadConfig({ CBMIR_LOG_LEVEL: 'silent', CBMIR_PACS_TIMEOUT_MS: '3000', ...env }), { defaultMetrics: false });
  const { port } = await gw.listen(0, host);
  return { gw, port, base: `http://127.0.0.1:${port}` };
}

interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

function request(base: string, path: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${path}`, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Write `head` (and later `body` once 100 Continue is seen, if given) on a raw socket; resolve with all bytes read until close. */
function rawExchange(port: number, head: string, opts: { bodyOnContinue?: string; endAfterMs?: number } = {}): Promise<string> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let got = '';
    let sent = false;
    sock.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (opts.bodyOnContinue !== undefined && !sent && got.includes('100 Continue\r\n\r\n')) {
        sent = true;
        sock.write(opts.bodyOnContinue);
      }
    });
    sock.on('error', () => undefined); // a reset after the answer is allowed: the bytes read are what counts
    sock.on('close', () => resolve(got));
    sock.write(head);
    setTimeout(() => sock.end(), opts.endAfterMs ?? 1000);
  });
}

const statusLines = (wire: string): string[] => wire.match(/HTTP\/1\.1 \d{3}[^\r]*/g) ?? [];
const varyOf = (a: Answer): string[] =>
  String(a.headers.vary ?? '')
    .toLowerCase()
    .split(/\s*,\s*/)
    .filter(Boolean);

describe('gateway HTTP edge', () => {
  let pacs: FakePacs;
  let gw: Running;

  before(async () => {
    pacs = await startFakePacs();
    gw = await startGateway({
      CBMIR_PACS_URL: pacs.url,
      CBMIR_MAX_BODY_BYTES: '4096',
      CBMIR_MAX_HEADER_BYTES: '4096',
      CBMIR_CORS_ORIGINS: 'http://viewer.example',
    });
  });
  after(async () => {
    await gw?.gw.close();
    await pacs?.close();
  });

  test('Expect: 100-continue: a refused upload gets its answer and no 100; an accepted one gets 100, then the answer', async () => {
    const post = (path: string, extra = ''): string =>
      `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}Content-Type: multipart/related; type="application/dicom"; boundary=b\r\n` +
      'Expect: 100-continue\r\n';
    const refusals: [string, string][] = [
      [`${post('/dicom-web/studies')}Content-Length: 5000000\r\n\r\n`, '413'],
      [`${post('/dicom-web/studies/1.2/series')}Content-Length: 10\r\n\r\n`, '405'],
      [`${post('/dicom-web/../system')}Content-Length: 10\r\n\r\n`, '400'],
      [`${post('/dicom-web/nothing')}Content-Length: 10\r\n\r\n`, '404'],
      [`POST /dicom-web/studies HTTP/1.1\r\nHost: rebind.example\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n`, '403'],
    ];
    for (const [head, status] of refusals) {
      const wire = await rawExchange(gw.port, head, { bodyOnContinue: 'x'.repeat(10) });
      assert.deepEqual(
        statusLines(wire).map((l) => l.slice(9, 12)),
        [status],
        wire.slice(0, 200),
      );
      assert.match(wire, /\r\nConnection: close\r\n/i, 'the body never invited cannot be told from a next request');
    }
    const accepted = await rawExchange(gw.port, `${post('/dicom-web/studies')}Content-Length: 10\r\n\r\n`, {
      bodyOnContinue: '0123456789',
    });
    assert.deepEqual(statusLines(accepted), ['HTTP/1.1 100 Continue', 'HTTP/1.1 200 OK'], accepted.slice(0, 200));
    assert.match(accepted, /"bytes":10/, 'the body reached the PACS');
  });

  test('Expect: 100-continue on a STOW the PACS refuses from its head: its 401 without 100, and the body is never sent', async () => {
    // A PACS that honours Expect and checks credentials from the head, answering with a JSON body
    // (mapped by the gateway, so its head goes out only once that body is read).
    const expects: string[] = [];
    let bodyBytes = 0;
    const refusing = http.createServer((req) => req.on('data', (c: Buffer) => (bodyBytes += c.length)));
    refusing.on('checkContinue', (req, res) => {
      expects.push(String(req.headers.expect));
      const body = '{"error":"who are you?"}';
      res.writeHead(401, { 'www-authenticate': 'Basic realm="pacs"', 'content-type': 'application/json', 'content-length': body.length });
      res.end(body);
    });
    await new Promise<void>((r) => refusing.listen(0, '127.0.0.1', r));
    const g = await startGateway({ CBMIR_PACS_URL: `http://127.0.0.1:${(refusing.address() as net.AddressInfo).port}/dicom-web` });
    try {
      const wire = await rawExchange(
        g.port,
        'POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n' +
          'Content-Type: multipart/related; type="application/dicom"; boundary=b\r\nContent-Length: 1000000\r\n\r\n',
        { bodyOnContinue: 'x'.repeat(1_000_000), endAfterMs: 2000 },
      );
      assert.deepEqual(statusLines(wire), ['HTTP/1.1 401 Unauthorized'], wire.slice(0, 300));
      assert.match(wire, /\r\nConnection: close\r\n/i, 'the body never invited cannot be told from a next request');
      assert.match(wire, /\r\nwww-authenticate: Basic realm="pacs"\r\n/i);
      assert.match(wire, /who are you\?/);
      assert.deepEqual(expects, ['100-continue']);
      assert.equal(bodyBytes, 0);
    } finally {
      await g.gw.close();
      await new Promise<void>((r) => refusing.close(() => r()));
    }
  });

  test('Expect: 100-continue during shutdown: 503 without 100', async () => {
    const g = await startGateway({ CBMIR_PACS_URL: pacs.url, CBMIR_SHUTDOWN_GRACE_MS: '2000' });
    // A request in flight keeps the listener draining (not closed) while the next one comes in on its own connection.
    const sock = net.connect(g.port, '127.0.0.1');
    await new Promise<void>((r) => sock.once('connect', () => r()));
    const closing = g.gw.close();
    sock.write(
      'POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Length: 10\r\n' +
        'Content-Type: multipart/related; type="application/dicom"; boundary=b\r\n\r\n',
    );
    const wire = await new Promise<string>((resolve) => {
      let got = '';
      sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
      sock.on('error', () => undefined);
      sock.on('close', () => resolve(got));
    });
    await closing;
    assert.deepEqual(
      statusLines(wire).map((l) => l.slice(9, 12)),
      ['503'],
      wire.slice(0, 200),
    );
  });

  test('the operations endpoints answer at their exact paths only (a proxy rule for /metrics covers them)', async () => {
    assert.equal((await request(gw.base, '/metrics')).status, 200);
    assert.equal((await request(gw.base, '/healthz')).status, 200);
    for (const path of ['/METRICS', '/Metrics', '/metrics/', '/READYZ', '/readyz/', '/Healthz', '/healthz/']) {
      const r = await request(gw.base, path);
      assert.equal(r.status, 404, path);
      assert.equal(JSON.parse(r.body).code, 'NOT_FOUND', path);
      assert.ok(!r.body.includes('cbmir_gateway_'), path);
    }
  });

  test('405 answers carry Allow; OPTIONS lists the methods of the resource', async () => {
    const cases: [string, string, string][] = [
      ['DELETE', '/dicom-web/studies/1.2.3', 'GET, HEAD, POST, OPTIONS'],
      ['PUT', '/dicom-web/studies/1.2/series/1.3/metadata', 'GET, HEAD, OPTIONS'],
      ['POST', '/wado?requestType=WADO', 'GET, HEAD'],
      ['POST', '/similar-to/1.2.3/dicom-web/studies', 'GET, HEAD, OPTIONS'],
      ['DELETE', '/similar-to/1.2.3/dicom-web/studies', 'GET, HEAD, OPTIONS'],
      ['PUT', '/similar-to/1.2.3/dicom-web/studies/1.2.4', 'GET, HEAD, OPTIONS'],
    ];
    for (const [method, path, allow] of cases) {
      const r = await request(gw.base, path, { method });
      assert.equal(r.status, 405, `${method} ${path}`);
      assert.equal(r.headers.allow, allow, `${method} ${path}`);
      assert.equal(JSON.parse(r.body).code, 'METHOD_NOT_ALLOWED');
    }
    const options: [string, number, string | undefined][] = [
      ['/dicom-web/studies', 204, 'GET, HEAD, POST, OPTIONS'],
      ['/dicom-web/studies/1.2/series/1.3/instances/1.4/frames/1', 204, 'GET, HEAD, OPTIONS'],
      ['/similar-to/1.2.3/dicom-web/studies', 204, 'GET, HEAD, OPTIONS'],
      ['/dicom-web/servers', 404, undefined],
    ];
    for (const [path, status, allow] of options) {
      const r = await request(gw.base, path, { method: 'OPTIONS' });
      assert.deepEqual([r.status, r.headers.allow], [status, allow], path);
    }
  });

  test('with an origin list, every answer varies on Origin, merged with its own Vary; viewers can read the documented headers', async () => {
    for (const path of ['/healthz', '/nothing-here', '/dicom-web/studies']) {
      const plain = await request(gw.base, path);
      assert.ok(varyOf(plain).includes('origin'), `${path}: ${plain.headers.vary}`);
      assert.equal(plain.headers['access-control-allow-origin'], undefined);
    }
    const qido = await request(gw.base, '/dicom-web/studies', { headers: { origin: 'http://viewer.example' } });
    assert.deepEqual(varyOf(qido), ['origin', 'x-forwarded-host', 'x-forwarded-proto']);
    assert.equal(qido.headers['access-control-allow-origin'], 'http://viewer.example');
    const exposed = String(qido.headers['access-control-expose-headers'])
      .toLowerCase()
      .split(/\s*,\s*/);
    for (const h of ['retry-after', 'www-authenticate', 'server-timing', 'x-cbmir-thumbnail-cache', 'content-location', 'x-request-id'])
      assert.ok(exposed.includes(h), h);
    const open = await startGateway({ CBMIR_PACS_URL: pacs.url, CBMIR_CORS_ORIGINS: '*' });
    const closed = await startGateway({ CBMIR_PACS_URL: pacs.url });
    try {
      for (const g of [open, closed]) {
        const r = await request(g.base, '/healthz', { headers: { origin: 'http://viewer.example' } });
        assert.ok(!varyOf(r).includes('origin'), 'the answer does not depend on Origin');
      }
    } finally {
      await open.gw.close();
      await closed.gw.close();
    }
  });

  test('X-Forwarded-* steer the URLs in the answer but never reach the PACS; the answer varies on them', async () => {
    pacs.seen.length = 0;
    const r = await request(gw.base, '/dicom-web/studies', {
      headers: { 'x-forwarded-host': 'gw.example.org', 'x-forwarded-proto': 'https', 'x-forwarded-port': '443' },
    });
    assert.equal(r.status, 200);
    assert.match(r.body, /"https:\/\/gw\.example\.org\/dicom-web\/studies\/1\.2\.3"/);
    assert.ok(varyOf(r).includes('x-forwarded-host') && varyOf(r).includes('x-forwarded-proto'), String(r.headers.vary));
    const up = pacs.seen.at(-1) ?? {};
    assert.equal(up.forwarded, 'host=gw.example.org;proto=https');
    for (const h of ['x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port']) assert.equal(up[h], undefined, h);

    const fixed = await startGateway({ CBMIR_PACS_URL: pacs.url, CBMIR_PUBLIC_URL: 'https://gw.example.org/cbmir' });
    try {
      const f = await request(fixed.base, '/dicom-web/studies', { headers: { 'x-forwarded-host': 'other.example' } });
      assert.match(f.body, /"https:\/\/gw\.example\.org\/cbmir\/dicom-web\/studies\/1\.2\.3"/);
      assert.ok(!varyOf(f).includes('x-forwarded-host'), 'a configured public URL does not depend on them');
    } finally {
      await fixed.gw.close();
    }
  });

  test('a Host with "_" is used for URLs; bound to 0.0.0.0, a request without Host gets the address it came in on', async () => {
    const r = await request(gw.base, '/dicom-web/studies', { headers: { 'x-forwarded-host': 'cbmir_gateway:8080' } });
    assert.match(r.body, /"http:\/\/cbmir_gateway:8080\/dicom-web\/studies\/1\.2\.3"/);
    const wild = await startGateway({ CBMIR_PACS_URL: pacs.url, CBMIR_HOST: '0.0.0.0' }, '0.0.0.0');
    try {
      pacs.seen.length = 0;
      const wire = await rawExchange(wild.port, 'GET /dicom-web/studies HTTP/1.0\r\n\r\n');
      assert.match(wire, /^HTTP\/1\.1 200 /);
      assert.ok(wire.includes(`"http://127.0.0.1:${wild.port}/dicom-web/studies/1.2.3"`), wire);
      assert.equal(pacs.seen.at(-1)?.forwarded, `host=127.0.0.1:${wild.port};proto=http`);
    } finally {
      await wild.gw.close();
    }
  });

  test('a malformed percent-escape is a 400 problem on any route; express 4xx errors keep their status', async () => {
    gw.gw.app.get('/studies/:study/series/:series/instances/:sop/similar', (_req, res) => void res.json({}));
    gw.gw.app.get('/ui/:file', (_req, res) => void res.json({}));
    for (const path of ['/studies/%ZZ/series/1.2/instances/1.3/similar', '/ui/%ZZ', '/ui/%C0%AF']) {
      const r = await request(gw.base, path);
      assert.equal(r.status, 400, path);
      assert.equal(JSON.parse(r.body).code, 'BAD_PATH', path);
    }
    const fail = (status: number | undefined) => (_req: unknown, _res: unknown, next: (err: unknown) => void) =>
      next(Object.assign(new Error('raw message quoting /secret/1.2.3'), status === undefined ? {} : { status }));
    gw.gw.app.get('/t413', fail(413));
    gw.gw.app.get('/t418', fail(418));
    gw.gw.app.get('/t500', fail(undefined));
    const answers = await Promise.all(['/t413', '/t418', '/t500'].map((p) => request(gw.base, p)));
    assert.deepEqual(
      answers.map((a) => [a.status, JSON.parse(a.body).code]),
      [
        [413, 'PAYLOAD_TOO_LARGE'],
        [400, 'BAD_PARAM'],
        [500, 'INTERNAL'],
      ],
    );
    for (const a of answers) assert.ok(!a.body.includes('secret'), 'no error message (it can quote the URL) in the problem');
  });

  test('a bad request pipelined behind an answer under way cuts the connection; it is never spliced into that answer', async () => {
    gw.gw.app.get('/slow', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '8' });
      res.write('part');
      setTimeout(() => res.end('rest'), 300);
    });
    // The second request goes out once the first answer is streaming, as a client pipelining behind a long WADO body would.
    const wire = await new Promise<string>((resolve) => {
      const sock = net.connect(gw.port, '127.0.0.1');
      let got = '';
      sock.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.endsWith('part')) sock.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: ${'x'.repeat(20_000)}\r\n\r\n`);
      });
      sock.on('error', () => undefined);
      sock.on('close', () => resolve(got));
      sock.write('GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      setTimeout(() => sock.end(), 1000);
    });
    assert.deepEqual(statusLines(wire), ['HTTP/1.1 200 OK'], wire.slice(0, 300));
    assert.ok(wire.endsWith('part'), 'cut after what was sent, nothing appended');
    // On a connection with nothing under way the error reply still goes out.
    const alone = await rawExchange(gw.port, `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: ${'x'.repeat(20_000)}\r\n\r\n`);
    assert.deepEqual(statusLines(alone), ['HTTP/1.1 431 Request Header Fields Too Large']);
    const malformed = await rawExchange(gw.port, 'GET /healthz HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n');
    assert.deepEqual(statusLines(malformed), ['HTTP/1.1 400 Bad Request']);
  });

  test('a request head that does not arrive in time is answered 408', async () => {
    assert.equal(gw.gw.server.headersTimeout, 60_000, "Node's limit on the request head stays on despite requestTimeout 0");
    // Node reports it through clientError (its check runs every 30 s, too slow to wait for here).
    const wire = await new Promise<string>((resolve) => {
      gw.gw.server.once('connection', (socket: net.Socket) => {
        setImmediate(() =>
          gw.gw.server.emit('clientError', Object.assign(new Error('timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), socket),
        );
      });
      const sock = net.connect(gw.port, '127.0.0.1', () => sock.write('GET /healthz HTTP/1.1\r\nHost: 1'));
      let got = '';
      sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
      sock.on('error', () => undefined);
      sock.on('close', () => resolve(got));
    });
    assert.deepEqual(statusLines(wire), ['HTTP/1.1 408 Request Timeout']);
  });
});
