/**
 * gateway/ui/api.js (plain browser JS, imported here as an ES module): what the page's
 * Authorization field sends, and the messages a person reads when the gateway refuses
 * (a refused token is not a missing one; a busy service says when to try again) or cannot be
 * reached; requests the page cancels (a superseded search, heatmap or listing) are cancelled
 * on the wire and end in an AbortError, never in a message; person names in any script; the
 * number of results the page may ask for.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { repoRoot } from '../helpers/fixtures.js';

type Uids = { study: string; series: string; sop: string };
type Signal = { signal?: AbortSignal };
type SimilarOpts = { limit: number; excludeSamePatient: boolean } & Signal;
interface ApiModule {
  authorizationOf(raw: string | undefined): string;
  setToken(raw: string | undefined): void;
  retryAfterSeconds(header: string | null | undefined, now?: number): number | undefined;
  problemMessage(status: number, body: unknown, opts?: { retryAfter?: number; tokenSet?: boolean }): string;
  thumbnailUrl(path: string): Promise<string>;
  NETWORK_MESSAGE: string;
  networkError(err: unknown): unknown;
  tagValue(ds: unknown, tag: string): unknown;
  listStudies(root: string, match?: Array<[string, string]>, limit?: number, opts?: Signal): Promise<unknown>;
  listSeries(root: string, study: string, opts?: Signal): Promise<unknown>;
  listInstances(root: string, study: string, series: string, opts?: { max?: number } & Signal): Promise<unknown>;
  similarByUids(uids: Uids, opts: SimilarOpts): Promise<unknown>;
  similarByUpload(file: Blob, opts: SimilarOpts): Promise<unknown>;
  heatmap(query: Uids | { file: Blob }, result: Uids, opts?: Signal): Promise<unknown>;
  PAGE_MAX_LIMIT: number;
  limitBound(maxLimit: unknown): number;
  clampLimit(value: unknown, max?: number): number;
}

let api: ApiModule;
let base = '';
/** What the test server answers next, and the Authorization it was sent. */
let answer: { status: number; headers?: Record<string, string>; body?: unknown } = { status: 200 };
let seenAuthorization: string | undefined;
/** Requests under /hang/ get no answer; each one's path is told here when its client goes away. */
const hung = new Map<string, Promise<void>>();
const server = http.createServer((req, res) => {
  seenAuthorization = req.headers.authorization;
  const p = new URL(req.url ?? '/', 'http://x').pathname;
  if (p.startsWith('/hang/')) {
    req.resume(); // an upload keeps flowing until the client cancels it
    hung.set(
      p,
      once(res, 'close').then(() => undefined),
    );
    return;
  }
  res.writeHead(answer.status, { 'content-type': 'application/problem+json', ...answer.headers }).end(JSON.stringify(answer.body ?? {}));
});

before(async () => {
  // A computed specifier: the page's JS is not part of the TypeScript project.
  api = (await import(pathToFileURL(path.join(repoRoot, 'gateway', 'ui', 'api.js')).href)) as ApiModule;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => {
  server.closeAllConnections();
  server.close();
});

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

describe('ui: the Authorization field', () => {
  it('user:password becomes Basic with base64 credentials, with or without the scheme typed', () => {
    assert.equal(api.authorizationOf('alice:secret'), `Basic ${b64('alice:secret')}`);
    assert.equal(api.authorizationOf('  alice:secret  '), `Basic ${b64('alice:secret')}`);
    assert.equal(api.authorizationOf('Basic alice:secret'), `Basic ${b64('alice:secret')}`);
    assert.equal(api.authorizationOf('basic alice:pass word'), `Basic ${b64('alice:pass word')}`);
    // Not Latin-1: sent as UTF-8 in base64, where fetch would have thrown on the raw text.
    assert.equal(api.authorizationOf('jörg:пароль€'), `Basic ${b64('jörg:пароль€')}`);
    assert.equal(api.authorizationOf('user:pa:ss'), `Basic ${b64('user:pa:ss')}`, 'the first colon separates, the rest is password');
    assert.equal(api.authorizationOf('john smith:pw'), `Basic ${b64('john smith:pw')}`, 'a user name with a space is not a scheme');
  });

  it('credentials already encoded, other schemes and bare tokens', () => {
    assert.equal(api.authorizationOf(`Basic ${b64('alice:secret')}`), `Basic ${b64('alice:secret')}`);
    assert.equal(api.authorizationOf('Bearer eyJhbGciOi.eyJzdWIi.sig'), 'Bearer eyJhbGciOi.eyJzdWIi.sig');
    assert.equal(api.authorizationOf('Bearer a:b'), 'Bearer a:b', 'a Bearer token is never re-encoded');
    assert.equal(api.authorizationOf('Negotiate YIIB'), 'Negotiate YIIB');
    assert.equal(api.authorizationOf('ui-test-token'), 'Bearer ui-test-token');
    assert.equal(api.authorizationOf(''), '');
    assert.equal(api.authorizationOf('   '), '');
    assert.equal(api.authorizationOf(undefined), '');
  });

  it('a value no header can carry is a clear error that does not repeat it', () => {
    for (const bad of ['tökén', 'Bearer tökén', 'Basic dGVz\u00e9', 'tok\u0000en', 'a\nb']) {
      assert.throws(
        () => api.authorizationOf(bad),
        (e: Error) => /Authorization field/.test(e.message) && /printable ASCII/.test(e.message) && !e.message.includes(bad),
        JSON.stringify(bad),
      );
    }
  });

  it('is what every request sends; an invalid entry sends none, not the previous one', async () => {
    answer = { status: 200 };
    api.setToken('alice:secret');
    await api.thumbnailUrl(`${base}/t1`).catch(() => undefined); // URL.createObjectURL of a node Blob may work or not: only the request matters
    assert.equal(seenAuthorization, `Basic ${b64('alice:secret')}`);
    assert.throws(() => api.setToken('tökén'));
    await api.thumbnailUrl(`${base}/t2`).catch(() => undefined);
    assert.equal(seenAuthorization, undefined);
    api.setToken('');
  });
});

describe('ui: problem messages', () => {
  it('Retry-After in seconds or as a date', () => {
    assert.equal(api.retryAfterSeconds('7'), 7);
    assert.equal(api.retryAfterSeconds(' 0 '), 0);
    const now = Date.parse('2025-01-01T00:00:00Z');
    assert.equal(api.retryAfterSeconds('Wed, 01 Jan 2025 00:00:30 GMT', now), 30);
    assert.equal(api.retryAfterSeconds('Tue, 31 Dec 2024 23:00:00 GMT', now), 0, 'a date gone by: now');
    for (const none of [null, undefined, '', 'soon', '-3', '1.5']) assert.equal(api.retryAfterSeconds(none), undefined, String(none));
  });

  it('a 503 or 429 says when to try again', () => {
    const busy = { title: 'Service Unavailable', detail: 'EMBED_TIMEOUT: the embedding took too long' };
    assert.equal(
      api.problemMessage(503, busy, { retryAfter: 5 }),
      'The search service is busy or starting (the embedding took too long): try again in 5 s.',
    );
    assert.match(api.problemMessage(503, undefined, {}), /busy or starting: try again shortly\.$/);
    assert.match(api.problemMessage(429, undefined, { retryAfter: 12 }), /^Too many requests at once: try again in 12 s\.$/);
    assert.notEqual(api.problemMessage(429, undefined), 'The gateway answered HTTP 429.');
  });

  it('a 401 asks for a token when none was entered, and says it was refused when one was', () => {
    assert.match(api.problemMessage(401, undefined, { tokenSet: false }), /asks for credentials: enter an Authorization token above/);
    const refused = api.problemMessage(401, { title: 'Unauthorized' }, { tokenSet: true });
    assert.match(refused, /PACS refused the token entered/);
    assert.doesNotMatch(refused, /enter an Authorization token/);
    // Unchanged kinds.
    assert.equal(api.problemMessage(404, { detail: 'no such study' }), 'no such study (HTTP 404)');
    assert.equal(api.problemMessage(500, undefined), 'The gateway answered HTTP 500.');
  });

  it("the page's requests pass the answer's Retry-After and whether a token is set", async () => {
    api.setToken('');
    answer = { status: 503, headers: { 'retry-after': '9' }, body: { title: 'Service Unavailable', detail: 'all upload slots are busy' } };
    await assert.rejects(
      api.thumbnailUrl(`${base}/busy`),
      (e: Error & { status?: number }) => e.status === 503 && /try again in 9 s/.test(e.message),
    );
    answer = { status: 401, headers: { 'www-authenticate': 'Bearer' }, body: { title: 'Unauthorized' } };
    await assert.rejects(api.thumbnailUrl(`${base}/anon`), (e: Error) => /enter an Authorization token above/.test(e.message));
    api.setToken('wrong-token');
    await assert.rejects(api.thumbnailUrl(`${base}/refused`), (e: Error) => /PACS refused the token entered/.test(e.message));
    api.setToken('');
  });
});

/** The fetch the module calls, replaced for `fn`: each call's URL and init recorded, and `answer` called with them. */
async function withFetch<T>(
  answerWith: (url: string, init: RequestInit) => Promise<Response>,
  fn: (calls: Array<{ url: string; init: RequestInit }>) => Promise<T>,
): Promise<T> {
  const real = globalThis.fetch;
  const calls: Array<{ url: string; init: RequestInit }> = [];
  globalThis.fetch = ((url: string, init: RequestInit) => {
    calls.push({ url: String(url), init });
    return answerWith(String(url), init);
  }) as typeof fetch;
  try {
    return await fn(calls);
  } finally {
    globalThis.fetch = real;
  }
}

/** The page's relative URLs (../similar …) resolved as the browser does from a page at /hang/ui/ of the test server. */
const realFetch = globalThis.fetch;
const fromHungPage = (url: string, init: RequestInit) => realFetch(new URL(url, `${base}/hang/ui/`), init);

describe('ui: a gateway that cannot be reached', () => {
  it("says so in words a person can act on, not the browser's TypeError", async () => {
    // A port nothing listens on: fetch rejects with a TypeError ("fetch failed" here, "Failed to fetch" in Chromium).
    const closed = http.createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const port = (closed.address() as AddressInfo).port;
    closed.close();
    await once(closed, 'close');
    const gone = `http://127.0.0.1:${port}`;
    const network = (e: Error & { network?: boolean }) =>
      e.message === api.NETWORK_MESSAGE && e.network === true && !/fetch/i.test(e.message);
    await assert.rejects(api.thumbnailUrl(`${gone}/t`), network);
    await assert.rejects(api.listStudies(`${gone}/dicom-web`), network);
    await assert.rejects(api.listInstances(`${gone}/dicom-web`, '1', '2'), network);
    assert.match(api.NETWORK_MESSAGE, /^Cannot reach the gateway \(network error\): check the connection and try again\.$/);
    // The gateway's POSTs alike (relative URLs, resolved from the page), and a connection dropped mid-answer.
    await withFetch(
      () => Promise.reject(new TypeError('Failed to fetch')),
      async () => {
        await assert.rejects(api.similarByUpload(new Blob([new Uint8Array(4)]), { limit: 3, excludeSamePatient: true }), network);
        await assert.rejects(api.heatmap({ study: '1', series: '2', sop: '3' }, { study: '1', series: '2', sop: '4' }), network);
      },
    );
    await withFetch(
      async () => ({ ok: true, status: 200, json: () => Promise.reject(new TypeError('network error')) }) as unknown as Response,
      async () => {
        await assert.rejects(api.similarByUids({ study: '1', series: '2', sop: '3' }, { limit: 3, excludeSamePatient: true }), network);
      },
    );
  });

  it("a cancelled request stays an AbortError, and the page's own errors pass as they are", () => {
    const abort = new DOMException('This operation was aborted', 'AbortError');
    assert.equal(api.networkError(abort), abort);
    const own = new Error('The gateway answered HTTP 500.');
    assert.equal(api.networkError(own), own);
    const mapped = api.networkError(new TypeError('Failed to fetch')) as Error;
    assert.equal(mapped.message, api.NETWORK_MESSAGE);
    assert.equal((mapped.cause as Error).message, 'Failed to fetch', "the browser's own words kept as the cause");
  });
});

describe('ui: superseded requests are cancelled', () => {
  it("every search, heatmap and listing request carries the caller's signal", async () => {
    const uids = { study: '1.2', series: '1.2.3', sop: '1.2.3.4' };
    const signal = new AbortController().signal;
    const json = (body: unknown) => new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } });
    await withFetch(
      async (url) => json(url.includes('/instances') ? [] : url.includes('similar') ? { results: [] } : []),
      async (calls) => {
        await api.listStudies('/dicom-web', [], 10, { signal });
        await api.listSeries('/dicom-web', uids.study, { signal });
        await api.listInstances('/dicom-web', uids.study, uids.series, { signal });
        await api.similarByUids(uids, { limit: 5, excludeSamePatient: true, signal });
        await api.similarByUpload(new Blob([new Uint8Array(8)]), { limit: 5, excludeSamePatient: false, signal });
        await api.heatmap(uids, uids, { signal });
        await api.heatmap({ file: new Blob([new Uint8Array(8)]) }, uids, { signal });
        assert.equal(calls.length, 7);
        for (const c of calls) assert.equal(c.init.signal, signal, c.url);
        // The signal is no query parameter.
        for (const c of calls) assert.doesNotMatch(c.url, /signal/, c.url);
      },
    );
  });

  it('a cancelled upload ends on the wire (its slot is freed) and rejects with an AbortError, not a message', async () => {
    await withFetch(fromHungPage, async () => {
      const c = new AbortController();
      const upload = api.heatmap(
        { file: new Blob([new Uint8Array(1 << 20)]) },
        { study: '1', series: '2', sop: '3' },
        { signal: c.signal },
      );
      await waitForHung('/similar/heatmap', upload);
      c.abort();
      await assert.rejects(upload, (e: Error) => e.name === 'AbortError' && e.message !== api.NETWORK_MESSAGE);
      await hung.get('/hang/similar/heatmap'); // the server saw the request go
    });
    const c = new AbortController();
    const listing = api.listStudies(`${base}/hang/dicom-web`, [], 10, { signal: c.signal });
    await waitForHung('/dicom-web/studies', listing);
    c.abort();
    await assert.rejects(listing, (e: Error) => e.name === 'AbortError');
    await hung.get('/hang/dicom-web/studies');
  });
});

/** Waits until the test server holds the request to /hang{path} (the page's request is under way). */
async function waitForHung(path: string, pending: Promise<unknown>): Promise<void> {
  pending.catch(() => undefined); // asserted by the caller
  for (let i = 0; i < 200 && !hung.has(`/hang${path}`); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(hung.has(`/hang${path}`), `no request to /hang${path}`);
}

describe('ui: person names', () => {
  const pn = (v: unknown) => ({ '00100010': { vr: 'PN', Value: [v] } });
  it('the Alphabetic group, else the Ideographic, else the Phonetic one', () => {
    assert.equal(api.tagValue(pn({ Alphabetic: 'Yamada^Tarou', Ideographic: '山田^太郎' }), '00100010'), 'Yamada^Tarou');
    assert.equal(api.tagValue(pn({ Ideographic: '山田^太郎', Phonetic: 'やまだ^たろう' }), '00100010'), '山田^太郎');
    assert.equal(api.tagValue(pn({ Phonetic: 'やまだ^たろう' }), '00100010'), 'やまだ^たろう');
    assert.equal(api.tagValue(pn({ Alphabetic: '', Ideographic: '홍^길동' }), '00100010'), '홍^길동', 'an empty group is no name');
    assert.equal(api.tagValue(pn({}), '00100010'), undefined, 'no group: no name, never "[object Object]"');
    assert.equal(api.tagValue({ '00100010': { vr: 'PN' } }, '00100010'), undefined);
    // Other values as they are.
    assert.equal(api.tagValue({ '00200013': { vr: 'IS', Value: [7] } }, '00200013'), 7);
  });
});

describe('ui: how many results the page asks for', () => {
  it("the page's own bound, or the gateway's CBMIR_SIMILAR_MAX_LIMIT (config.json maxLimit) where lower", () => {
    assert.equal(api.PAGE_MAX_LIMIT, 50);
    assert.equal(api.limitBound(100), 50);
    assert.equal(api.limitBound(10_000), 50);
    assert.equal(api.limitBound(5), 5);
    assert.equal(api.limitBound(1), 1);
    for (const none of [undefined, null, 0, -3, 2.5, 'x']) assert.equal(api.limitBound(none), 50, String(none));
  });

  it('the Results field as a limit within the bound', () => {
    assert.equal(api.clampLimit('10', 5), 5);
    assert.equal(api.clampLimit('50', 50), 50);
    assert.equal(api.clampLimit('500'), 50);
    assert.equal(api.clampLimit('-3', 5), 1);
    assert.equal(api.clampLimit('0', 5), 5, 'none (0 or empty): the default 10, within the bound');
    assert.equal(api.clampLimit('', 50), 10);
    assert.equal(api.clampLimit('3.6', 50), 4);
  });
});
