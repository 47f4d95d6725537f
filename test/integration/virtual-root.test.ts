/**
 * The virtual DICOMweb root /similar-to/{sop}/dicom-web (gateway/virtual-root.ts) on the
 * real stack: the figshare sample (36 real MR slices, 9 patients, one study each) is
 * loaded through an in-process gateway with the indexing hook, in-process workers embed
 * it into a fresh Elasticsearch index, and the virtual root of one slice is asked what
 * a viewer asks: its study list (rank order = GET /similar?groupBy=study, the PACS's
 * own records, URLs on the virtual root, paging, filters, OHIF's encoded includefield),
 * and series/metadata/frames/thumbnails, which must be what /dicom-web answers.
 *
 *   bash scripts/test.sh test/integration/virtual-root.test.ts
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { DicomJsonDataset } from '../../core/dicom-json.js';
import { attachVirtualRoot } from '../../gateway/virtual-root.js';
import { EmbeddingPipeline } from '../../workers/embedding-pipeline.js';
import { readDataset, type PlannedInstance } from '../../workers/load/dataset.js';
import { runLoad } from '../../workers/load.js';
import { figshareSampleDir } from '../helpers/fixtures.js';
import { orthancAuthHeader, testStack } from '../helpers/stack.js';
import { deleteStudies, json, normalise, raw, storeDirect, stowBody } from './gateway-fixture.js';
import {
  dropQueues,
  freshInstance,
  silent,
  startSimilarGateway,
  startTestWorkers,
  uniqueName,
  waitFor,
  type SimilarGateway,
  type WorkerSet,
} from './similar-fixture.js';

interface Hit {
  rank: number;
  score: number;
  distance: number;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  sopInstanceUid: string;
}
type Problem = { status: number; code: string };

const val = (ds: DicomJsonDataset | undefined, tag: string): unknown => ds?.[tag]?.Value?.[0];

describe('virtual DICOMweb root /similar-to/{sop}/dicom-web on the real stack', { timeout: 10 * 60_000 }, () => {
  const stack = testStack();
  const ns = uniqueName('vroot');
  const esBase = uniqueName('cbmir-test-vroot');
  let pipeline: EmbeddingPipeline;
  let workers: WorkerSet;
  let sys: SimilarGateway;
  let plan: PlannedInstance[];
  let q: PlannedInstance;
  let vroot: string;
  /** GET /similar?…&groupBy=study&limit=100 for q: the ranking the virtual root must list. */
  let ranking: Hit[];
  const authFresh: string[] = [];

  const get = (p: string, headers: Record<string, string> = {}) => raw(`${sys.base}${p}`, { headers });
  const studies = async (query = '', headers: Record<string, string> = {}) => {
    const r = await raw(`${vroot}/studies${query}`, { headers });
    assert.equal(r.status, 200, r.body.toString());
    assert.match(r.headers['content-type'] ?? '', /^application\/dicom\+json/);
    return json<DicomJsonDataset[]>(r);
  };

  before(async () => {
    pipeline = await EmbeddingPipeline.create({ batchSize: 8, batchWaitMs: 10 });
    workers = await startTestWorkers({ ns, esBase, pipeline });
    sys = await startSimilarGateway({ ns, esBase });
    attachVirtualRoot(sys.gw, { config: sys.config, index: sys.index, search: sys.similar.search, logger: silent });
    plan = (await readDataset(figshareSampleDir)).instances;
    q = plan.find((i) => i.file === 'images/1310.jpg')!;
    vroot = `${sys.base}/similar-to/${q.sopInstanceUid}/dicom-web`;
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
    const r = await get(
      `/similar?StudyInstanceUID=${q.studyInstanceUid}&SeriesInstanceUID=${q.seriesInstanceUid}&SOPInstanceUID=${q.sopInstanceUid}&groupBy=study&limit=100`,
    );
    assert.equal(r.status, 200, r.body.toString());
    ranking = json<{ results: Hit[] }>(r).results;
    assert.equal(ranking.length, 8, 'every other patient’s study');
  });

  after(async () => {
    await sys?.close();
    await workers?.close();
    await pipeline?.close();
    await deleteStudies(stack.orthancUrl, new Set(plan?.map((i) => i.studyInstanceUid) ?? []));
    await deleteStudies(stack.orthancAuthUrl, authFresh, orthancAuthHeader());
    const idx = workers?.index;
    if (idx) for (const v of await idx.versions().catch(() => [] as string[])) await idx.dropVersion(v).catch(() => undefined);
    const es = new (await import('@elastic/elasticsearch')).Client({ node: stack.esUrl });
    await es.indices.delete({ index: `${esBase}*`, ignore_unavailable: true, allow_no_indices: true }).catch(() => undefined);
    await es.close();
    await dropQueues(ns);
  });

  test('QIDO /studies lists the similar studies in /similar’s rank order, as the PACS’s own records with virtual-root URLs and the rank block', async () => {
    const list = await studies();
    assert.deepEqual(
      list.map((d) => val(d, '0020000D')),
      ranking.map((h) => h.studyInstanceUid),
    );
    assert.ok(!list.some((d) => val(d, '0020000D') === q.studyInstanceUid), 'the query’s own study is not listed');
    const body = JSON.stringify(list);
    assert.ok(!body.includes(stack.orthancUrl), 'no PACS URL left');
    for (const [i, d] of list.entries()) {
      const uid = String(val(d, '0020000D'));
      assert.equal(val(d, '00081190'), `${vroot}/studies/${uid}`);
      assert.equal(val(d, '00090010'), 'CBMIR');
      assert.equal(val(d, '00091010'), i + 1);
      assert.equal(val(d, '00091011'), ranking[i]!.score);
      assert.equal(val(d, '00091012'), ranking[i]!.distance);
      // Everything else is the PACS's record, unchanged (compare with the pass-through's).
      const own = json<DicomJsonDataset[]>(await get(`/dicom-web/studies?StudyInstanceUID=${uid}`));
      assert.equal(own.length, 1);
      const strip = (x: DicomJsonDataset) =>
        Object.fromEntries(Object.entries(x).filter(([t]) => t !== '00081190' && !t.startsWith('0009')));
      assert.deepEqual(strip(d), strip(own[0]!));
      assert.equal(val(d, '00080061'), 'MR');
      assert.equal(val(d, '00201208'), 4, 'NumberOfStudyRelatedInstances as the PACS counts');
    }
    // Tag order, as DICOM JSON writers keep it.
    const keys = Object.keys(list[0]!);
    assert.deepEqual(keys, [...keys].sort());
  });

  test('OHIF’s query (encoded includefield, fuzzymatching, limit 101): StudyDescription is there — the includefield quirk, under both roots', async () => {
    const ohifQuery = '?limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060';
    const list = await studies(ohifQuery);
    assert.equal(list.length, 8);
    for (const d of list) {
      assert.equal(val(d, '00081030'), 'figshare-cheng', 'StudyDescription');
      assert.equal(val(d, '00080060'), 'MR');
    }
    // Orthanc's plugin alone drops it (why the quirk exists; if this fails, the quirk can go) …
    const direct = json<DicomJsonDataset[]>(
      await raw(`${stack.orthancDicomWebUrl}/studies${ohifQuery}&StudyInstanceUID=${q.studyInstanceUid}`),
    );
    assert.equal(direct.length, 1);
    assert.equal(direct[0]!['00081030'], undefined, 'plugin 1.7 ignores a %2C-separated includefield');
    // … and the pass-through under /dicom-web fixes it too.
    const through = json<DicomJsonDataset[]>(await get(`/dicom-web/studies${ohifQuery}&StudyInstanceUID=${q.studyInstanceUid}`));
    assert.equal(val(through[0], '00081030'), 'figshare-cheng');
    assert.equal(val(through[0], '00080060'), 'MR', 'both fields of the list');
  });

  test('paging: limit/offset over the rank order; ranks stay those of the whole list; bad values 400', async () => {
    const page = await studies('?limit=3&offset=2');
    assert.deepEqual(
      page.map((d) => [val(d, '0020000D'), val(d, '00091010')]),
      ranking.slice(2, 5).map((h, i) => [h.studyInstanceUid, i + 3]),
    );
    assert.deepEqual(await studies('?offset=8'), []);
    assert.equal((await studies('?limit=0')).length, 8, 'limit=0: no limit');
    for (const bad of ['?limit=-1', '?offset=x', '?limit=1e3']) {
      const r = await raw(`${vroot}/studies${bad}`);
      assert.equal(r.status, 400, bad);
      assert.equal(json<Problem>(r).code, 'BAD_PARAM');
    }
    // A filter the PACS itself refuses (the plugin: fuzzymatching is true or false) is the
    // viewer's 400 under both roots, not a 502 "PACS unreachable" under the virtual one.
    assert.equal((await get('/dicom-web/studies?fuzzymatching=yes')).status, 400, 'the PACS refuses it through /dicom-web');
    const refused = await raw(`${vroot}/studies?fuzzymatching=yes`);
    assert.equal(refused.status, 400, refused.body.toString());
    assert.equal(json<Problem>(refused).code, 'BAD_PARAM');
  });

  test('Accept: XML only → 406 problem (PS3.18 §8.3.3); DICOM JSON, JSON or a wildcard → the list', async () => {
    const xml = 'multipart/related; type="application/dicom+xml"';
    for (const [query, headers] of [
      ['', { accept: xml }],
      [`?accept=${encodeURIComponent(xml)}`, {}],
    ] as const) {
      const r = await raw(`${vroot}/studies${query}`, { headers });
      assert.equal(r.status, 406, `${query} ${JSON.stringify(headers)}`);
      assert.match(r.headers['content-type'] ?? '', /^application\/problem\+json/);
    }
    for (const accept of ['application/dicom+json', 'application/json', '*/*'])
      assert.equal((await studies('', { accept })).length, 8, accept);
  });

  test('the viewer’s filters combine with the ranking: StudyInstanceUID (opening a study), PatientName', async () => {
    const third = ranking[2]!;
    const one = await studies(`?StudyInstanceUID=${third.studyInstanceUid}`);
    assert.deepEqual(
      one.map((d) => [val(d, '0020000D'), val(d, '00091010')]),
      [[third.studyInstanceUid, 3]],
    );
    assert.deepEqual(await studies(`?StudyInstanceUID=${q.studyInstanceUid}`), [], 'the query’s own study is not in this root');
    const patient = plan.find((i) => i.studyInstanceUid === ranking[4]!.studyInstanceUid)!.patientId;
    const byName = await studies(`?PatientName=${encodeURIComponent(`*${patient}`)}`);
    assert.deepEqual(
      byName.map((d) => [val(d, '0020000D'), val(d, '00091010')]),
      [[ranking[4]!.studyInstanceUid, 5]],
    );
    const r = await raw(`${vroot}/studies?StudyInstanceUID=1.2.x`);
    assert.equal(r.status, 400);
  });

  test('series, metadata, frames, thumbnails through the virtual root equal /dicom-web’s', async () => {
    const hit = ranking[0]!;
    const st = `studies/${hit.studyInstanceUid}`;
    const se = `${st}/series/${hit.seriesInstanceUid}`;
    const inst = `${se}/instances/${hit.sopInstanceUid}`;
    const roots = [`${sys.base}/dicom-web`, vroot];
    for (const [p, accept] of [
      [`${st}/series`, undefined],
      [`${se}/instances`, undefined],
      [`${st}/metadata`, undefined],
      [`${se}/metadata`, undefined],
      [`${inst}/frames/1`, 'multipart/related; type="application/octet-stream"; transfer-syntax=*'],
      [`${inst}`, undefined],
      [`${inst}/rendered`, 'image/jpeg'],
      [`${inst}/thumbnail`, undefined],
    ] as const) {
      const headers: Record<string, string> = accept ? { accept } : {};
      const a = await raw(`${sys.base}/dicom-web/${p}`, { headers });
      const b = await raw(`${vroot}/${p}`, { headers });
      assert.equal(a.status, 200, `${p}: ${a.body.toString().slice(0, 200)}`);
      assert.deepEqual(normalise(b, roots), normalise(a, roots), p);
      // URLs in JSON answers stay on the root the viewer uses.
      if (p.endsWith('metadata') || p.endsWith('series') || p.endsWith('instances')) {
        const text = b.body.toString();
        assert.ok(text.includes(vroot), `${p} names the virtual root`);
        assert.ok(!text.includes(`${sys.base}/dicom-web`) && !text.includes(stack.orthancUrl), `${p} names no other root`);
      }
    }
  });

  test('bad paths under the prefix: traversal 400, malformed UID 400, unknown instance 404, STOW 405', async () => {
    const sop = q.sopInstanceUid;
    for (const p of [
      `/similar-to/${sop}/dicom-web/../../tools/reset`,
      `/similar-to/${sop}/%2e%2e/dicom-web/studies`,
      `/similar-to/${sop}/dicom-web/studies/%2e%2e%2f%2e%2e/instances`,
      `/similar-to/${sop}/dicom-web/studies/..%2f..%2fpatients`,
      `/similar-to/${sop}//dicom-web/studies`,
      `/similar-to/${sop}/dicom-web/studies\\..\\..`,
      `/similar-to/../dicom-web/studies`,
      `/similar-to/${sop}/dicom-webx/studies`,
      `/similar-to/${sop}/dicom-web/studies/1.2.3;x=1/series`,
      `/similar-tox/${sop}/dicom-web/studies`,
    ]) {
      const r = await raw(sys.base, { path: p });
      assert.equal(r.status, 400, `${p} → ${r.status}`);
    }
    for (const p of [
      '/similar-to/1.2.abc/dicom-web/studies',
      '/similar-to/x/dicom-web/studies',
      `/similar-to/1.${'2'.repeat(70)}/dicom-web/studies`,
    ]) {
      const r = await raw(sys.base, { path: p });
      assert.equal(r.status, 400, p);
      assert.equal(json<Problem>(r).code, 'BAD_UID', p);
    }
    // Beyond the DICOMweb table (Orthanc's /servers, its REST API): 404 as under /dicom-web.
    for (const p of [`/similar-to/${sop}/dicom-web/servers`, `/similar-to/${sop}/tools`, `/similar-to/${sop}`]) {
      const r = await raw(sys.base, { path: p });
      assert.equal(r.status, 404, p);
      assert.match(r.headers['content-type'] ?? '', /^application\/problem\+json/, p);
      assert.equal(json<{ code: string }>(r).code, 'NOT_FOUND', p);
    }
    const unknown = await raw(`${sys.base}/similar-to/1.2.826.0.1.3680043.99999.1/dicom-web/studies`);
    assert.equal(unknown.status, 404, unknown.body.toString());
    assert.match(unknown.headers['content-type'] ?? '', /^application\/problem\+json/);
    assert.equal(json<Problem>(unknown).code, 'NOT_FOUND');
    const stow = stowBody([Buffer.from('not stored')]);
    const post = await raw(`${vroot}/studies`, { method: 'POST', headers: { 'content-type': stow.contentType }, body: stow.body });
    assert.equal(post.status, 405);
  });

  test('as the caller, against a PACS that asks for credentials: none or wrong → 401 naming nothing; right ones list only what that PACS shows', async () => {
    const ns2 = uniqueName('vroot-auth');
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
    const g2 = await startSimilarGateway({ ns: ns2, esBase, env: { CBMIR_PACS_URL: stack.orthancAuthDicomWebUrl } });
    attachVirtualRoot(g2.gw, { config: g2.config, index: g2.index, search: g2.similar.search, logger: silent });
    try {
      // Two real slices with fresh UIDs, stored straight into the auth PACS (not indexed yet).
      const a1 = await freshInstance('images/1.jpg');
      const a2 = await freshInstance('images/20.jpg');
      for (const f of [a1, a2]) authFresh.push((await storeDirect(stack.orthancAuthUrl, Buffer.from(f.bytes), good)).study);
      const root1 = `${g2.base}/similar-to/${a1.sop}/dicom-web`;
      const root2 = `${g2.base}/similar-to/${a2.sop}/dicom-web`;
      for (const headers of [{} as Record<string, string>, { authorization: `Basic ${Buffer.from(`${user}:wrong`).toString('base64')}` }]) {
        const r = await raw(`${root1}/studies`, { headers });
        assert.equal(r.status, 401, r.body.toString());
        assert.equal(json<Problem>(r).code, 'UNAUTHORIZED');
        assert.ok(r.headers['www-authenticate']);
        assert.ok(!/\d+\.\d+\.\d+/.test(r.body.toString()), 'no UIDs in the refusal');
      }
      // The figshare slice is indexed, but not in this PACS: unknown here.
      const figshare = await raw(`${g2.base}/similar-to/${q.sopInstanceUid}/dicom-web/studies`, { headers: { authorization: good } });
      assert.equal(figshare.status, 404, figshare.body.toString());
      // ... in the same words as a UID the index has never seen: the answer must not tell them apart.
      const never = await raw(`${g2.base}/similar-to/1.2.826.0.1.3680043.99999.1/dicom-web/studies`, { headers: { authorization: good } });
      assert.equal(never.status, 404);
      assert.deepEqual(json<Problem>(figshare), json<Problem>(never));
      // a1: embedded on demand (then indexed); the 36 figshare studies in the shared index are not in this PACS.
      const r1 = await raw(`${root1}/studies`, { headers: { authorization: good }, timeoutMs: 60_000 });
      assert.equal(r1.status, 200, r1.body.toString());
      assert.deepEqual(json<DicomJsonDataset[]>(r1), []);
      // a2: a1's study is its one similar study, as this PACS records it, on a2's virtual root.
      const r2 = await raw(`${root2}/studies`, { headers: { authorization: good }, timeoutMs: 60_000 });
      assert.equal(r2.status, 200, r2.body.toString());
      const list = json<DicomJsonDataset[]>(r2);
      assert.deepEqual(
        list.map((d) => [val(d, '0020000D'), val(d, '00091010'), val(d, '00081190')]),
        [[a1.study, 1, `${root2}/studies/${a1.study}`]],
      );
      assert.deepEqual(val(list[0], '00100020'), a1.patientId, 'the PACS’s record (PatientID as the PACS shows it to this caller)');
      // Pass-through under the virtual root carries the caller's credentials too.
      const series = await raw(`${root2}/studies/${a1.study}/series`, { headers: { authorization: good } });
      assert.equal(series.status, 200);
      assert.equal((await raw(`${root2}/studies/${a1.study}/series`)).status, 401);
    } finally {
      await g2.close();
      await w2.close();
      await dropQueues(ns2);
    }
  });
});
