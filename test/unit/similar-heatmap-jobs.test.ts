/**
 * GET /similar/heatmap's load on the embed queue, which every /similar query shares: requests in
 * flight are bounded (a pool of CBMIR_SIMILAR_MAX_UPLOADS slots of their own, half of it per
 * caller; 503 EMBED_UNAVAILABLE with Retry-After beyond), and identical requests made together
 * share one job (core/heatmap/requester.ts, core/jobs.ts heatmapJobId), driven here through a
 * stand-in queue.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../core/config.js';
import { HeatmapRequester } from '../../core/heatmap/requester.js';
import type { VectorIndex } from '../../core/index/types.js';
import type { EmbedJobResult, EmbedQueueJobData, EmbedQueueJobResult, HeatmapJobData, HeatmapJobResult } from '../../core/jobs.js';
import { createLogger } from '../../core/log.js';
import type { SharedQueue } from '../../core/queue/job-requester.js';
import { expressGateway, listening, readablePacs } from './fake-gateway.js';
import { answeringRequester, standInQueue } from './stand-in-queue.js';
import { attachSimilar } from '../../gateway/similar.js';
import { attachSimilarHeatmap } from '../../gateway/similar-heatmap.js';

const UIDS =
  'StudyInstanceUID=1.2&SeriesInstanceUID=1.2.3&SOPInstanceUID=1.2.3.4' +
  '&ResultStudyInstanceUID=1.5&ResultSeriesInstanceUID=1.5.6&ResultSOPInstanceUID=1.5.6.7';
const PART10 = Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), Buffer.alloc(16)]);
const HEATMAP: HeatmapJobResult = { status: 'heatmap', modelVersion: 'v1', similarity: 0.5, height: 1, width: 1, query: [0], result: [0] };

type Problem = { code: string; detail?: string };

describe('GET /similar/heatmap requests in flight', () => {
  /** Heatmaps the stand-in worker holds until released. */
  let gate: Promise<void> = Promise.resolve();
  let made = 0;
  const closeHooks: Array<() => Promise<void> | void> = [];
  let pacs: http.Server;
  let server: http.Server;
  let base = '';

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
      embed: async (): Promise<EmbedJobResult> => ({ status: 'embedded', vector: [1, 0, 0, 0], modelVersion: 'v1' }),
      close: async () => undefined,
    };
    const similar = attachSimilar(gateway, { config, index, modelVersion: 'v1', logger, embed });
    const requester = {
      request: async (): Promise<HeatmapJobResult> => {
        made++;
        await gate;
        return HEATMAP;
      },
      close: async () => undefined,
    };
    attachSimilarHeatmap(gateway, {
      config,
      access: similar.access,
      index,
      modelVersion: 'v1',
      logger,
      uploads: similar.uploads,
      requester,
    });
    ({ server, base } = await listening(http.createServer(app)));
  });

  after(async () => {
    server.close();
    pacs.close();
    for (const h of closeHooks) await h();
  });

  const heatmap = (authorization: string) =>
    fetch(`${base}/similar/heatmap?${UIDS}`, { headers: { authorization }, signal: AbortSignal.timeout(5_000) });
  /** Waits until `n` heatmaps have reached the stand-in worker, 5 s at most. */
  const madeReaches = async (n: number) => {
    const deadline = performance.now() + 5_000;
    while (made < n) {
      if (performance.now() > deadline) assert.fail(`${n} heatmaps asked for: not within 5 s`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };

  test('bounded: one caller gets its share, the pool its size, then 503 with Retry-After; uploads keep their own slots', async () => {
    let open!: () => void;
    gate = new Promise((r) => (open = r));
    made = 0;
    try {
      const first = heatmap('Basic YWxpY2U6eA==');
      await madeReaches(1); // waiting on its job
      const again = await heatmap('Basic YWxpY2U6eA==');
      assert.equal(again.status, 503, 'the same caller’s second heatmap');
      assert.equal(((await again.json()) as Problem).code, 'EMBED_UNAVAILABLE');
      assert.equal(again.headers.get('retry-after'), '2');
      const other = heatmap('Basic Ym9iOng=');
      await madeReaches(2);
      const third = await heatmap('Basic Y2Fyb2w6eA==');
      assert.equal(third.status, 503, 'the pool is full');
      assert.match(((await third.json()) as Problem).detail ?? '', /^there are 2 heatmaps of archived images being made already/);
      assert.equal(made, 2, 'no job was asked for the refused ones');
      // The upload slots are not the heatmaps': a query by upload is searched meanwhile.
      const upload = await fetch(`${base}/similar`, {
        method: 'POST',
        headers: { 'content-type': 'application/dicom', authorization: 'Basic ZGF2ZTp4' },
        body: PART10,
        signal: AbortSignal.timeout(5_000),
      });
      assert.equal(upload.status, 200, await upload.text());
      open();
      assert.equal((await first).status, 200);
      assert.equal((await other).status, 200);
      // Released: the next one is taken.
      assert.equal((await heatmap('Basic Y2Fyb2w6eA==')).status, 200);
    } finally {
      open();
      gate = Promise.resolve();
    }
  });
});

/** A HeatmapRequester whose requests go to a stand-in queue, each answered HEATMAP. */
function requesterOn(queue: SharedQueue<EmbedQueueJobData, unknown>) {
  const { jobs, asked } = answeringRequester<EmbedQueueJobData, EmbedQueueJobResult>(queue, HEATMAP);
  // No Redis is asked: the port is closed, should anything try.
  return { requester: new HeatmapRequester({ redisUrl: 'redis://127.0.0.1:1', timeoutMs: 1_000, jobs }), asked };
}

describe('heatmap jobs', () => {
  const q = { studyInstanceUid: '1.2', seriesInstanceUid: '1.2.3', sopInstanceUid: '1.2.3.4' };
  const r = { studyInstanceUid: '1.5', seriesInstanceUid: '1.5.6', sopInstanceUid: '1.5.6.7' };
  const pair = (over: Partial<HeatmapJobData> = {}): HeatmapJobData => ({
    kind: 'heatmap',
    query: q,
    result: r,
    modelVersion: 'v1',
    enqueuedAt: Date.now(),
    ...over,
  });

  test('identical requests made together share one job, kept for the others to find; another pair or model gets its own', async () => {
    const { queue, added } = standInQueue<EmbedQueueJobData>();
    const { requester, asked } = requesterOn(queue);
    await Promise.all([requester.request(pair({ enqueuedAt: 1 })), requester.request(pair({ enqueuedAt: 2 }))]);
    assert.equal(added.length, 2);
    const id = added[0]!.jobId;
    assert.match(id ?? '', /^h_[0-9a-f]{32}_v1$/, 'an id BullMQ takes: no ":", not an integer');
    assert.equal(added[1]!.jobId, id);
    assert.deepEqual(
      added.map((a) => a.created),
      [true, false],
      'the second joined the first',
    );
    assert.deepEqual(
      asked.map((o) => o.removeAfter),
      [false, false],
      'not removed by whoever is answered first',
    );
    for (const other of [
      pair({ modelVersion: 'v2' }),
      pair({ query: r, result: q }),
      pair({ result: { ...r, sopInstanceUid: '1.5.6.8' } }),
      pair({ query: { ...q, studyInstanceUid: '1.9' } }),
    ]) {
      await requester.request(other);
      assert.notEqual(added.at(-1)!.jobId, id, JSON.stringify(other));
      assert.equal(added.at(-1)!.created, true);
    }
  });

  test('a failed job of the pair is cleared and made again, not answered with its old failure', async () => {
    const { queue, jobs, added } = standInQueue<EmbedQueueJobData>();
    const { requester } = requesterOn(queue);
    await requester.request(pair());
    const id = added[0]!.jobId!;
    jobs.get(id)!.failed = true;
    await requester.request(pair());
    assert.deepEqual(added.at(-1), { name: 'heatmap', jobId: id, created: true });
  });

  test('a job under the id that is not this pair (a digest collision) is not joined', async () => {
    const { queue, jobs, added } = standInQueue<EmbedQueueJobData>();
    const { requester } = requesterOn(queue);
    await requester.request(pair());
    const id = added[0]!.jobId!;
    jobs.set(id, { data: pair({ result: { ...r, sopInstanceUid: '1.5.6.9' } }), failed: false });
    await requester.request(pair());
    assert.deepEqual(added.at(-1), { name: 'heatmap', jobId: undefined, created: true });
  });

  test('a heatmap of an uploaded query is anonymous and removed once answered', async () => {
    const { queue, added } = standInQueue<EmbedQueueJobData>();
    const { requester, asked } = requesterOn(queue);
    await requester.request(pair({ query: { dicomBase64: 'AAAA' } }));
    assert.deepEqual(added, [{ name: 'heatmap', jobId: undefined, created: true }]);
    assert.equal(asked[0]!.removeAfter, true);
  });
});
