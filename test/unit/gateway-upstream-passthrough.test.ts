/**
 * The pass-through (gateway/passthrough.ts + upstream.ts) against PACSes that misbehave in
 * ways the test Orthanc cannot be made to: answering a STOW before its body, answering late,
 * stalling or dying mid-answer, honouring or ignoring `Expect`, answering ranges. Each PACS
 * here is a local node:http or raw TCP server; the gateway side is forward() on node:http,
 * as gateway/server.ts runs it.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { after, test } from 'node:test';
import { forward, type ProxyContext } from '../../gateway/passthrough.js';
import { ORTHANC_DICOMWEB_1_7 } from '../../gateway/pacs-quirks.js';
import { parseEndpoint, Upstream, UpstreamError, type UpstreamOptions } from '../../gateway/upstream.js';
import { UrlRewriter } from '../../gateway/url-rewrite.js';
import { uploadThenRead } from '../integration/gateway-fixture.js';

const PUBLIC = { base: 'http://gw.example', host: 'gw.example', proto: 'http', path: '' } as const;
const cleanup: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(
    () =>
      new Promise<void>((r) => {
        (server as http.Server).closeAllConnections?.();
        server.close(() => r());
      }),
  );
  return (server.address() as net.AddressInfo).port;
}

interface Gw {
  readonly port: number;
  readonly base: string;
  readonly upstreamErrors: string[];
  readonly hook: Array<{ status: number; body: string }>;
  readonly rewriter: UrlRewriter;
}

/** A gateway in front of the PACS on `pacsPort`; POST is a STOW (body, hook), everything else a rewritable GET/HEAD. */
async function gateway(pacsPort: number, o: Partial<UpstreamOptions> & { clientIdleMs?: number } = {}): Promise<Gw> {
  const endpoint = parseEndpoint(`http://127.0.0.1:${pacsPort}/dicom-web`);
  const upstream = new Upstream({ timeoutMs: 2000, maxSockets: 16, keepAliveMs: 700, ...o });
  const upstreamErrors: string[] = [];
  const hook: Gw['hook'] = [];
  const rewriter = new UrlRewriter(endpoint, parseEndpoint(`http://127.0.0.1:${pacsPort}/wado`), '/dicom-web', '/wado');
  const ctx: ProxyContext = {
    upstream,
    rewriter,
    quirks: ORTHANC_DICOMWEB_1_7,
    defaultAuthorization: undefined,
    maxBodyBytes: 1 << 30,
    maxRewriteBytes: 1 << 20,
    onUpstreamError: (k) => upstreamErrors.push(k),
  };
  const server = http.createServer({ requestTimeout: 0 }, (req, res) => {
    const stow = req.method === 'POST';
    forward(ctx, req, res, {
      endpoint,
      path: `/dicom-web${req.url}`,
      accept: undefined,
      publicBase: PUBLIC,
      sendForwarded: false,
      rewritable: true,
      withBody: stow,
      ...(stow
        ? { onAnswered: (status: number, _ct: string | undefined, body: Buffer) => hook.push({ status, body: body.toString() }) }
        : {}),
    });
  });
  server.setTimeout(o.clientIdleMs ?? 120_000);
  const port = await listen(server);
  cleanup.push(() => upstream.close());
  return { port, base: `http://127.0.0.1:${port}`, upstreamErrors, hook, rewriter };
}

interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
  readonly ms: number;
}

function request(url: string, o: { method?: string; headers?: Record<string, string>; body?: Buffer } = {}): Promise<Answer> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: o.method ?? 'GET', headers: o.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), ms: performance.now() - t0 }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

interface RawRequest {
  readonly head: string;
  readonly body: Buffer;
  /** Connection number (1-based) and request number on it. */
  readonly conn: number;
  readonly nth: number;
}

/**
 * A PACS that reads whole requests (keep-alive, Content-Length bodies) and never sends 100 Continue.
 * `onHead` sees each request head first; true when it answered from the head (the body is not read).
 */
async function rawPacs(
  answer: (r: RawRequest, sock: net.Socket) => void,
  onHead?: (head: string, sock: net.Socket) => boolean,
): Promise<{ port: number; connections: () => number }> {
  let conns = 0;
  const server = net.createServer((sock) => {
    const conn = ++conns;
    let nth = 0;
    let buf = Buffer.alloc(0);
    let head: string | null = null;
    let length = 0;
    sock.on('error', () => undefined);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (head === null) {
          const end = buf.indexOf('\r\n\r\n');
          if (end === -1) return;
          head = buf.subarray(0, end).toString('latin1');
          length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
          buf = buf.subarray(end + 4);
          if (onHead?.(head, sock)) return;
        }
        if (buf.length < length) return;
        const r = { head, body: buf.subarray(0, length), conn, nth: ++nth };
        buf = buf.subarray(length);
        head = null;
        answer(r, sock);
      }
    });
  });
  const port = await listen(server);
  return { port, connections: () => conns };
}

function jsonAnswer(body: string, extra = ''): string {
  return `HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
}

const statusLines = (wire: string): string[] => wire.match(/HTTP\/1\.1 \d{3}[^\r]*/g) ?? [];

const waitFor = async (what: string, cond: () => boolean, ms = 5000): Promise<void> => {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

test(
  'a PACS that refuses a STOW from its head (401) and resets: the uploader that sends everything first reads the 401, and no body byte went up',
  { timeout: 20_000 },
  async () => {
    let bodyBytes = 0;
    let expect = '';
    const pacs = net.createServer((s) => {
      let head = '';
      s.on('error', () => undefined);
      s.on('data', (d: Buffer) => {
        if (head.includes('\r\n\r\n')) return void (bodyBytes += d.length);
        head += d.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        bodyBytes += head.length - end - 4;
        expect = /\r\nexpect: *([^\r]*)/i.exec(head)?.[1] ?? '';
        s.write('HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="pacs"\r\nContent-Length: 0\r\n\r\n');
        // Closed with the upload unread, as civetweb does after an early answer: a reset.
        setTimeout(() => s.resetAndDestroy(), 20);
      });
    });
    const gw = await gateway(await listen(pacs));
    const answer = await uploadThenRead(`http://127.0.0.1:${gw.port}`, '/studies', 8 << 20);
    assert.match(answer, /^HTTP\/1\.1 401 /, answer.slice(0, 80));
    assert.match(answer, /www-authenticate: Basic realm="pacs"/i);
    assert.equal(expect, '100-continue');
    assert.equal(bodyBytes, 0, 'the PACS refused before any of the body was sent');
    await waitFor('the hook', () => gw.hook.length === 1);
    assert.equal(gw.hook[0]?.status, 401);
  },
);

test(
  'a PACS that answers mid-upload (413 after 1 MiB) and then drains: the uploader reads the 413, not a reset',
  { timeout: 20_000 },
  async () => {
    const pacs = net.createServer((s) => {
      let head = '';
      let body = 0;
      let length = 0;
      s.on('error', () => undefined);
      s.on('data', (d: Buffer) => {
        if (!head.includes('\r\n\r\n')) {
          head += d.toString('latin1');
          const end = head.indexOf('\r\n\r\n');
          if (end === -1) return;
          length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1]);
          if (/\r\nexpect:/i.test(head)) s.write('HTTP/1.1 100 Continue\r\n\r\n');
          body = head.length - end - 4;
          return;
        }
        const before = body;
        body += d.length;
        if (before < 1 << 20 && body >= 1 << 20)
          s.write('HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbig!');
        if (body >= length) s.end();
      });
    });
    const port = await listen(pacs);
    // With Expect (the PACS sends 100, then refuses), and without (Expect off, or a PACS that answered 417).
    for (const expectContinueMs of [1000, 0]) {
      const gw = await gateway(port, { expectContinueMs });
      const answer = await uploadThenRead(`http://127.0.0.1:${gw.port}`, '/studies', 16 << 20);
      assert.match(answer, /^HTTP\/1\.1 413 /, answer.slice(0, 80));
      assert.match(answer, /big!$/);
    }
  },
);

test(
  'an upload waits for the PACS’s 100 Continue and no longer; a PACS that ignores Expect is waited for once, then gets Expect with a short head start',
  { timeout: 20_000 },
  async () => {
    const seen: string[] = [];
    const honours = http.createServer((req, res) => {
      seen.push(String(req.headers.expect));
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/dicom+json' }).end('{}'));
    });
    const gw1 = await gateway(await listen(honours), { expectContinueMs: 3000 });
    const body = Buffer.alloc(256 << 10, 0x42);
    const a = await request(`${gw1.base}/studies`, { method: 'POST', body });
    assert.equal(a.status, 200);
    assert.equal(seen[0], '100-continue');
    assert.ok(a.ms < 1500, `took ${a.ms} ms: the 100 was not used`);

    const heads: string[] = [];
    const ignores = await rawPacs((r, sock) => {
      heads.push(r.head);
      assert.equal(r.body.length, body.length);
      sock.write(jsonAnswer('{}'));
    });
    const gw2 = await gateway(ignores.port, { expectContinueMs: 1000 });
    const first = await request(`${gw2.base}/studies`, { method: 'POST', body });
    const second = await request(`${gw2.base}/studies`, { method: 'POST', body });
    assert.equal(first.status, 200);
    assert.equal(second.status, 200);
    assert.match(heads[0]!, /\r\nexpect: 100-continue/i);
    assert.ok(first.ms >= 950, `first upload took ${first.ms} ms: it should have waited for a 100`);
    assert.match(heads[1]!, /\r\nexpect: 100-continue/i, 'Expect is kept, so a refusal from the head still comes first');
    assert.ok(second.ms < 900, `second upload took ${second.ms} ms: it waited for a 100 the PACS never sends`);
  },
);

/** Orthanc with authentication: never sends 100; without credentials 401 from the head and a reset at once (the body unread); with them, reads and stores. */
async function orthancLikePacs(): Promise<{ port: number; heads: string[] }> {
  const heads: string[] = [];
  const { port } = await rawPacs(
    (_r, sock) => sock.write(jsonAnswer('{}')),
    (head, sock) => {
      heads.push(head);
      if (/\r\nauthorization:/i.test(head)) return false;
      sock.write('HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="orthanc"\r\nContent-Length: 0\r\n\r\n');
      sock.resetAndDestroy();
      return true;
    },
  );
  return { port, heads };
}

test(
  'a PACS seen to send no 100 (Orthanc after a STOW) still refuses later uploads from the head: the uploader gets the 401, not a 502',
  { timeout: 30_000 },
  async () => {
    const pacs = await orthancLikePacs();
    const gw = await gateway(pacs.port, { expectContinueMs: 500 });
    const authorised = await request(`${gw.base}/studies`, {
      method: 'POST',
      headers: { authorization: 'Basic eDp5', 'content-type': 'multipart/related; boundary=b' },
      body: Buffer.alloc(1 << 20, 0x41),
    });
    assert.equal(authorised.status, 200, 'the wait ran out: the gateway now knows this PACS sends no 100');
    for (let i = 0; i < 10; i++) {
      const answer = await uploadThenRead(`http://127.0.0.1:${gw.port}`, '/studies', 8 << 20);
      assert.match(answer, /^HTTP\/1\.1 401 /, `upload ${i + 1}: ${answer.slice(0, 200)}`);
      assert.match(answer, /www-authenticate: Basic realm="orthanc"/i);
    }
    assert.deepEqual(gw.upstreamErrors, []);
    assert.ok(
      pacs.heads.every((h) => /\r\nexpect: 100-continue/i.test(h)),
      'every upload went with Expect',
    );
  },
);

test(
  'a PACS that lets the wait for 100 run out is known as such at once: an upload that starts while the first is still going up waits only the head start',
  { timeout: 30_000 },
  async () => {
    const heads: string[] = [];
    const pacs = await rawPacs((r, sock) => {
      heads.push(r.head);
      sock.write(jsonAnswer(`{"bytes":${r.body.length}}`));
    });
    const gw = await gateway(pacs.port, { expectContinueMs: 1000 });
    // The first upload trickles in for about 2.5 s: its answer (the old moment of learning) comes after the second upload.
    const first = new Promise<Answer>((resolve, reject) => {
      const t0 = performance.now();
      const req = http.request(
        `${gw.base}/studies`,
        { method: 'POST', agent: false, headers: { 'content-length': String(50 << 16) } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), ms: performance.now() - t0 }),
          );
        },
      );
      req.on('error', reject);
      let n = 0;
      const tick = setInterval(() => {
        req.write(Buffer.alloc(1 << 16, 0x41));
        if (++n === 50) {
          clearInterval(tick);
          req.end();
        }
      }, 50);
    });
    await new Promise((r) => setTimeout(r, 1500));
    const second = await request(`${gw.base}/studies`, { method: 'POST', body: Buffer.alloc(1000) });
    assert.equal(second.status, 200);
    assert.ok(second.ms < 700, `the second upload took ${second.ms} ms: it waited for a 100 the first had already waited for in vain`);
    const done = await first;
    assert.equal(done.status, 200);
    assert.equal(done.body.toString(), `{"bytes":${50 << 16}}`);
    assert.ok(done.ms > second.ms + 1500, 'the first upload was still going up');
    assert.equal(heads.length, 2);
    for (const h of heads) assert.match(h, /\r\nexpect: 100-continue/i);
  },
);

test(
  'a PACS that stops taking an upload once all of it has come: 504 after the PACS timeout without progress, never a hang',
  { timeout: 20_000 },
  async () => {
    // Reads the head (and whatever comes with it), then nothing: a hung PACS keeps the connection open.
    const held: net.Socket[] = [];
    const pacs = net.createServer((s) => {
      held.push(s);
      s.on('error', () => undefined);
      s.once('data', () => s.pause());
    });
    const endpoint = parseEndpoint(`http://127.0.0.1:${await listen(pacs)}/dicom-web`);
    cleanup.push(() => held.forEach((s) => s.destroy())); // paused, it would not see the gateway close and hold the server open
    const upstream = new Upstream({ timeoutMs: 300, maxSockets: 4, keepAliveMs: 0, stowTimeoutMs: 60_000, expectContinueMs: 0 });
    cleanup.push(() => upstream.close());
    const body = new PassThrough();
    let bodySent = false;
    const t0 = performance.now();
    const outcome = new Promise<{ err: UpstreamError | null; ms: number }>((resolve) => {
      upstream.send(
        {
          endpoint,
          method: 'POST',
          path: '/dicom-web/studies',
          headers: { host: endpoint.hostHeader, 'content-type': 'multipart/related; boundary=b' },
          body,
          onBodySent: () => (bodySent = true),
        },
        (err, res) => {
          res?.resume();
          resolve({ err, ms: performance.now() - t0 });
        },
      );
    });
    // A source that pauses longer than the PACS timeout is not the PACS's fault: not timed.
    const chunk = Buffer.alloc(64 << 10, 0x41);
    body.write(chunk);
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(await Promise.race([outcome.then(() => 'done'), Promise.resolve('pending')]), 'pending');
    // Fill every buffer on the way (the kernel's, then Node's) so that some of the body is still
    // in the gateway when its source ends: the state where no timer ran before.
    for (;;) {
      while (body.write(chunk));
      const drained = await Promise.race([
        new Promise<boolean>((r) => body.once('drain', () => r(true))),
        new Promise<boolean>((r) => setTimeout(() => r(false), 250)),
      ]);
      if (!drained) break;
    }
    const ended = performance.now();
    body.end();
    const r = await Promise.race([outcome, new Promise<null>((resolve) => setTimeout(() => resolve(null), 3000))]);
    assert.ok(r, 'no answer, no error: the upload hangs');
    assert.ok(r.err instanceof UpstreamError, `expected a timeout, got ${String(r.err)}`);
    assert.equal(r.err.kind, 'timeout');
    assert.ok(r.ms - (ended - t0) < 1000, `took ${r.ms - (ended - t0)} ms after the body ended`);
    assert.equal(bodySent, false, 'the body was never all sent: the wait for the answer never started');
  },
);

test('pipelined requests: the client idle timeout stays off while any of them waits for the PACS', { timeout: 20_000 }, async () => {
  const pacs = http.createServer((req, res) => {
    const ms = req.url?.includes('slow') ? 1200 : 200;
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/dicom+json' }).end(`["${req.url}"]`), ms);
  });
  const gw = await gateway(await listen(pacs), { timeoutMs: 5000, clientIdleMs: 400 });
  const wire = await new Promise<string>((resolve) => {
    const sock = net.connect(gw.port, '127.0.0.1');
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
    sock.on('error', () => undefined);
    sock.on('close', () => resolve(got));
    sock.write(['/studies/fast', '/studies/slow'].map((p) => `GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`).join(''));
    setTimeout(() => sock.end(), 2500);
  });
  assert.deepEqual(statusLines(wire), ['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK'], wire);
  assert.match(wire, /\["\/dicom-web\/studies\/slow"\]/);
});

test(
  'an upload is retried on a fresh connection when the reused one was closed before any of its body went up',
  { timeout: 20_000 },
  async () => {
    let conns = 0;
    const pacs = net.createServer((s) => {
      const conn = ++conns;
      let heads = 0;
      s.on('error', () => undefined);
      s.on('data', (d: Buffer) => {
        const text = d.toString('latin1');
        if (!/^(GET|POST) /.test(text)) return void s.write(jsonAnswer(`{"n":${conn}}`)); // the body, after the 100
        // The second request on a connection finds it closed, as a PACS's idle close crossing a reuse.
        if (++heads === 2) return void s.resetAndDestroy();
        s.write(text.startsWith('POST') ? 'HTTP/1.1 100 Continue\r\n\r\n' : jsonAnswer('[]'));
      });
    });
    const gw = await gateway(await listen(pacs), { expectContinueMs: 2000 });
    assert.equal((await request(`${gw.base}/studies`)).status, 200);
    const stow = await request(`${gw.base}/studies`, { method: 'POST', body: Buffer.from('--b--\r\n') });
    assert.equal(stow.status, 200, stow.body.toString());
    assert.equal(stow.body.toString(), '{"n":2}');
    assert.equal(conns, 2);
  },
);

test('a STOW answered after CBMIR_PACS_TIMEOUT_MS but within the STOW timeout reaches the client', { timeout: 20_000 }, async () => {
  const pacs = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => setTimeout(() => res.writeHead(200, { 'content-type': 'application/dicom+json' }).end('{"stored":1}'), 700));
  });
  const gw = await gateway(await listen(pacs), { timeoutMs: 300, stowTimeoutMs: 5000 });
  const r = await request(`${gw.base}/studies`, { method: 'POST', body: Buffer.alloc(1000) });
  assert.equal(r.status, 200, r.body.toString());
  assert.equal(r.body.toString(), '{"stored":1}');
});

test(
  'a STOW answered after the STOW timeout: the client has its 504, and the hook still gets the PACS’s answer',
  { timeout: 20_000 },
  async () => {
    const root = (port: number) => `http://127.0.0.1:${port}/dicom-web`;
    let pacsPort = 0;
    const pacs = http.createServer((req, res) => {
      req.resume();
      req.on('end', () =>
        setTimeout(
          () => res.writeHead(200, { 'content-type': 'application/dicom+json' }).end(`{"url":"${root(pacsPort)}/studies/1"}`),
          1200,
        ),
      );
    });
    pacsPort = await listen(pacs);
    // 504 at 800 ms; the answer at 1200 ms is still read for the hook (until 1600 ms)
    const gw = await gateway(pacsPort, { timeoutMs: 200, stowTimeoutMs: 800 });
    const r = await request(`${gw.base}/studies`, { method: 'POST', body: Buffer.alloc(1000) });
    assert.equal(r.status, 504);
    assert.equal((JSON.parse(r.body.toString()) as { code: string }).code, 'UPSTREAM_TIMEOUT');
    assert.ok(r.ms < 1150, `took ${r.ms} ms`);
    await waitFor('the hook', () => gw.hook.length === 1);
    assert.deepEqual(gw.hook[0], { status: 200, body: `{"url":"${root(pacsPort)}/studies/1"}` });
  },
);

test('the client idle timeout does not cut a request whose answer the PACS is still preparing', { timeout: 20_000 }, async () => {
  const pacs = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => setTimeout(() => res.writeHead(200, { 'content-type': 'application/dicom+json' }).end('[]'), 1200));
  });
  const gw = await gateway(await listen(pacs), { timeoutMs: 5000, clientIdleMs: 400 });
  const get = await request(`${gw.base}/studies`);
  assert.equal(get.status, 200);
  assert.equal(get.body.toString(), '[]');
  const stow = await request(`${gw.base}/studies`, { method: 'POST', body: Buffer.alloc(1000) });
  assert.equal(stow.status, 200);
});

test(
  'a long JSON answer streams: the head and first bytes come before the PACS has sent its last byte, mapped as the whole body would be',
  { timeout: 20_000 },
  async () => {
    let pacsPort = 0;
    let gotHead!: () => void;
    const headSeen = new Promise<void>((r) => (gotHead = r));
    let pacsDone = false;
    const item = (i: number) => `{"00081190":{"vr":"UR","Value":["http://127.0.0.1:${pacsPort}/dicom-web/studies/1.2.${i}"]}},`;
    const full = () => Buffer.from(`[${Array.from({ length: 20_000 }, (_, i) => item(i)).join('')}{}]`);
    const pacs = http.createServer((_req, res) => {
      const body = full();
      const half = body.length >> 1;
      res.writeHead(200, { 'content-type': 'application/dicom+json', 'content-length': body.length, etag: '"pacs"' });
      res.write(body.subarray(0, half));
      void Promise.race([headSeen, new Promise((r) => setTimeout(r, 3000))]).then(() => {
        pacsDone = true;
        res.end(body.subarray(half));
      });
    });
    pacsPort = await listen(pacs);
    const gw = await gateway(pacsPort);
    const answer = await new Promise<{ headBeforeEnd: boolean; headers: http.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      http
        .get(`${gw.base}/studies`, { agent: false }, (res) => {
          const headBeforeEnd = !pacsDone;
          gotHead();
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ headBeforeEnd, headers: res.headers, body: Buffer.concat(chunks) }));
        })
        .on('error', reject);
    });
    assert.ok(answer.headBeforeEnd, 'the answer was held until the PACS finished');
    assert.equal(answer.headers['content-length'], undefined);
    assert.equal(answer.headers['transfer-encoding'], 'chunked');
    assert.equal(answer.headers.etag, undefined, 'the PACS’s ETag does not describe the mapped bytes');
    assert.ok(answer.body.equals(gw.rewriter.mapBody(full(), PUBLIC.base)!), 'streamed bytes differ from the whole-body mapping');
    assert.ok(!answer.body.includes(`127.0.0.1:${pacsPort}`));
  },
);

test('a short JSON answer keeps an exact Content-Length; unmapped, its ETag too', { timeout: 20_000 }, async () => {
  let pacsPort = 0;
  const pacs = http.createServer((req, res) => {
    const body = req.url?.includes('mapped') ? `[{"url":"http://127.0.0.1:${pacsPort}/dicom-web/studies/1"}]` : '[{"a":1}]';
    res.writeHead(200, { 'content-type': 'application/dicom+json', 'content-length': Buffer.byteLength(body), etag: '"pacs"' }).end(body);
  });
  pacsPort = await listen(pacs);
  const gw = await gateway(pacsPort);
  const mapped = await request(`${gw.base}/studies/mapped`);
  assert.equal(mapped.body.toString(), '[{"url":"http://gw.example/dicom-web/studies/1"}]');
  assert.equal(mapped.headers['content-length'], String(mapped.body.length));
  assert.equal(mapped.headers.etag, undefined);
  const plain = await request(`${gw.base}/studies/plain`);
  assert.equal(plain.headers['content-length'], '9');
  assert.equal(plain.headers.etag, '"pacs"');
});

test(
  'HEAD on a rewritable route reaches the PACS as HEAD; the answer has no body, nor Content-Length or ETag of the PACS’s bytes (GET’s body may be mapped)',
  { timeout: 20_000 },
  async () => {
    const methods: string[] = [];
    // The bytes GET would get ('[]' padded to its Content-Length): node:http sends none of them to a HEAD.
    const body = Buffer.from('[]'.padEnd(1234));
    const pacs = http.createServer((req, res) => {
      methods.push(req.method ?? '');
      res
        .writeHead(200, { 'content-type': 'application/dicom+json', 'content-length': 1234, etag: '"pacs"', 'content-md5': 'x' })
        .end(body);
    });
    const gw = await gateway(await listen(pacs));
    // On the wire, not through node:http's client, which reads no body after a HEAD whatever is sent.
    const wire = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(gw.port, '127.0.0.1');
      let got = '';
      sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
      sock.on('error', reject);
      sock.on('close', () => resolve(got));
      sock.write('HEAD /studies/1/series HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    });
    assert.deepEqual(methods, ['HEAD'], 'the PACS was asked with another method');
    const end = wire.indexOf('\r\n\r\n');
    assert.ok(end > 0, `no complete answer head: ${wire}`);
    assert.equal(wire.slice(end + 4), '', 'the client got body bytes after the head');
    const [status, ...lines] = wire.slice(0, end).split('\r\n');
    assert.equal(status, 'HTTP/1.1 200 OK');
    const headers = new Map(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
    assert.equal(headers.get('content-type'), 'application/dicom+json');
    assert.equal(headers.get('content-length'), undefined);
    assert.equal(headers.get('etag'), undefined);
    assert.equal(headers.get('content-md5'), undefined);
  },
);

test(
  'ranges: a rewritable route asks the PACS for the whole answer; a 206 the PACS sends anyway passes untouched',
  { timeout: 20_000 },
  async () => {
    let pacsPort = 0;
    const ranges: Array<string | undefined> = [];
    const pacs = http.createServer((req, res) => {
      ranges.push(req.headers.range ?? (req.headers['if-range'] as string | undefined));
      const body = `{"url":"http://127.0.0.1:${pacsPort}/dicom-web/studies/1"}`;
      if (req.url?.includes('always206')) {
        const part = body.slice(0, 30);
        res.writeHead(206, {
          'content-type': 'application/dicom+json',
          'content-range': `bytes 0-29/${body.length}`,
          'content-length': 30,
        });
        return void res.end(part);
      }
      res.writeHead(200, { 'content-type': 'application/dicom+json' }).end(body);
    });
    pacsPort = await listen(pacs);
    const gw = await gateway(pacsPort);
    const whole = await request(`${gw.base}/studies/1/metadata`, { headers: { range: 'bytes=0-9', 'if-range': '"x"' } });
    assert.equal(whole.status, 200);
    assert.equal(whole.body.toString(), '{"url":"http://gw.example/dicom-web/studies/1"}');
    assert.equal(ranges[0], undefined, 'Range / If-Range reached the PACS');
    const part = await request(`${gw.base}/studies/always206/metadata`);
    assert.equal(part.status, 206);
    assert.equal(part.headers['content-length'], '30');
    assert.equal(part.body.toString(), `{"url":"http://127.0.0.1:${pacsPort}/dicom-web/studies/1"}`.slice(0, 30));
  },
);

test('204 and 304 with a JSON type pass as the PACS sent them (no Content-Length made up)', { timeout: 20_000 }, async () => {
  const pacs = http.createServer((req, res) => {
    const status = req.url?.includes('304') ? 304 : 204;
    res.writeHead(status, { 'content-type': 'application/dicom+json', etag: '"e"' }).end();
  });
  const gw = await gateway(await listen(pacs));
  for (const s of ['204', '304']) {
    const r = await request(`${gw.base}/studies/${s}`);
    assert.equal(r.status, Number(s));
    assert.equal(r.headers['content-length'], undefined, s);
    assert.equal(r.headers.etag, '"e"', s);
  }
});

test(
  'a PACS that stalls or dies mid-answer before the gateway sent the head: 504 / 502 problem, not a cut connection',
  { timeout: 20_000 },
  async () => {
    const pacs = await rawPacs((r, sock) => {
      sock.write('HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: 100\r\n\r\n[{"a":1},');
      if (r.head.includes('/dies')) setTimeout(() => sock.resetAndDestroy(), 50);
    });
    const gw = await gateway(pacs.port, { timeoutMs: 400 });
    const stalled = await request(`${gw.base}/studies/stalls`);
    assert.equal(stalled.status, 504);
    assert.equal(stalled.headers['content-type'], 'application/problem+json');
    assert.equal((JSON.parse(stalled.body.toString()) as { code: string }).code, 'UPSTREAM_TIMEOUT');
    const died = await request(`${gw.base}/studies/dies`);
    assert.equal(died.status, 502);
    assert.equal((JSON.parse(died.body.toString()) as { code: string }).code, 'UPSTREAM_UNREACHABLE');
    assert.deepEqual(gw.upstreamErrors, ['timeout', 'body']);
  },
);

test('a PACS that refuses Expect (417) is asked again without it, and is not asked with it again', { timeout: 20_000 }, async () => {
  const heads: string[] = [];
  const pacs = net.createServer((s) => {
    let buf = '';
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = buf.slice(0, end);
      if (/\r\nexpect:/i.test(head)) {
        heads.push(head);
        buf = '';
        return void s.end('HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      }
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1]);
      if (buf.length - end - 4 < length) return;
      heads.push(head);
      buf = '';
      s.write(jsonAnswer('{"stored":1}'));
    });
  });
  const gw = await gateway(await listen(pacs));
  for (let i = 0; i < 2; i++) {
    const r = await request(`${gw.base}/studies`, { method: 'POST', body: Buffer.from('--b--\r\n') });
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.body.toString(), '{"stored":1}');
  }
  assert.deepEqual(
    heads.map((h) => /\r\nexpect:/i.test(h)),
    [true, false, false],
  );
});
