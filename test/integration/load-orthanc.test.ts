/**
 * `cbmir load` end to end against the test stack's real Orthanc (DICOMweb STOW-RS),
 * as the demo uses it: the figshare sample is stored, QIDO finds its studies by the
 * patient ids and its label in ImageComments, WADO-RS gives back the instance and
 * core/dicom decodes it to the source pixels and label; re-loading is idempotent;
 * Authorization reaches an Orthanc that requires it; a transient 503 is retried.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeDicom } from '../../core/dicom/decode.js';
import { decodeSourceImage } from '../../core/dicom/source-image.js';
import { stringValue } from '../../core/dicom-json.js';
import { PacsClient } from '../../core/pacs/client.js';
import { readDataset } from '../../workers/load/dataset.js';
import { runLoad } from '../../workers/load.js';
import { figshareSampleDir, ixiSampleDir } from '../helpers/fixtures.js';
import { orthancAuthHeader, testStack } from '../helpers/stack.js';

describe('cbmir load → Orthanc DICOMweb', () => {
  let pacs: PacsClient;
  before(() => {
    pacs = new PacsClient({ url: testStack().orthancDicomWebUrl });
  });
  after(async () => {
    await pacs.close();
  });

  it('stores the figshare sample: 9 studies, labels readable through QIDO and WADO-RS', async () => {
    const s = await runLoad({ dir: figshareSampleDir, mode: 'send', url: testStack().orthancDicomWebUrl, studyDate: '20250101', batchSize: 8, concurrency: 3 });
    assert.deepEqual([s.selected, s.sent, s.stored, s.failed], [36, 36, 36, 0], JSON.stringify(s.failures));
    assert.deepEqual(Object.fromEntries(Object.entries(s.byClass).map(([k, v]) => [k, v.stored])), { meningioma: 12, glioma: 12, pituitary: 12 });

    const plan = await readDataset(figshareSampleDir);
    const patients = [...new Set(plan.instances.map((i) => i.patientId))];
    assert.equal(patients.length, 9);
    for (const pid of patients) {
      const mine = plan.instances.filter((i) => i.patientId === pid);
      const studies = await pacs.qido('/studies', { PatientID: pid, StudyInstanceUID: mine[0]!.studyInstanceUid, includefield: '00081030' });
      assert.equal(studies.length, 1, `study of patient ${pid}`);
      assert.equal(stringValue(studies[0], '00081030'), 'figshare-cheng');
      assert.equal(stringValue(studies[0], '00100010'), `figshare-cheng^${pid}`);
      // ⊇, not =: a full figshare-cheng load into the same PACS shares these UIDs and adds slices.
      const instances = await pacs.qido(`/studies/${mine[0]!.studyInstanceUid}/instances`, { includefield: '00204000' });
      const found = new Map(instances.map((x) => [stringValue(x, '00080018'), stringValue(x, '00204000')]));
      for (const i of mine) assert.equal(found.get(i.sopInstanceUid), `label=${i.className}`, i.file);
    }
    // Series are findable by class through the standard Series Description.
    const glioma = await pacs.qido('/series', { SeriesDescription: 'figshare-cheng*glioma', Modality: 'MR' });
    const gliomaSeries = new Set(plan.instances.filter((i) => i.className === 'glioma').map((i) => i.seriesInstanceUid));
    assert.equal(glioma.filter((x) => gliomaSeries.has(stringValue(x, '0020000E') ?? '')).length, 3);

    // WADO-RS (as stored) → decode: the pixels of the source JPEG and the full label.
    const one = plan.instances.find((i) => i.file === 'images/1310.jpg')!;
    const bytes = await pacs.retrieveInstance(one.studyInstanceUid, one.seriesInstanceUid, one.sopInstanceUid);
    const r = await decodeDicom(bytes);
    assert.ok(r.ok, !r.ok ? r.reason : '');
    if (!r.ok) return;
    assert.deepEqual(r.meta.label, { className: 'pituitary', code: 3, dataset: 'figshare-cheng', sourceFile: 'images/1310.jpg', fold: 5 });
    const src = await decodeSourceImage(readFileSync(path.join(figshareSampleDir, one.file)));
    assert.deepEqual(Array.from(r.frames[0]!.pixels), Array.from(src.pixels));
  });

  it('is idempotent: loading again stores the same instances, no duplicates', async () => {
    const plan = await readDataset(figshareSampleDir);
    const study = plan.instances[0]!.studyInstanceUid;
    const before = (await pacs.qido(`/studies/${study}/instances`, {})).length;
    const s = await runLoad({ dir: figshareSampleDir, mode: 'send', url: testStack().orthancDicomWebUrl, studyDate: '20250101', filters: { patients: new Set([plan.instances[0]!.patientId]) } });
    assert.equal(s.failed, 0);
    assert.equal((await pacs.qido(`/studies/${study}/instances`, {})).length, before);
  });

  it('sends Authorization: stored with the right credentials, a clear 401 reason without', async () => {
    const { orthancAuthDicomWebUrl, orthancAuth } = testStack();
    const denied = await runLoad({ dir: ixiSampleDir, mode: 'send', url: orthancAuthDicomWebUrl, retries: 0 });
    assert.deepEqual([denied.stored, denied.failed], [0, 6]);
    assert.match(denied.failures[0]!.reason, /HTTP 401 .*check --auth/);
    const ok = await runLoad({ dir: ixiSampleDir, mode: 'send', url: orthancAuthDicomWebUrl, authorization: orthancAuthHeader(orthancAuth) });
    assert.deepEqual([ok.stored, ok.failed], [6, 0]);
  });

  it('retries a transient 503 and then stores', async () => {
    // A loopback fault injector in front of the real Orthanc: the first STOW gets 503.
    const target = new URL(testStack().orthancDicomWebUrl);
    let stows = 0;
    const proxy = http.createServer((req, res) => {
      if (req.method === 'POST' && stows++ === 0) {
        req.resume();
        req.on('end', () => res.writeHead(503, { 'content-type': 'text/plain' }).end('try later'));
        return;
      }
      const up = http.request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (u) => {
        res.writeHead(u.statusCode ?? 502, u.headers);
        u.pipe(res);
      });
      req.pipe(up);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    try {
      const port = (proxy.address() as AddressInfo).port;
      const s = await runLoad({ dir: ixiSampleDir, mode: 'send', url: `http://127.0.0.1:${port}${target.pathname}`, batchSize: 6, concurrency: 1, retries: 2 });
      assert.deepEqual([s.stored, s.failed], [6, 0]);
      assert.equal(stows, 2, 'one refused attempt, one successful retry');
    } finally {
      await new Promise((r) => proxy.close(r));
    }
  });
});
