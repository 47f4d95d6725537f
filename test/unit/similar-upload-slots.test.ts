/**
 * The upload slots of POST /similar and POST /similar/heatmap (gateway/request-slots.ts) against a
 * stand-in PACS: an upload that trickles in loses its slot once it falls behind the pace
 * (408 UPLOAD_TIMEOUT), so a few connections sending a byte now and then cannot keep every other
 * upload out; a slow but steady one is read whole; and one caller holds at most its share of
 * the slots.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, afterEach, before, describe, test } from 'node:test';
import { loadConfig } from '../../core/config.js';
import type { VectorIndex } from '../../core/index/types.js';
import type { EmbedJobResult } from '../../core/jobs.js';
import { createLogger } from '../../core/log.js';
import { expressGateway, listening, readablePacs } from './fake-gateway.js';
import { attachSimilar } from '../../gateway/similar.js';
import { attachSimilarHeatmap } from '../../gateway/similar-heatmap.js';

const RESULT_UIDS = 'ResultStudyInstanceUID=1.5&ResultSeriesInstanceUID=1.5.6&ResultSOPInstanceUID=1.5.6.7';
/** A body POST /similar takes to a worker (a preamble and "DICM"), padded to take a while at the test's pace. */
const PART10 = Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), Buffer.alloc(2_000)]);
/** Shortened for the test: 300 ms of grace, then 1000 bytes a second. */
const PACE = { graceMs: 300, minBytesPerSecond: 1_000 };

type Problem = { code: string; detail?: string };
interface Answer {
  readonly status: number;
  readonly headers: string;
  readonly body: string;
}

/** Waits until `done()` holds (a request has reached the stand-in worker), 5 s at most. */
async function until(done: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 5_000;
  while (!done()) {
    if (performance.now() > deadline) assert.fail(`${what}: not within 5 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Fails after `ms` instead of waiting for ever on an answer that does not come. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)));
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

describe('upload slots', () => {
  /** Uploads the stand-in worker holds until released (each waits for `gate`). */
  let gate: Promise<void> = Promise.resolve();
  let embedded = 0;
  const closeHooks: Array<() => Promise<void> | void> = [];
  const sockets: net.Socket[] = [];
  let pacs: http.Server;
  let server: http.Server;
  let port = 0;

  before(async () => {
    // Every study and instance asked about is there and readable: the access rules have their own tests.
    const stand = await readablePacs();
    pacs = stand.server;
    const config = loadConfig({
      CBMIR_PACS_URL: stand.url,
      CBMIR_SIMILAR_MAX_UPLOADS: '2',
    });
    const { gateway, app } = expressGateway(closeHooks);
    const index = { liveVersion: async () => 'v1', knn: async () => [] } as unknown as VectorIndex;
    const logger = createLogger('silent', 'test');
    const embed = {
      embed: async (): Promise<EmbedJobResult> => {
        embedded++;
        await gate;
        return { status: 'embedded', vector: [1, 0, 0, 0], modelVersion: 'v1' };
      },
      close: async () => undefined,
    };
    const similar = attachSimilar(gateway, { config, index, modelVersion: 'v1', logger, embed, uploadPace: PACE });
    attachSimilarHeatmap(gateway, {
      config,
      access: similar.access,
      index,
      modelVersion: 'v1',
      logger,
      uploads: similar.uploads,
      uploadPace: PACE,
      requester: { request: async () => ({ status: 'refused', reason: 'not an image' }), close: async () => undefined },
    });
    ({ server, port } = await listening(http.createServer(app)));
  });

  /** Closes this test's connections, so that one failing leaves no slot taken for the next. */
  const hangUp = () => {
    for (const s of sockets.splice(0)) s.destroy();
  };
  afterEach(hangUp);

  after(async () => {
    server.close();
    pacs.close();
    for (const h of closeHooks) await h();
  });

  /**
   * A POST whose body comes `chunk` bytes every `everyMs` (Content-Length `declared`), as the
   * caller `authorization`: the answer, whenever it comes; the sending stops with it.
   */
  function post(
    path: string,
    authorization: string,
    o: { declared: number; body: Buffer; chunk: number; everyMs: number },
  ): Promise<Answer> {
    const s = net.connect(port, '127.0.0.1');
    sockets.push(s);
    s.on('error', () => undefined);
    s.write(
      `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/dicom\r\nAuthorization: ${authorization}\r\n` +
        `Content-Length: ${o.declared}\r\n\r\n`,
    );
    let sent = 0;
    const send = () => {
      if (sent >= o.body.length || s.destroyed) return;
      s.write(o.body.subarray(sent, sent + o.chunk));
      sent += o.chunk;
      timer = setTimeout(send, o.everyMs);
    };
    let timer = setTimeout(send, 0);
    return new Promise((resolve) => {
      let got = Buffer.alloc(0);
      s.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d]);
        const text = got.toString('latin1');
        const end = text.indexOf('\r\n\r\n');
        if (end < 0) return;
        const headers = text.slice(0, end);
        const length = Number(/\r\ncontent-length: (\d+)/i.exec(headers)?.[1] ?? 0);
        if (got.length < end + 4 + length) return;
        clearTimeout(timer);
        s.destroy();
        resolve({ status: Number(headers.split(' ')[1]), headers, body: text.slice(end + 4, end + 4 + length) });
      });
    });
  }

  /** One byte every 100 ms of a body declared 100 kB: 10 bytes a second, far behind the pace. */
  const trickle = (path: string, authorization: string) =>
    post(path, authorization, { declared: 100_000, body: Buffer.alloc(100_000, 65), chunk: 1, everyMs: 100 });
  /** The whole body at once. */
  const upload = (authorization: string) =>
    post('/similar', authorization, { declared: PART10.length, body: PART10, chunk: PART10.length, everyMs: 0 });

  test('uploads that trickle in lose their slots (408 UPLOAD_TIMEOUT) and the next upload is taken', async () => {
    // Both slots, each by another caller (a caller's share is one of the two).
    const started = performance.now();
    const answers = await within(
      Promise.all([trickle('/similar', 'Basic dHJpY2tsZTE6eA=='), trickle(`/similar/heatmap?${RESULT_UIDS}`, 'Basic dHJpY2tsZTI6eA==')]),
      5_000,
      'trickled uploads',
    );
    for (const a of answers) {
      assert.equal(a.status, 408, a.body);
      const p = JSON.parse(a.body) as Problem;
      assert.equal(p.code, 'UPLOAD_TIMEOUT');
      assert.match(p.detail ?? '', /too slowly.*1000 bytes a second/);
    }
    assert.ok(performance.now() - started < 2_000, 'answered soon after the grace, not when the client gives up');
    const next = await within(upload('Basic bmV4dDp4'), 5_000, 'the upload after them');
    assert.equal(next.status, 200, next.body);
  });

  test('a slow but steady upload, longer than the grace, is read whole', async () => {
    // 2132 bytes, 400 every 200 ms: 2000 bytes a second, over a second in all.
    const t0 = performance.now();
    const a = await within(
      post('/similar', 'Basic c3RlYWR5Ong=', { declared: PART10.length, body: PART10, chunk: 400, everyMs: 200 }),
      5_000,
      'steady upload',
    );
    assert.equal(a.status, 200, a.body);
    assert.ok(performance.now() - t0 > PACE.graceMs, 'it did outlast the grace');
  });

  test('a declared Content-Length over the bound is 413 before anything else, even with every slot taken', async () => {
    let open!: () => void;
    gate = new Promise((r) => (open = r));
    try {
      embedded = 0;
      const held = [upload('Basic ZGF2ZTp4'), upload('Basic ZXZlOng=')];
      await until(() => embedded === 2, 'both slots taken');
      const full = await within(upload('Basic ZnJhbms6eA=='), 5_000, 'an upload with no slot free');
      assert.equal(full.status, 503, 'the slots are taken');
      // 65 MiB declared, nothing sent: a 503 + Retry-After here would have the client retry a body that can only be refused.
      const big = { declared: 65 * 1024 * 1024, body: Buffer.alloc(0), chunk: 1, everyMs: 0 };
      for (const path of ['/similar', `/similar/heatmap?${RESULT_UIDS}`]) {
        const a = await within(post(path, 'Basic ZnJhbms6eA==', big), 5_000, `${path}: oversized upload`);
        assert.equal(a.status, 413, `${path}: ${a.body}`);
        assert.equal((JSON.parse(a.body) as Problem).code, 'PAYLOAD_TOO_LARGE');
      }
      open();
      for (const h of held) assert.equal((await within(h, 5_000, 'held upload')).status, 200);
    } finally {
      open();
      gate = Promise.resolve();
    }
  });

  test('an uploaded heatmap query that is not DICOM is refused naming the side, as the worker’s refusals are', async () => {
    const notDicom = Buffer.alloc(200, 65);
    const a = await within(
      post(`/similar/heatmap?${RESULT_UIDS}`, 'Basic Z3JhY2U6eA==', {
        declared: notDicom.length,
        body: notDicom,
        chunk: notDicom.length,
        everyMs: 0,
      }),
      5_000,
      'heatmap upload',
    );
    assert.equal(a.status, 422, a.body);
    const p = JSON.parse(a.body) as Problem;
    assert.equal(p.code, 'NOT_EMBEDDABLE');
    assert.match(p.detail ?? '', /^query: not a DICOM Part-10 file/);
  });

  test('other methods are 405 with the methods each resource takes, HEAD among them', async () => {
    for (const [method, path, allow] of [
      ['PUT', '/similar', 'GET, HEAD, POST'],
      ['POST', '/studies/1.2/series/1.2.3/instances/1.2.3.4/similar', 'GET, HEAD'],
      ['DELETE', '/studies/1.2/series/1.2.3/instances/1.2.3.4/similar', 'GET, HEAD'],
      ['DELETE', `/similar/heatmap?${RESULT_UIDS}`, 'GET, HEAD, POST'],
    ] as const) {
      const r = await fetch(`http://127.0.0.1:${port}${path}`, { method });
      assert.equal(r.status, 405, `${method} ${path}`);
      assert.equal(r.headers.get('allow'), allow, `${method} ${path}`);
      assert.equal(((await r.json()) as Problem).code, 'METHOD_NOT_ALLOWED');
    }
  });

  test('one caller holds at most its share of the slots; the others stay open to other callers', async () => {
    let open!: () => void;
    gate = new Promise((r) => (open = r));
    try {
      embedded = 0;
      const first = upload('Basic YWxpY2U6eA==');
      await until(() => embedded === 1, 'the first upload'); // taken, and held by the stand-in worker
      const again = await within(upload('Basic YWxpY2U6eA=='), 5_000, 'the same caller’s second upload');
      assert.equal(again.status, 503, again.body);
      assert.equal((JSON.parse(again.body) as Problem).code, 'EMBED_UNAVAILABLE');
      assert.match(again.headers, /\r\nretry-after: 2/i);
      assert.match((JSON.parse(again.body) as Problem).detail ?? '', /this caller/);
      const other = upload('Basic Ym9iOng=');
      await until(() => embedded === 2, 'the other caller’s upload');
      const third = await within(upload('Basic Y2Fyb2w6eA=='), 5_000, 'a third caller’s upload');
      assert.equal(third.status, 503, 'both slots taken');
      open();
      assert.equal((await within(first, 5_000, 'first')).status, 200);
      assert.equal((await within(other, 5_000, 'other')).status, 200);
    } finally {
      open();
      gate = Promise.resolve();
    }
  });
});
