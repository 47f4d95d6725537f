/**
 * /similar end to end on the real stack: the figshare sample (36 real MR slices,
 * 9 patients, one study each) is STOWed through a gateway with the indexing hook,
 * in-process workers embed it with the shipped model into a fresh Elasticsearch
 * index, and /similar is asked about it by UIDs, by upload, on demand, with groups,
 * filters, DICOM JSON, bad input, timeouts and access control.
 *
 * The shipped model may be untrained, so nothing here asserts retrieval accuracy:
 * structure, exclusions, determinism, and that distances are the real distances of
 * the stored vectors. One thing holds for any model: the same pixels embed to the
 * same vector, so a re-wrapped copy of an archived slice finds that slice at d ≈ 0.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Queue } from 'bullmq';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { queueName } from '../../core/jobs.js';
import { readDataset, type PlannedInstance } from '../../workers/load/dataset.js';
import { runLoad } from '../../workers/load.js';
import { EmbeddingPipeline } from '../../workers/embedding-pipeline.js';
import { dicomFixturesDir, figshareSampleDir } from '../helpers/fixtures.js';
import { orthancAuthHeader, testStack } from '../helpers/stack.js';
import { deleteStudies, json, raw, stowBody, storeDirect, uploadChunkedThenRead, uploadThenRead } from './gateway-fixture.js';
import {
  freshInstance,
  startSimilarGateway,
  startTestWorkers,
  dropQueues,
  redisConnection,
  uniqueName,
  waitFor,
  type SimilarGateway,
  type WorkerSet,
} from './similar-fixture.js';

interface Hit {
  rank: number;
  distance: number;
  score: number;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  sopInstanceUid: string;
  modality?: string;
  bodyPartExamined?: string;
  label?: string;
  urls: {
    study: string;
    series: string;
    instance: string;
    thumbnail: string;
    similar: string;
  };
  matchedInstances?: number;
  matches?: Omit<Hit, 'rank' | 'matches' | 'matchedInstances'>[];
}
interface Answer {
  query: {
    studyInstanceUid?: string;
    sopInstanceUid?: string;
    source: string;
    modelVersion: string;
  };
  groupBy: string;
  limit: number;
  results: Hit[];
}
type Problem = { status: number; code: string; detail?: string };

function l2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return Math.sqrt(s);
}

describe('/similar on the real stack', () => {
  const stack = testStack();
  const ns = uniqueName('sim');
  const esBase = uniqueName('cbmir-test-similar');
  let pipeline: EmbeddingPipeline;
  let workers: WorkerSet;
  let sys: SimilarGateway;
  let plan: PlannedInstance[];
  const bySop = new Map<string, PlannedInstance>();
  const freshStudies: string[] = [];
  const authFresh: string[] = [];
  let q: PlannedInstance;
  const uidQuery = (i: PlannedInstance, extra = '') =>
    `/similar?StudyInstanceUID=${i.studyInstanceUid}&SeriesInstanceUID=${i.seriesInstanceUid}&SOPInstanceUID=${i.sopInstanceUid}${extra}`;
  const get = (p: string, headers: Record<string, string> = {}) => raw(`${sys.base}${p}`, { headers });

  before(async () => {
    pipeline = await EmbeddingPipeline.create({
      batchSize: 8,
      batchWaitMs: 10,
    });
    workers = await startTestWorkers({ ns, esBase, pipeline });
    sys = await startSimilarGateway({ ns, esBase });
    plan = (await readDataset(figshareSampleDir)).instances;
    for (const i of plan) bySop.set(i.sopInstanceUid, i);
    q = plan.find((i) => i.file === 'images/1310.jpg')!;
    const s = await runLoad({
      dir: figshareSampleDir,
      mode: 'send',
      url: `${sys.base}/dicom-web`,
      studyDate: '20250101',
      batchSize: 12,
      concurrency: 2,
    });
    assert.equal(s.stored, 36, JSON.stringify(s.failures));
    await waitFor('36 instances indexed', async () => (await workers.index.count()) === 36, 180_000, 500);
  });

  after(async () => {
    await sys?.close();
    await workers?.close();
    await pipeline?.close();
    await deleteStudies(stack.orthancUrl, freshStudies);
    await deleteStudies(stack.orthancAuthUrl, authFresh, orthancAuthHeader());
    const idx = workers?.index;
    if (idx) for (const v of await idx.versions().catch(() => [] as string[])) await idx.dropVersion(v).catch(() => undefined);
    const cleanup = new (await import('@elastic/elasticsearch')).Client({
      node: stack.esUrl,
    });
    await cleanup.indices
      .delete({
        index: `${esBase}*`,
        ignore_unavailable: true,
        allow_no_indices: true,
      })
      .catch(() => undefined);
    await cleanup.close();
    await dropQueues(ns);
  });

  test('by UIDs: k results, own study and patient excluded, sorted, scores = 1 − d²/4, distances are the stored vectors’ distances', async () => {
    const r = await get(uidQuery(q, '&limit=10'));
    assert.equal(r.status, 200, r.body.toString());
    assert.match(r.headers['content-type'] ?? '', /^application\/json/);
    const a = json<Answer>(r);
    assert.equal(a.query.source, 'index');
    assert.equal(a.query.sopInstanceUid, q.sopInstanceUid);
    assert.equal(a.results.length, 10);
    // Only the query vector's source and time: kNN and access times summed over the rounds would tell the rounds.
    assert.match(String(r.headers['server-timing']), /^query;desc="index";dur=[0-9.]+$/);
    const qv = (await sys.index.get(q.sopInstanceUid))!.vector;
    let prev = -1;
    for (const [i, h] of a.results.entries()) {
      assert.equal(h.rank, i + 1);
      assert.ok(h.distance >= prev, 'ascending distance');
      prev = h.distance;
      assert.notEqual(h.sopInstanceUid, q.sopInstanceUid);
      assert.notEqual(h.studyInstanceUid, q.studyInstanceUid);
      assert.notEqual(bySop.get(h.sopInstanceUid)?.patientId, q.patientId);
      assert.ok(h.score >= 0 && h.score <= 1);
      assert.ok(Math.abs(h.score - (1 - (h.distance * h.distance) / 4)) < 1e-5);
      const stored = (await sys.index.get(h.sopInstanceUid))!.vector;
      assert.ok(Math.abs(l2(qv, stored) - h.distance) < 1e-3, `distance of ${h.sopInstanceUid}`);
      assert.equal(h.label, bySop.get(h.sopInstanceUid)?.className);
      assert.equal(h.modality, 'MR');
      assert.equal(
        h.urls.instance,
        `${sys.base}/dicom-web/studies/${h.studyInstanceUid}/series/${h.seriesInstanceUid}/instances/${h.sopInstanceUid}`,
      );
      assert.equal(h.urls.thumbnail, `${h.urls.instance}/thumbnail`);
    }
    // No patient names or IDs anywhere in the answer.
    const body = r.body.toString();
    for (const i of plan) assert.ok(!body.includes(`figshare-cheng^${i.patientId}`) && !body.includes(`"${i.patientId}"`));
    // The URLs work through the gateway: the thumbnail of the first hit renders.
    const thumb = await raw(a.results[0]!.urls.thumbnail);
    assert.equal(thumb.status, 200);
    assert.match(thumb.headers['content-type'] ?? '', /^image\//);
  });

  test('deterministic: path form and query form agree, and a repeat gives the same answer', async () => {
    const a = json<Answer>(await get(uidQuery(q)));
    const b = json<Answer>(await get(`/studies/${q.studyInstanceUid}/series/${q.seriesInstanceUid}/instances/${q.sopInstanceUid}/similar`));
    const c = json<Answer>(await get(uidQuery(q)));
    const ids = (x: Answer) => x.results.map((h) => [h.sopInstanceUid, h.distance]);
    assert.equal(a.results.length, 10);
    assert.deepEqual(ids(b), ids(a));
    assert.deepEqual(ids(c), ids(a));
  });

  test('exclusions off: the own study’s other slices may come back, never the query instance itself', async () => {
    const a = json<Answer>(await get(uidQuery(q, '&limit=100&excludeSameStudy=false&excludeSamePatient=false')));
    assert.equal(a.results.length, 35);
    assert.ok(!a.results.some((h) => h.sopInstanceUid === q.sopInstanceUid));
    assert.equal(a.results.filter((h) => h.studyInstanceUid === q.studyInstanceUid).length, 3);
    const on = json<Answer>(await get(uidQuery(q, '&limit=100')));
    assert.equal(on.results.length, 32);
  });

  test('groupBy=study and groupBy=series rank groups by their best instance and list the matches', async () => {
    const st = json<Answer>(await get(uidQuery(q, '&limit=100&groupBy=study')));
    assert.equal(st.groupBy, 'study');
    assert.equal(st.results.length, 8, 'every other patient’s study, once');
    assert.equal(new Set(st.results.map((h) => h.studyInstanceUid)).size, 8);
    let prev = -1;
    let matched = 0;
    for (const g of st.results) {
      assert.ok(g.distance >= prev);
      prev = g.distance;
      assert.ok(g.matches && g.matches.length >= 1);
      assert.equal(g.matches[0]!.sopInstanceUid, g.sopInstanceUid);
      assert.equal(g.distance, Math.min(...g.matches.map((m) => m.distance)));
      assert.ok(g.matches.every((m) => m.studyInstanceUid === g.studyInstanceUid));
      matched += g.matchedInstances!;
    }
    assert.equal(matched, 32);
    const se = json<Answer>(await get(uidQuery(q, '&limit=3&groupBy=series')));
    assert.equal(se.results.length, 3);
    assert.equal(new Set(se.results.map((h) => h.seriesInstanceUid)).size, 3);
    // The best instance of the first series is the best instance overall.
    const inst = json<Answer>(await get(uidQuery(q, '&limit=1')));
    assert.equal(se.results[0]!.sopInstanceUid, inst.results[0]!.sopInstanceUid);
  });

  test('filters: Modality and BodyPartExamined are applied inside the search', async () => {
    const all = json<Answer>(await get(uidQuery(q, '&limit=5')));
    const mr = json<Answer>(await get(uidQuery(q, '&limit=5&Modality=MR&BodyPartExamined=BRAIN')));
    assert.equal(all.results.length, 5);
    assert.deepEqual(
      mr.results.map((h) => h.sopInstanceUid),
      all.results.map((h) => h.sopInstanceUid),
    );
    const ct = await get(uidQuery(q, '&Modality=CT,CR'));
    assert.equal(ct.status, 200);
    assert.deepEqual(json<Answer>(ct).results, []);
    assert.deepEqual(json<Answer>(await get(uidQuery(q, '&BodyPartExamined=CHEST'))).results, []);
    // A CT CHEST document with q's own vector, in another patient's (readable) study: the nearest
    // of all. Filtered inside the search, MR/BRAIN still fills the page with the same five; a
    // filter applied after the k nearest were taken would give four.
    const other = plan.find((i) => i.patientId !== q.patientId && i.studyInstanceUid !== all.results[0]!.studyInstanceUid)!;
    const [qDoc, otherDoc] = [await sys.index.get(q.sopInstanceUid), await sys.index.get(other.sopInstanceUid)];
    assert.ok(qDoc && otherDoc);
    const chestSop = `${other.sopInstanceUid}.9`;
    await sys.index.ensure(qDoc.vector.length, qDoc.modelVersion);
    await sys.index.upsert([{ ...otherDoc, sopInstanceUid: chestSop, modality: 'CT', bodyPartExamined: 'CHEST', vector: qDoc.vector }], {
      refresh: 'wait_for',
    });
    try {
      const withChest = json<Answer>(await get(uidQuery(q, '&limit=5')));
      assert.equal(withChest.results[0]?.sopInstanceUid, chestSop, 'the CT CHEST document is the nearest');
      const brain = json<Answer>(await get(uidQuery(q, '&limit=5&Modality=MR&BodyPartExamined=BRAIN')));
      assert.deepEqual(
        brain.results.map((h) => h.sopInstanceUid),
        all.results.map((h) => h.sopInstanceUid),
      );
      for (const filter of ['&Modality=CT', '&BodyPartExamined=CHEST', '&Modality=CT,CR&BodyPartExamined=CHEST']) {
        const only = json<Answer>(await get(uidQuery(q, `&limit=5${filter}`)));
        assert.deepEqual(
          only.results.map((h) => [h.sopInstanceUid, h.modality, h.bodyPartExamined]),
          [[chestSop, 'CT', 'CHEST']],
          filter,
        );
      }
    } finally {
      await sys.index.delete(chestSop, { refresh: 'wait_for' });
    }
  });

  test('Accept: application/dicom+json → QIDO-shaped datasets with rank/score/distance in the CBMIR private block', async () => {
    const plain = json<Answer>(await get(uidQuery(q, '&limit=4')));
    const r = await get(uidQuery(q, '&limit=4'), {
      accept: 'application/dicom+json',
    });
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'] ?? '', /^application\/dicom\+json/);
    const ds = json<Record<string, { vr: string; Value?: unknown[] }>[]>(r);
    assert.equal(ds.length, 4);
    for (const [i, d] of ds.entries()) {
      const h = plain.results[i]!;
      assert.deepEqual(d['0020000D'], {
        vr: 'UI',
        Value: [h.studyInstanceUid],
      });
      assert.deepEqual(d['0020000E'], {
        vr: 'UI',
        Value: [h.seriesInstanceUid],
      });
      assert.deepEqual(d['00080018'], { vr: 'UI', Value: [h.sopInstanceUid] });
      assert.deepEqual(d['00081190'], { vr: 'UR', Value: [h.urls.instance] });
      assert.deepEqual(d['00090010'], { vr: 'LO', Value: ['CBMIR'] });
      assert.deepEqual(d['00091010'], { vr: 'IS', Value: [i + 1] });
      assert.deepEqual(d['00091011'], { vr: 'DS', Value: [h.score] });
      assert.deepEqual(d['00091012'], { vr: 'DS', Value: [h.distance] });
      assert.deepEqual(d['00091001'], { vr: 'LO', Value: [h.label] });
      assert.equal(d['00100010'], undefined);
      assert.equal(d['00100020'], undefined);
    }
    const studies = json<Record<string, { Value?: unknown[] }>[]>(
      await get(uidQuery(q, '&limit=2&groupBy=study'), {
        accept: 'application/dicom+json',
      }),
    );
    assert.equal(studies.length, 2);
    assert.equal(studies[0]!['00080018'], undefined, 'study level: no SOP Instance UID attribute');
    assert.match(String(studies[0]!['00081190']?.Value?.[0]), /\/dicom-web\/studies\/[0-9.]+$/);
  });

  test('validation: malformed UIDs, absurd limits, unknown or repeated parameters → 400 problems; unknown instance → 404', async () => {
    const cases: [string, number, string][] = [
      [`/similar?StudyInstanceUID=1.2.x&SeriesInstanceUID=1.2&SOPInstanceUID=1.3`, 400, 'BAD_UID'],
      [`/similar?StudyInstanceUID=1.2&SeriesInstanceUID=1.2`, 400, 'BAD_PARAM'],
      [`/similar?StudyInstanceUID=${'1'.repeat(65)}&SeriesInstanceUID=1.2&SOPInstanceUID=1.3`, 400, 'BAD_UID'],
      [uidQuery(q, '&limit=0'), 400, 'BAD_PARAM'],
      [uidQuery(q, '&limit=101'), 400, 'BAD_PARAM'],
      [uidQuery(q, '&limit=1e3'), 400, 'BAD_PARAM'],
      [uidQuery(q, '&limit=5&limit=6'), 400, 'BAD_PARAM'],
      [uidQuery(q, '&groupBy=patient'), 400, 'BAD_PARAM'],
      [uidQuery(q, '&excludeSamePatients=false'), 400, 'BAD_PARAM'],
      [uidQuery(q, '&excludeSameStudy=maybe'), 400, 'BAD_PARAM'],
      [uidQuery(q, '&Modality=m%3Cr'), 400, 'BAD_PARAM'],
      [`/studies/1..2/series/1.2/instances/1.3/similar`, 400, 'BAD_UID'],
      [`/studies/%ZZ/series/1.2/instances/1.3/similar`, 400, 'BAD_PATH'],
      [`/studies/1.2/series/1.2/instances/1.3/similar?StudyInstanceUID=1.2`, 400, 'BAD_PARAM'],
      [`/similar?StudyInstanceUID=1.2.3&SeriesInstanceUID=1.2.3.4&SOPInstanceUID=1.2.3.4.5`, 404, 'NOT_FOUND'],
      // Indexed SOP Instance UID under another study: the path must agree with the index.
      [`/similar?StudyInstanceUID=1.2.3&SeriesInstanceUID=${q.seriesInstanceUid}&SOPInstanceUID=${q.sopInstanceUid}`, 404, 'NOT_FOUND'],
    ];
    for (const [p, status, code] of cases) {
      const r = await get(p);
      assert.equal(r.status, status, `${p}: ${r.body.toString()}`);
      assert.match(r.headers['content-type'] ?? '', /^application\/problem\+json/);
      const body = json<Problem>(r);
      assert.equal(body.code, code, p);
      assert.ok(body.detail && body.detail.length > 5, `${p} has a reason`);
    }
    // …and with the very answer of an instance that is nowhere: the index's contents do not leak.
    const absent = json<Problem>(await get(cases.at(-2)![0]));
    const elsewhere = json<Problem>(await get(cases.at(-1)![0]));
    assert.deepEqual(elsewhere, absent);
    const put = await raw(`${sys.base}/similar`, { method: 'PUT' });
    assert.equal(put.status, 405);
  });

  test('POST an image that is not in the archive: results, the archived copy of its pixels first at d ≈ 0, nothing stored', async () => {
    const fresh = await freshInstance(q.file);
    const countBefore = await sys.index.count();
    const r = await raw(`${sys.base}/similar?limit=5`, {
      method: 'POST',
      headers: { 'content-type': 'application/dicom' },
      body: Buffer.from(fresh.bytes),
    });
    assert.equal(r.status, 200, r.body.toString());
    const a = json<Answer>(r);
    assert.equal(a.query.source, 'upload');
    assert.equal(a.query.sopInstanceUid, fresh.sop);
    assert.equal(a.results.length, 5);
    assert.equal(a.results[0]!.sopInstanceUid, q.sopInstanceUid, 'same pixels → the archived slice');
    assert.ok(a.results[0]!.distance < 1e-3, `d = ${a.results[0]!.distance}`);
    // STOW-style multipart gives the same answer.
    const mp = stowBody([Buffer.from(fresh.bytes)]);
    const r2 = await raw(`${sys.base}/similar?limit=5`, {
      method: 'POST',
      headers: { 'content-type': mp.contentType },
      body: mp.body,
    });
    assert.equal(r2.status, 200, r2.body.toString());
    assert.deepEqual(
      json<Answer>(r2).results.map((h) => h.sopInstanceUid),
      a.results.map((h) => h.sopInstanceUid),
    );
    // Nothing stored: not in the index, not in the PACS, no job left in Redis.
    assert.equal(await sys.index.count(), countBefore);
    assert.equal(await sys.index.get(fresh.sop), undefined);
    const inPacs = await raw(`${stack.orthancDicomWebUrl}/instances?SOPInstanceUID=${fresh.sop}`);
    assert.ok(inPacs.status === 204 || json<unknown[]>(inPacs).length === 0);
    const embedQ = new Queue(queueName('embed', ns), {
      connection: redisConnection(),
    });
    try {
      const counts = await embedQ.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed');
      assert.deepEqual(counts, {
        waiting: 0,
        active: 0,
        completed: 0,
        failed: 0,
        delayed: 0,
      });
    } finally {
      await embedQ.close();
    }
  });

  test('POST: wrong media type 415, not DICOM 422, a non-image object 422 with the worker’s reason, oversized 413', async () => {
    const t = await raw(`${sys.base}/similar`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: Buffer.from('hello'),
    });
    assert.equal(t.status, 415);
    const nd = await raw(`${sys.base}/similar`, {
      method: 'POST',
      headers: { 'content-type': 'application/dicom' },
      body: Buffer.alloc(300, 7),
    });
    assert.equal(nd.status, 422);
    assert.equal(json<Problem>(nd).code, 'NOT_EMBEDDABLE');
    const sr = await readFile(path.join(dicomFixturesDir, 'non-image', 'comprehensive_sr_test-SR.dcm'));
    const r = await raw(`${sys.base}/similar`, {
      method: 'POST',
      headers: { 'content-type': 'application/dicom' },
      body: sr,
    });
    assert.equal(r.status, 422, r.body.toString());
    assert.equal(json<Problem>(r).code, 'NOT_EMBEDDABLE');
    assert.ok((json<Problem>(r).detail ?? '').length > 10);
    const big = await raw(`${sys.base}/similar`, {
      method: 'POST',
      headers: {
        'content-type': 'application/dicom',
        'content-length': String(64 * 1024 * 1024 + 1),
      },
      body: Buffer.alloc(16),
    }).catch((err: Error) => ({ status: -1, err }));
    assert.equal((big as { status: number }).status, 413);
    // …and an uploader that sends the whole oversized body before reading still reads the 413.
    const whole = await uploadThenRead(sys.base, '/similar', 64 * 1024 * 1024 + 1);
    assert.match(whole, /^HTTP\/1\.1 413 /, whole.slice(0, 80));
  });

  test('POST: a chunked upload over the limit gets its 413, and the gateway goes on serving', async () => {
    // No Content-Length: the limit is found mid-stream. Reading it with `for await` destroyed the
    // request, and dropping the rest of the upload then threw from a timer one second later,
    // which ended the gateway process (reproduced).
    const answer = await uploadChunkedThenRead(sys.base, '/similar', 64 * 1024 * 1024 + 1);
    assert.match(answer, /^HTTP\/1\.1 413 /, answer.slice(0, 80));
    await new Promise((r) => setTimeout(r, 1500)); // past discardUpload's grace period
    const after = await raw(`${sys.base}/healthz`, { method: 'GET' });
    assert.equal(after.status, 200);
  });

  test('in the PACS but not indexed (stored straight into Orthanc): embedded on demand, then indexed and answered from the index', async () => {
    const fresh = await freshInstance(q.file);
    const stored = await storeDirect(stack.orthancUrl, Buffer.from(fresh.bytes));
    freshStudies.push(stored.study);
    assert.equal(await sys.index.get(fresh.sop), undefined);
    const first = await get(`/studies/${fresh.study}/series/${fresh.series}/instances/${fresh.sop}/similar?limit=3`);
    assert.equal(first.status, 200, first.body.toString());
    const a = json<Answer>(first);
    assert.equal(a.query.source, 'on-demand');
    assert.equal(a.results[0]!.sopInstanceUid, q.sopInstanceUid);
    assert.ok(a.results[0]!.distance < 1e-3);
    const doc = await sys.index.get(fresh.sop);
    assert.ok(doc, 'indexed by the on-demand job');
    assert.equal(doc.studyInstanceUid, fresh.study);
    const second = json<Answer>(await get(`/studies/${fresh.study}/series/${fresh.series}/instances/${fresh.sop}/similar?limit=3`));
    assert.equal(second.query.source, 'index');
    assert.deepEqual(
      second.results.map((h) => h.sopInstanceUid),
      a.results.map((h) => h.sopInstanceUid),
    );
  });

  test('access checks: one QIDO for all result studies of a round, then cached per credential', async () => {
    const who = { authorization: `Basic ${Buffer.from('cache-test:x').toString('base64')}` };
    const acc = sys.similar.access;
    const before = acc.qidoCount;
    const a = json<Answer>(await get(uidQuery(q, '&limit=100&groupBy=study'), who));
    assert.ok(a.results.length >= 8, 'the 8 other figshare studies, and fresh copies stored by earlier tests');
    assert.equal(acc.qidoCount - before, 1, 'the query study and every result study in one QIDO');
    await get(uidQuery(q, '&limit=100&groupBy=study'), who);
    await get(uidQuery(plan[0]!, '&limit=100'), who);
    assert.equal(acc.qidoCount - before, 1, 'answered from the cache');
    await get(uidQuery(q, '&limit=5'), { authorization: `Basic ${Buffer.from('someone-else:x').toString('base64')}` });
    assert.equal(acc.qidoCount - before, 2, 'another credential is asked afresh');
    // Single flight: 20 concurrent queries from a new credential make one QIDO.
    const third = { authorization: `Basic ${Buffer.from('burst:x').toString('base64')}` };
    const burst = await Promise.all(Array.from({ length: 20 }, () => get(uidQuery(q, '&limit=10'), third)));
    assert.ok(burst.every((r) => r.status === 200));
    assert.equal(acc.qidoCount - before, 3, 'one QIDO for the whole burst');
  });

  test('access: a study gone from the PACS (still in the index) is never named, and the page is filled from farther candidates', async () => {
    const fresh = await freshInstance('images/1323.jpg');
    const stored = await storeDirect(stack.orthancUrl, Buffer.from(fresh.bytes));
    freshStudies.push(stored.study);
    assert.equal((await get(`/studies/${fresh.study}/series/${fresh.series}/instances/${fresh.sop}/similar?limit=1`)).status, 200);
    assert.ok(await sys.index.get(fresh.sop));
    const archived = plan.find((i) => i.file === 'images/1323.jpg')!;
    // Credentials the open Orthanc ignores, so verdicts cached for other callers do not apply.
    const caller = (n: number) => ({
      authorization: `Basic ${Buffer.from(`caller${n}:x`).toString('base64')}`,
    });
    const seen = json<Answer>(await get(uidQuery(archived, '&limit=100&groupBy=study'), caller(1)));
    assert.ok(
      seen.results.some((h) => h.studyInstanceUid === fresh.study),
      'the fresh study is a result while it is in the PACS',
    );
    const n = seen.results.length;
    await deleteStudies(stack.orthancUrl, [fresh.study]);
    const after = json<Answer>(await get(uidQuery(archived, '&limit=100&groupBy=study'), caller(2)));
    assert.ok(!after.results.some((h) => h.studyInstanceUid === fresh.study));
    assert.equal(after.results.length, n - 1);
    // limit=1: the nearest (same pixels, now unreadable) is dropped and the next one fills the page.
    const one = json<Answer>(await get(uidQuery(archived, '&limit=1'), caller(3)));
    assert.equal(one.results.length, 1);
    assert.notEqual(one.results[0]!.studyInstanceUid, fresh.study);
    // The query study itself must be readable: the deleted instance's own /similar is 404 now.
    const gone = await get(`/studies/${fresh.study}/series/${fresh.series}/instances/${fresh.sop}/similar`, caller(4));
    assert.equal(gone.status, 404);
  });

  test('access against an Orthanc that requires credentials: none or wrong → 401 and nothing else; right ones see only readable studies', async () => {
    const ns2 = uniqueName('sim-auth');
    const good = orthancAuthHeader();
    const { user, password } = stack.orthancAuth;
    const w2 = await startTestWorkers({
      ns: ns2,
      esBase,
      pipeline,
      pacsUrl: stack.orthancAuthDicomWebUrl,
      pacsUser: user,
      pacsPassword: password,
    });
    const g2 = await startSimilarGateway({
      ns: ns2,
      esBase,
      env: { CBMIR_PACS_URL: stack.orthancAuthDicomWebUrl },
    });
    try {
      const a1 = await freshInstance('images/1.jpg');
      const a2 = await freshInstance('images/20.jpg');
      for (const f of [a1, a2]) authFresh.push((await storeDirect(stack.orthancAuthUrl, Buffer.from(f.bytes), good)).study);
      const path1 = `/studies/${a1.study}/series/${a1.series}/instances/${a1.sop}/similar?limit=100`;
      const path2 = `/studies/${a2.study}/series/${a2.series}/instances/${a2.sop}/similar?limit=100`;
      // No credentials: 401 with a challenge, and the body names no study.
      for (const headers of [
        {} as Record<string, string>,
        {
          authorization: `Basic ${Buffer.from(`${user}:wrong`).toString('base64')}`,
        },
      ]) {
        const r = await raw(`${g2.base}${path1}`, { headers });
        assert.equal(r.status, 401, r.body.toString());
        assert.equal(json<Problem>(r).code, 'UNAUTHORIZED');
        assert.ok(r.headers['www-authenticate']);
        assert.ok(!/\d+\.\d+\.\d+/.test(r.body.toString()), 'no UIDs in the refusal');
      }
      // An archived figshare instance (indexed, but not in this PACS) is not found for anyone here.
      const figshare = await raw(`${g2.base}${uidQuery(q)}`, {
        headers: { authorization: good },
      });
      assert.equal(figshare.status, 404);
      // …with the very answer of an instance that exists nowhere: an indexed study the caller
      // cannot read is not told apart from a missing one, by status or by wording.
      const nowhere = `/similar?StudyInstanceUID=1.2.3&SeriesInstanceUID=1.2.3.4&SOPInstanceUID=1.2.3.4.5`;
      const absent = await raw(`${g2.base}${nowhere}`, { headers: { authorization: good } });
      assert.equal(absent.status, 404);
      assert.deepEqual(json<Problem>(figshare), json<Problem>(absent));
      // Without credentials the same: an indexed SOP Instance UID named under another study gets
      // the 401 any unindexed one gets (the caller's own QIDO), not a 404 that the index alone decided.
      const misplaced = await raw(
        `${g2.base}/similar?StudyInstanceUID=1.2.3&SeriesInstanceUID=${q.seriesInstanceUid}&SOPInstanceUID=${q.sopInstanceUid}`,
      );
      const unknown = await raw(`${g2.base}${nowhere}`);
      assert.equal(unknown.status, 401);
      assert.equal(misplaced.status, unknown.status, misplaced.body.toString());
      // Right credentials: embedded on demand via the worker's own credentials, then ranked;
      // the 36+ indexed figshare slices are invisible here, a2 (indexed next) is visible to a1's query.
      const r1 = await raw(`${g2.base}${path1}`, {
        headers: { authorization: good },
      });
      assert.equal(r1.status, 200, r1.body.toString());
      assert.deepEqual(json<Answer>(r1).results, []);
      const r2 = await raw(`${g2.base}${path2}`, {
        headers: { authorization: good },
      });
      assert.equal(r2.status, 200, r2.body.toString());
      assert.deepEqual(
        json<Answer>(r2).results.map((h) => h.sopInstanceUid),
        [a1.sop],
      );
      // An upload has no query study to be refused on: wrong credentials are still a 401, not
      // "nothing similar" after every round of widening the search.
      const upload = (authorization: string) =>
        raw(`${g2.base}/similar?limit=100`, {
          method: 'POST',
          headers: { authorization, 'content-type': 'application/dicom' },
          body: Buffer.from(a2.bytes),
          timeoutMs: 60_000,
        });
      const refused = await upload(`Basic ${Buffer.from(`${user}:wrong`).toString('base64')}`);
      assert.equal(refused.status, 401, refused.body.toString());
      assert.equal(json<Problem>(refused).code, 'UNAUTHORIZED');
      const allowed = await upload(good);
      assert.equal(allowed.status, 200, allowed.body.toString());
      // The open gateway shares the index: there the auth-PACS studies are invisible, the figshare ones visible.
      const open = json<Answer>(await get(uidQuery(q, '&limit=100&excludeSamePatient=false&excludeSameStudy=false')));
      assert.ok(open.results.length >= 32, `the open gateway answers (${open.results.length} results)`);
      assert.ok(!open.results.some((h) => h.sopInstanceUid === a1.sop || h.sopInstanceUid === a2.sop));
    } finally {
      await g2.close();
      await w2.close();
      await dropQueues(ns2);
    }
  });

  test('no worker: 503 + Retry-After within the configured timeout; Redis down: 503 at once', async () => {
    const idleNs = uniqueName('sim-idle');
    const idle = await startSimilarGateway({
      ns: idleNs,
      esBase,
      env: { CBMIR_EMBED_TIMEOUT_MS: '400' },
    });
    try {
      const fresh = await freshInstance(q.file);
      const t0 = performance.now();
      const r = await raw(`${idle.base}/similar`, {
        method: 'POST',
        headers: { 'content-type': 'application/dicom' },
        body: Buffer.from(fresh.bytes),
      });
      const ms = performance.now() - t0;
      assert.equal(r.status, 503, r.body.toString());
      assert.equal(json<Problem>(r).code, 'EMBED_TIMEOUT');
      assert.equal(r.headers['retry-after'], '1');
      assert.ok(ms < 3_000, `answered in ${ms} ms`);
      // Indexed instances need no worker.
      assert.equal((await raw(`${idle.base}${uidQuery(q)}`)).status, 200);
    } finally {
      await idle.close();
      await dropQueues(idleNs);
    }
    const down = await startSimilarGateway({
      ns: uniqueName('sim-down'),
      esBase,
      env: { CBMIR_REDIS_URL: 'redis://127.0.0.1:1' },
      indexing: false,
    });
    try {
      const fresh = await freshInstance(q.file);
      const t0 = performance.now();
      const r = await raw(`${down.base}/similar`, {
        method: 'POST',
        headers: { 'content-type': 'application/dicom' },
        body: Buffer.from(fresh.bytes),
      });
      assert.equal(r.status, 503, r.body.toString());
      assert.equal(json<Problem>(r).code, 'EMBED_UNAVAILABLE');
      assert.ok(r.headers['retry-after']);
      assert.ok(performance.now() - t0 < 3_000);
    } finally {
      await down.close();
    }
  });

  test('uploads searched at once are bounded (CBMIR_SIMILAR_MAX_UPLOADS): one more gets 503 at once, and the slot comes back', async () => {
    const busyNs = uniqueName('sim-busy');
    const busy = await startSimilarGateway({
      ns: busyNs,
      esBase,
      env: { CBMIR_EMBED_TIMEOUT_MS: '3000', CBMIR_SIMILAR_MAX_UPLOADS: '1' },
    });
    const post = async () =>
      raw(`${busy.base}/similar`, {
        method: 'POST',
        headers: { 'content-type': 'application/dicom' },
        body: Buffer.from((await freshInstance(q.file)).bytes),
      });
    try {
      // No worker on this namespace: the first upload holds its slot until the embed timeout.
      const first = post();
      await new Promise((r) => setTimeout(r, 500));
      const t0 = performance.now();
      const second = await post();
      assert.equal(second.status, 503, second.body.toString());
      assert.equal(json<Problem>(second).code, 'EMBED_UNAVAILABLE');
      assert.ok(second.headers['retry-after']);
      assert.ok(performance.now() - t0 < 2_000, 'refused at once, not after waiting for a worker');
      assert.equal(json<Problem>(await first).code, 'EMBED_TIMEOUT');
      // Released: the next upload is taken (and times out in its turn, for want of a worker).
      assert.equal(json<Problem>(await post()).code, 'EMBED_TIMEOUT');
    } finally {
      await busy.close();
      await dropQueues(busyNs);
    }
  });

  test('POST with a Content-Type it cannot take is refused before the body is sent', async () => {
    // Headers only, a 50 MiB body announced and never sent: the answer must not wait for it.
    for (const [ct, status] of [
      ['multipart/related; type="application/json"; boundary=b', 415],
      ['multipart/related; type="application/dicom"', 400],
      ['image/png', 415],
    ] as const) {
      const { port } = new URL(sys.base);
      const answer = await new Promise<string>((resolve) => {
        const sock = net.connect(Number(port), '127.0.0.1');
        let got = '';
        const timer = setTimeout(() => sock.destroy(), 3_000);
        sock.on('data', (d: Buffer) => {
          got += d.toString('latin1');
          if (got.includes('\r\n\r\n')) {
            clearTimeout(timer);
            sock.destroy();
          }
        });
        sock.on('error', () => undefined);
        sock.on('close', () => resolve(got));
        sock.write(`POST /similar HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${ct}\r\nContent-Length: ${50 * 1024 * 1024}\r\n\r\n`);
      });
      assert.match(answer, new RegExp(`^HTTP/1\\.1 ${status} `), `${ct}: ${answer.slice(0, 80) || 'no answer in 3 s'}`);
    }
  });

  test('index unreachable: 503 INDEX_UNAVAILABLE with Retry-After, quickly', async () => {
    const noEs = await startSimilarGateway({ ns, esBase, esUrl: 'http://127.0.0.1:1', indexing: false });
    try {
      const t0 = performance.now();
      const r = await raw(`${noEs.base}${uidQuery(q)}`);
      assert.equal(r.status, 503, r.body.toString());
      assert.equal(json<Problem>(r).code, 'INDEX_UNAVAILABLE');
      assert.ok(r.headers['retry-after']);
      assert.ok(performance.now() - t0 < 5_000);
    } finally {
      await noEs.close();
    }
  });

  test('CBMIR_SHOW_PATIENT=true: each result carries PatientName/PatientID as the PACS shows them to the caller', async () => {
    const shown = await startSimilarGateway({ ns, esBase, env: { CBMIR_SHOW_PATIENT: 'true' }, indexing: false });
    try {
      const a = json<{ results: (Hit & { patientName?: string; patientId?: string })[] }>(
        await raw(`${shown.base}${uidQuery(q, '&limit=5')}`),
      );
      assert.equal(a.results.length, 5);
      // Compare with what the PACS itself says about each result's study.
      const truth = async (study: string) => {
        const d = json<Record<string, { Value?: unknown[] }>[]>(
          await raw(`${stack.orthancDicomWebUrl}/studies?StudyInstanceUID=${study}`),
        )[0]!;
        return { id: d['00100020']?.Value?.[0], name: (d['00100010']?.Value?.[0] as { Alphabetic?: string })?.Alphabetic };
      };
      for (const h of a.results) {
        const t = await truth(h.studyInstanceUid);
        assert.equal(h.patientId, t.id);
        assert.equal(h.patientName, t.name);
        const planned = bySop.get(h.sopInstanceUid);
        if (planned) assert.equal(h.patientName, `figshare-cheng^${planned.patientId}`);
      }
      const ds = json<Record<string, { Value?: unknown[] }>[]>(
        await raw(`${shown.base}${uidQuery(q, '&limit=1')}`, { headers: { accept: 'application/dicom+json' } }),
      );
      assert.deepEqual(ds[0]!['00100020']?.Value, [(await truth(a.results[0]!.studyInstanceUid)).id]);
    } finally {
      await shown.close();
    }
  });

  test('/openapi.json documents /similar; /metrics counts /similar by outcome', async () => {
    const r = await get('/openapi.json');
    assert.equal(r.status, 200);
    const doc = json<{ openapi: string; paths: Record<string, unknown> }>(r);
    assert.match(doc.openapi, /^3\.1/);
    assert.ok(doc.paths['/similar'] && doc.paths['/studies/{study}/series/{series}/instances/{sop}/similar']);
    const heatmap = doc.paths['/similar/heatmap'] as Record<string, unknown> | undefined;
    assert.ok(heatmap?.get && heatmap.post, '/similar/heatmap GET and POST');
    // The code-string filters as the server takes them: lower case, repeated.
    const similarGet = (doc.paths['/similar'] as { get: { parameters: Array<{ name: string; explode?: boolean; schema: { type: string; items?: { pattern: string } } }> } }).get;
    const modality = similarGet.parameters.find((x) => x.name === 'Modality')!;
    assert.equal(modality.schema.type, 'array');
    assert.equal(modality.explode, true);
    assert.match('mr', new RegExp(modality.schema.items!.pattern));
    const m = (await get('/metrics')).body.toString();
    assert.match(m, /cbmir_gateway_similar_duration_seconds_count\{mode="uids",source="index",outcome="ok"\} [1-9]/);
    assert.match(m, /cbmir_gateway_similar_duration_seconds_count\{mode="uids",source="none",outcome="bad_uid"\} [1-9]/);
    // The 404 of an indexed instance gone from the PACS (the access test above) counts as 'none':
    // 'index' on a refusal would tell a reader of /metrics which UIDs are indexed.
    assert.match(m, /cbmir_gateway_similar_duration_seconds_count\{mode="uids",source="none",outcome="not_found"\} [1-9]/);
    assert.doesNotMatch(m, /cbmir_gateway_similar_duration_seconds_count\{mode="\w+",source="(index|on-demand|upload)",outcome="(?!ok")/);
    assert.match(m, /cbmir_gateway_similar_rounds_bucket\{le="1"\} [1-9]/, "rounds are a metric, not part of the answer");
  });
});
