/**
 * POST /similar (gateway/similar.ts) against a stand-in PACS: a caller the PACS refuses (401)
 * is answered before its upload is read or embedded, with the PACS's own challenge; a PACS that
 * asks for no credentials keeps taking uploads; a failed embed job tells the client no internal
 * address, and the log why. Heatmaps pass the PACS's challenge on too.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../core/config.js';
import type { VectorIndex } from '../../core/index/types.js';
import type { EmbedJobData, EmbedJobResult } from '../../core/jobs.js';
import type { Logger } from '../../core/log.js';
import { JobUnavailable } from '../../core/queue/job-requester.js';
import { expressGateway, listening } from './fake-gateway.js';
import { attachSimilar } from '../../gateway/similar.js';
import { attachSimilarHeatmap } from '../../gateway/similar-heatmap.js';

const CHALLENGE = 'Basic realm="orthanc-secure"';
const UIDS = 'StudyInstanceUID=1.2&SeriesInstanceUID=1.2.3&SOPInstanceUID=1.2.3.4';
const RESULT_UIDS = 'ResultStudyInstanceUID=1.5&ResultSeriesInstanceUID=1.5.6&ResultSOPInstanceUID=1.5.6.7';
/** The smallest body POST /similar takes to a worker: a preamble and "DICM". */
const PART10 = Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), Buffer.alloc(16)]);

type Problem = { code: string; detail?: string };

describe('POST /similar: credentials before the upload', () => {
  /** Authorization values the stand-in PACS refuses (401 with CHALLENGE); any other is let in. */
  const refused = new Set(['Basic YmFkOmNyZWRz']);
  const pacsAsked: string[] = [];
  const embedded: EmbedJobData[] = [];
  const logged: Array<{ obj: unknown; msg: string }> = [];
  let embedAnswer: () => Promise<EmbedJobResult> = async () =>
    ({ status: 'embedded', vector: [1, 0, 0, 0], modelVersion: 'v1' }) as EmbedJobResult;
  const closeHooks: Array<() => Promise<void> | void> = [];
  let pacs: http.Server;
  let server: http.Server;
  let base = '';

  before(async () => {
    pacs = http.createServer((req, res) => {
      pacsAsked.push(req.url ?? '');
      if (refused.has(req.headers.authorization ?? '')) return void res.writeHead(401, { 'www-authenticate': CHALLENGE }).end();
      res.writeHead(200, { 'content-type': 'application/dicom+json' }).end('[]');
    });
    pacs.listen(0, '127.0.0.1');
    await once(pacs, 'listening');
    const config = loadConfig({ CBMIR_PACS_URL: `http://127.0.0.1:${(pacs.address() as AddressInfo).port}/dicom-web` });
    const { gateway, app } = expressGateway(closeHooks);
    const index = { liveVersion: async () => 'v1', knn: async () => [] } as unknown as VectorIndex;
    const note = (obj: unknown, msg: string) => void logged.push({ obj, msg });
    const logger = { warn: note, error: note, info: note, debug: note } as unknown as Logger;
    const embed = {
      embed: async (d: EmbedJobData) => {
        embedded.push(d);
        return embedAnswer();
      },
      close: async () => undefined,
    };
    const similar = attachSimilar(gateway, { config, index, modelVersion: 'v1', logger, embed });
    const access = similar.access;
    attachSimilarHeatmap(gateway, {
      config,
      access,
      index,
      modelVersion: 'v1',
      logger,
      requester: { request: async () => ({ status: 'refused', reason: 'not reached' }), close: async () => undefined },
    });
    ({ server, base } = await listening(http.createServer(app)));
  });

  after(async () => {
    server.close();
    pacs.close();
    for (const h of closeHooks) await h();
  });

  const upload = (authorization?: string) =>
    fetch(`${base}/similar`, {
      method: 'POST',
      headers: { 'content-type': 'application/dicom', ...(authorization ? { authorization } : {}) },
      body: PART10,
    });

  test('a credential the PACS refuses: 401 with the PACS’s challenge, the upload never embedded', async () => {
    embedded.length = 0;
    const r = await upload('Basic YmFkOmNyZWRz');
    assert.equal(r.status, 401);
    assert.equal(((await r.json()) as Problem).code, 'UNAUTHORIZED');
    assert.equal(r.headers.get('www-authenticate'), CHALLENGE);
    assert.equal(embedded.length, 0);
  });

  test('the refusal comes before the body is read: a client that has sent none of it is answered', async () => {
    const answer = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${base}/similar`, {
        method: 'POST',
        headers: { 'content-type': 'application/dicom', 'content-length': String(PART10.length), authorization: 'Basic YmFkOmNyZWRz' },
      });
      const timer = setTimeout(() => {
        req.destroy();
        reject(new Error('no answer while the body was withheld'));
      }, 5_000);
      req.on('response', (res) => {
        clearTimeout(timer);
        res.resume();
        req.destroy();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', () => undefined);
      req.flushHeaders();
    });
    assert.equal(answer, 401);
  });

  test('a PACS that asks for no credentials keeps taking uploads; the probe is cached per caller', async () => {
    embedded.length = 0;
    // Earlier tests probed for other callers: only this caller's probes are counted, from here.
    const probes = () => pacsAsked.filter((u) => new URL(u, 'http://pacs').searchParams.get('limit') === '1').length;
    const probesBefore = probes();
    const first = await upload();
    assert.equal(first.status, 200, await first.clone().text());
    assert.equal(embedded.length, 1);
    assert.equal(probes(), probesBefore + 1, 'the first upload of this caller probes the PACS once');
    assert.equal((await upload()).status, 200);
    assert.equal(embedded.length, 2);
    assert.equal(probes(), probesBefore + 1, 'the second upload asked the PACS nothing more');
  });

  test('a failed embed job: the client is told no internal address, the log is told why (UIDs blanked)', async () => {
    logged.length = 0;
    embedAnswer = async () => {
      throw new JobUnavailable('the embedding job failed', 'fetch (WADO-RS): connect ECONNREFUSED 10.9.8.7:8042 for 1.2.840.1.5.6', 1);
    };
    try {
      const r = await upload();
      assert.equal(r.status, 503);
      const text = await r.text();
      assert.doesNotMatch(text, /10\.9\.8\.7|ECONNREFUSED/);
      const entry = logged.find((l) => /no query vector/.test(l.msg));
      assert.ok(entry, 'the reason is logged');
      assert.deepEqual(entry.obj, { reason: 'fetch (WADO-RS): connect ECONNREFUSED 10.9.8.7:8042 for <uid>' });
    } finally {
      embedAnswer = async () => ({ status: 'embedded', vector: [1, 0, 0, 0], modelVersion: 'v1' }) as EmbedJobResult;
    }
  });

  test('GET /similar/heatmap: a 401 of the PACS carries the PACS’s challenge', async () => {
    const r = await fetch(`${base}/similar/heatmap?${UIDS}&${RESULT_UIDS}`, { headers: { authorization: 'Basic YmFkOmNyZWRz' } });
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('www-authenticate'), CHALLENGE);
  });
});
