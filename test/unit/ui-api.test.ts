/**
 * gateway/ui/api.js (plain browser JS, imported here as an ES module): what the page's
 * Authorization field sends, and the messages a person reads when the gateway refuses
 * (a refused token is not a missing one; a busy service says when to try again).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { repoRoot } from '../helpers/fixtures.js';

interface ApiModule {
  authorizationOf(raw: string | undefined): string;
  setToken(raw: string | undefined): void;
  retryAfterSeconds(header: string | null | undefined, now?: number): number | undefined;
  problemMessage(status: number, body: unknown, opts?: { retryAfter?: number; tokenSet?: boolean }): string;
  thumbnailUrl(path: string): Promise<string>;
}

let api: ApiModule;
let base = '';
/** What the test server answers next, and the Authorization it was sent. */
let answer: { status: number; headers?: Record<string, string>; body?: unknown } = { status: 200 };
let seenAuthorization: string | undefined;
const server = http.createServer((req, res) => {
  seenAuthorization = req.headers.authorization;
  res.writeHead(answer.status, { 'content-type': 'application/problem+json', ...answer.headers }).end(JSON.stringify(answer.body ?? {}));
});

before(async () => {
  // A computed specifier: the page's JS is not part of the TypeScript project.
  api = (await import(pathToFileURL(path.join(repoRoot, 'gateway', 'ui', 'api.js')).href)) as ApiModule;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => server.close());

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
