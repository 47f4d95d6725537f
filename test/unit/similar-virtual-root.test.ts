/**
 * gateway/virtual-root.ts's study search with the real /similar search on an embedded index and
 * a stand-in PACS: what the PACS refuses in the viewer's filters is a 400, not "PACS unreachable",
 * but the gateway's own instance lookup is not the viewer's; the search is as deep as
 * CBMIR_SIMILAR_MAX_LIMIT allows; an Accept that rules out JSON is 406.
 * (The real stack: test/integration/virtual-root.test.ts.)
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../core/config.js';
import { EmbeddedIndex } from '../../core/index/embedded/embedded-index.js';
import { createLogger } from '../../core/log.js';
import { PacsClient } from '../../core/pacs/client.js';
import { virtualRootGateway } from './fake-gateway.js';
import { AccessChecker } from '../../gateway/similar-access.js';
import { SimilarSearch, type SimilarSearchDeps } from '../../gateway/similar-search.js';
import { attachVirtualRoot } from '../../gateway/virtual-root.js';
import { unitVectors } from '../helpers/vectors.js';

const DIMS = 16;
const OTHERS = 8;
const MAX_LIMIT = 5;
const study = (i: number) => `2.25.7.${i}`;
const QUERY = { studyInstanceUid: study(0), seriesInstanceUid: `${study(0)}.1`, sopInstanceUid: `${study(0)}.1.1` };
/** Credentials the stand-in PACS shows nothing of QUERY's study to. */
const OUTSIDER = 'Basic b3V0c2lkZXI6eA==';

type Problem = { status: number; code: string; detail?: string };

describe('virtual root study search (stand-in PACS)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cbmir-vroot-'));
  /** The record QIDOs the virtual root sent (the access checker's, includefield=0020000D only, are left out). */
  const recordQidos: URLSearchParams[] = [];
  const closeHooks: Array<() => Promise<void> | void> = [];
  let index: EmbeddedIndex;
  let pacs: http.Server;
  let gateway: http.Server;
  let gatewayBase = '';
  let vroot = '';

  before(async () => {
    // QIDO /studies as Orthanc's plugin answers it: 400 for a fuzzymatching value other than
    // true/false; PatientName=FAIL stands in for a PACS fault (500). QIDO /instances by SOP
    // Instance UID: 9.9.9 as a PACS that answers "no match" with 404, 8.8.8 one that refuses an
    // instance search without a study (400), anything else no match.
    pacs = http.createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://pacs');
      const q = u.searchParams;
      if (u.pathname.endsWith('/instances')) {
        const sop = q.get('SOPInstanceUID');
        if (sop === '9.9.9' || sop === '8.8.8') return void res.writeHead(sop === '9.9.9' ? 404 : 400).end();
        return void res.writeHead(200, { 'content-type': 'application/dicom+json' }).end('[]');
      }
      if (q.get('includefield') !== '0020000D') recordQidos.push(q);
      const fuzzy = q.get('fuzzymatching');
      if (fuzzy !== null && fuzzy !== 'true' && fuzzy !== 'false')
        return void res.writeHead(400).end('Not a proper value for fuzzy matching');
      if (q.get('PatientName') === 'FAIL') return void res.writeHead(500).end();
      const records = (q.get('StudyInstanceUID') ?? '')
        .split(',')
        .filter((uid) => !(req.headers.authorization === OUTSIDER && uid === QUERY.studyInstanceUid))
        .map((uid) => ({ '0020000D': { vr: 'UI', Value: [uid] } }));
      res.writeHead(200, { 'content-type': 'application/dicom+json' }).end(JSON.stringify(records));
    });
    pacs.listen(0, '127.0.0.1');
    await once(pacs, 'listening');
    const pacsUrl = `http://127.0.0.1:${(pacs.address() as AddressInfo).port}/dicom-web`;

    index = new EmbeddedIndex({ path: join(dir, 'vroot.sqlite') });
    await index.ensure(DIMS, 'v1');
    const vectors = unitVectors(OTHERS + 1, DIMS, 11);
    await index.upsert(
      vectors.map((vector, i) => ({
        studyInstanceUid: study(i),
        seriesInstanceUid: `${study(i)}.1`,
        sopInstanceUid: `${study(i)}.1.1`,
        modelVersion: 'v1',
        indexedAt: new Date(0).toISOString(),
        vector,
      })),
    );
    const config = loadConfig({ CBMIR_PACS_URL: pacsUrl, CBMIR_SIMILAR_MAX_LIMIT: String(MAX_LIMIT) });
    const pacsClient = new PacsClient({ url: pacsUrl, timeoutMs: 5000 });
    closeHooks.push(() => pacsClient.close());
    const access = new AccessChecker(pacsClient, { ttlMs: 0, maxEntries: 0, defaultAuthorization: undefined });
    const logger = createLogger('silent', 'test');
    // Every query here is indexed: the embed requester is never asked.
    const search = new SimilarSearch({ index, access, modelVersion: 'v1', log: logger } as unknown as SimilarSearchDeps);
    const { gateway: fakeGateway, handler } = virtualRootGateway(closeHooks);
    attachVirtualRoot(fakeGateway, { config, index, search, logger });
    // As server.ts routes GET /similar-to/{sop}/dicom-web/studies.
    gateway = http.createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://gw');
      const sop = /^\/similar-to\/([0-9.]+)\//.exec(u.pathname)?.[1] ?? '';
      const base = `http://${req.headers.host}/similar-to/${sop}`;
      handler()(req, res, {
        sopInstanceUid: sop,
        query: u.search.slice(1),
        publicBase: { base, host: req.headers.host ?? '', proto: 'http', path: `/similar-to/${sop}` },
      });
    });
    gateway.listen(0, '127.0.0.1');
    await once(gateway, 'listening');
    gatewayBase = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
    vroot = `${gatewayBase}/similar-to/${QUERY.sopInstanceUid}/dicom-web`;
  });

  after(async () => {
    gateway.close();
    pacs.close();
    for (const h of closeHooks) await h();
    await index.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const studies = (query = '', headers: Record<string, string> = {}) => fetch(`${vroot}/studies${query}`, { headers });

  test('a filter the PACS refuses (4xx) is 400 BAD_PARAM naming the PACS status; a PACS fault stays 502', async () => {
    const refused = await studies('?fuzzymatching=yes');
    assert.equal(refused.status, 400);
    assert.match(refused.headers.get('content-type') ?? '', /^application\/problem\+json/);
    const p = (await refused.json()) as Problem;
    assert.equal(p.code, 'BAD_PARAM');
    assert.match(p.detail ?? '', /the PACS refused the query: status 400/);
    const fault = await studies('?PatientName=FAIL');
    assert.equal(fault.status, 502);
    assert.equal(((await fault.json()) as Problem).code, 'UPSTREAM_UNREACHABLE');
    assert.equal((await studies('?fuzzymatching=false')).status, 200);
  });

  test('the gateway’s own instance lookup is not the viewer’s query: a PACS 404 is the same 404 as an unreadable indexed instance, a 400 is 502', async () => {
    const problem = async (sop: string, headers: Record<string, string> = {}) => {
      const r = await fetch(`${gatewayBase}/similar-to/${sop}/dicom-web/studies`, { headers });
      assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/);
      const p = (await r.json()) as Problem;
      return { status: r.status, code: p.code, detail: p.detail };
    };
    const unreadable = await problem(QUERY.sopInstanceUid, { authorization: OUTSIDER });
    assert.deepEqual([unreadable.status, unreadable.code], [404, 'NOT_FOUND'], 'an indexed instance the caller cannot read');
    assert.deepEqual(await problem('9.9.9'), unreadable, 'unknown to the index, and to the PACS (404)');
    assert.deepEqual(await problem('7.7.7'), unreadable, 'unknown to the index, and to the PACS ([])');
    const refused = await problem('8.8.8');
    assert.deepEqual([refused.status, refused.code], [502, 'UPSTREAM_UNREACHABLE'], 'no filter of the viewer’s was in that query');
  });

  test('the ranking is as deep as CBMIR_SIMILAR_MAX_LIMIT when that is below 100', async () => {
    recordQidos.length = 0;
    const r = await studies();
    assert.equal(r.status, 200);
    const list = (await r.json()) as Array<Record<string, { Value: unknown[] }>>;
    assert.equal(list.length, MAX_LIMIT, `${OTHERS} similar studies indexed, ${MAX_LIMIT} allowed`);
    assert.deepEqual(
      list.map((d) => d['00091010']!.Value[0]),
      [1, 2, 3, 4, 5],
    );
    assert.equal(recordQidos.length, 1);
    assert.equal(recordQidos[0]!.get('StudyInstanceUID')!.split(',').length, MAX_LIMIT, 'the PACS is asked for no more');
  });

  test('Accept: 406 unless DICOM JSON, JSON or a wildcard is acceptable; the accept parameter wins', async () => {
    const xml = 'multipart/related; type="application/dicom+xml"';
    recordQidos.length = 0;
    for (const [query, accept] of [
      ['', xml],
      ['', 'application/xml'],
      ['', 'application/dicom+json;q=0, multipart/related; type="application/dicom+xml"'],
      [`?accept=${encodeURIComponent(xml)}`, 'application/dicom+json'],
    ] as const) {
      const r = await studies(query, { accept });
      assert.equal(r.status, 406, `${query} ${accept}`);
      assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/);
      const p = (await r.json()) as Problem;
      assert.deepEqual([p.status, p.code], [406, 'NOT_ACCEPTABLE']);
    }
    assert.equal(recordQidos.length, 0, 'refused before any search');
    for (const accept of ['application/dicom+json', 'application/json', '*/*', 'application/*', `${xml}, application/dicom+json;q=0.5`]) {
      const r = await studies('', { accept });
      assert.equal(r.status, 200, accept);
      assert.match(r.headers.get('content-type') ?? '', /^application\/dicom\+json/);
      await r.arrayBuffer();
    }
    assert.equal((await studies(`?accept=${encodeURIComponent('application/dicom+json')}`, { accept: xml })).status, 200);
  });
});
