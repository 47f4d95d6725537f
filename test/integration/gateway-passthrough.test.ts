/**
 * The gateway is transparent: QIDO, WADO-RS (instance, metadata, frames,
 * rendered), WADO-URI and STOW answers through it equal Orthanc's own answers
 * (after normalising multipart boundaries and the DICOMweb root written into
 * URLs), for real files stored through the gateway's STOW and directly.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { storedInstances } from '../../core/pacs/stow-response.js';
import type { StowResponseEvent } from '../../gateway/stow-hooks.js';
import { testStack } from '../helpers/stack.js';
import {
  deleteStudies,
  json,
  normalise,
  raw,
  referencedSops,
  sample,
  startGateway,
  storeDirect,
  stowBody,
  type Running,
  type StoredUids,
} from './gateway-fixture.js';

const VIA_STOW = {
  jpegls: 'transfer-syntax/siemens_mosaic_7.dcm', // JPEG-LS lossless, 384x384 mosaic
  multiframe: 'multi-frame/enhanced_mr_xa10_6fr.dcm', // Enhanced MR, 6 frames
  implicit: 'transfer-syntax/mr_small_implicit.dcm', // implicit VR little endian
};
const VIA_REST = {
  mprage1: 'series/ge_3d_ax_t1_mprage_phantom/IM_0001.dcm',
  mprage2: 'series/ge_3d_ax_t1_mprage_phantom/IM_0002.dcm',
};

describe('gateway pass-through equals direct Orthanc', () => {
  const stack = testStack();
  let gw: Running;
  const uids = new Map<string, StoredUids>();
  const hookEvents: StowResponseEvent[] = [];
  let roots: string[];

  before(async () => {
    gw = await startGateway();
    gw.gw.onStowResponse((e) => {
      hookEvents.push(e);
    });
    roots = [`${gw.base}/dicom-web`, stack.orthancDicomWebUrl, `${gw.base}/wado`, `${stack.orthancUrl}/wado`];
    for (const [name, rel] of Object.entries(VIA_REST)) uids.set(name, await storeDirect(stack.orthancUrl, sample(rel)));
  });

  after(async () => {
    await gw?.close();
    await deleteStudies(
      stack.orthancUrl,
      [...uids.values()].map((u) => u.study),
    );
  });

  test('STOW through the gateway stores every file, answers with gateway URLs and feeds the STOW hook', async () => {
    const names = Object.keys(VIA_STOW) as (keyof typeof VIA_STOW)[];
    const { body, contentType } = stowBody(names.map((n) => sample(VIA_STOW[n])));
    const stow = (accept: string) =>
      raw(`${gw.base}/dicom-web/studies`, { method: 'POST', headers: { 'content-type': contentType, accept }, body });
    const r = await stow('application/dicom+json');
    assert.equal(r.status, 200, r.body.toString());
    assert.match(r.headers['content-type'] ?? '', /json/);
    const answer = json<Record<string, { Value?: unknown[] }>>(r);
    const sops = referencedSops(answer);
    assert.equal(sops.length, 3);
    const text = r.body.toString();
    assert.ok(text.includes(`${gw.base}/dicom-web/studies/`), 'RetrieveURL points at the gateway');
    assert.ok(!text.includes(stack.orthancUrl), 'no PACS URL leaks through');

    // Learn each file's UIDs from Orthanc (the source of truth), by SOP Instance UID.
    for (const [i, name] of names.entries()) {
      const found = json<Record<string, { Value: string[] }>[]>(
        await raw(`${stack.orthancDicomWebUrl}/instances?SOPInstanceUID=${sops[i]}`),
      );
      assert.equal(found.length, 1, `${name} is stored`);
      const f = found[0] as Record<string, { Value: string[] }>;
      uids.set(name, { study: f['0020000D']!.Value[0]!, series: f['0020000E']!.Value[0]!, instance: f['00080018']!.Value[0]! });
    }

    // The hook runs after the response is finished: give it a tick.
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(hookEvents.length, 1);
    const ev = hookEvents[0]!;
    assert.equal(ev.status, 200);
    assert.equal(ev.studyUid, undefined);
    assert.deepEqual(referencedSops(JSON.parse(ev.body.toString())), sops);
    assert.match(ev.contentType ?? '', /json/);

    // A client that asks for XML (PS3.19) gets Orthanc's XML answer, and its instances are
    // still found for indexing (they were not: only JSON was read, so indexing waited for the reconciler).
    const x = await stow('application/dicom+xml');
    assert.equal(x.status, 200, x.body.toString());
    assert.match(x.headers['content-type'] ?? '', /xml/);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(hookEvents.length, 2);
    const fromXml = storedInstances(hookEvents[1]!.body);
    assert.deepEqual(
      fromXml.map((i) => i.sopInstanceUid),
      sops,
    );
    assert.deepEqual(
      fromXml.map((i) => [i.studyInstanceUid, i.seriesInstanceUid]),
      names.map((n) => [uids.get(n)!.study, uids.get(n)!.series]),
    );
    assert.deepEqual(
      fromXml.map((i) => i.sopClassUid),
      storedInstances(hookEvents[0]!.body).map((i) => i.sopClassUid),
    );
  });

  test('a client that leaves right after its STOW upload: the PACS stores it, and the hook still queues what was stored', async () => {
    const names = Object.keys(VIA_STOW) as (keyof typeof VIA_STOW)[];
    const { body, contentType } = stowBody(names.map((n) => sample(VIA_STOW[n])));
    const before = hookEvents.length;
    const { port } = new URL(gw.base);
    await new Promise<void>((resolve, reject) => {
      const sock = net.connect(Number(port), '127.0.0.1', () => {
        sock.write(
          `POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${contentType}\r\nContent-Length: ${body.length}\r\n\r\n`,
        );
        sock.end(body, () => {
          sock.destroy(); // gone before the PACS has answered
          resolve();
        });
      });
      sock.on('error', reject);
    });
    const deadline = Date.now() + 10_000;
    while (hookEvents.length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(hookEvents.length, before + 1, 'the STOW hook saw the answer');
    assert.deepEqual(
      storedInstances(hookEvents.at(-1)!.body)
        .map((i) => i.sopInstanceUid)
        .sort(),
      names.map((n) => uids.get(n)!.instance).sort(),
    );
  });

  /**
   * The gateway's answer equals the PACS's own. `expect` is the status the PACS must give directly:
   * two equal error answers (a route the PACS cannot serve) would otherwise compare equal and pass.
   */
  const compare = async (path: string, headers: Record<string, string> = {}, wadoUri = false, expect = 200): Promise<string> => {
    const prefix = wadoUri ? '' : '/dicom-web';
    const direct = await raw(`${wadoUri ? stack.orthancUrl : stack.orthancDicomWebUrl}${path}`, { headers });
    const viaGw = await raw(`${gw.base}${prefix}${path}`, { headers });
    assert.equal(direct.status, expect, `the PACS's own status of ${path}: ${direct.body.subarray(0, 300).toString()}`);
    if (expect === 200) assert.ok(direct.body.length > 0, `the PACS's own body of ${path} is empty`);
    const d = normalise(direct, roots);
    const g = normalise(viaGw, roots);
    assert.equal(g.status, d.status, `status of ${path}`);
    assert.equal(g.contentType, d.contentType, `content-type of ${path}`);
    assert.equal(g.body.length, d.body.length, `body length of ${path}`);
    assert.ok(g.body === d.body, `body of ${path} differs`);
    if (
      viaGw.headers['content-length'] !== undefined &&
      direct.headers['content-length'] !== undefined &&
      !roots.some((r) => direct.body.includes(r))
    ) {
      assert.equal(viaGw.headers['content-length'], direct.headers['content-length']);
    }
    return g.contentType;
  };

  test('QIDO-RS: studies, series, instances at every level', async () => {
    for (const name of ['jpegls', 'multiframe', 'mprage1']) {
      const u = uids.get(name)!;
      await compare(`/studies?StudyInstanceUID=${u.study}&includefield=all`);
      await compare(`/studies/${u.study}/series`);
      await compare(`/studies/${u.study}/series/${u.series}/instances`);
      await compare(`/studies/${u.study}/instances`);
      await compare(`/series?SeriesInstanceUID=${u.series}`);
      await compare(`/instances?SOPInstanceUID=${u.instance}`);
    }
    // Direct Orthanc answers carry its own root, the gateway's carry the gateway's.
    const u = uids.get('mprage1')!;
    const r = await raw(`${gw.base}/dicom-web/studies?StudyInstanceUID=${u.study}`);
    assert.ok(r.body.toString().includes(`"${gw.base}/dicom-web/studies/${u.study}"`));
  });

  test('WADO-RS retrieve (study, series, instance) is byte-identical up to the boundary', async () => {
    const dicom = { accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' };
    for (const name of ['jpegls', 'multiframe', 'implicit', 'mprage2']) {
      const u = uids.get(name)!;
      await compare(`/studies/${u.study}/series/${u.series}/instances/${u.instance}`, dicom);
      await compare(`/studies/${u.study}/series/${u.series}/instances/${u.instance}`, {
        accept: 'multipart/related; type="application/dicom"',
      });
    }
    const m = uids.get('mprage1')!;
    await compare(`/studies/${m.study}/series/${m.series}`, dicom);
    await compare(`/studies/${m.study}`, dicom);
  });

  test('WADO-RS metadata, frames, bulk data and rendered', async () => {
    for (const name of ['jpegls', 'multiframe', 'mprage1']) {
      const u = uids.get(name)!;
      const inst = `/studies/${u.study}/series/${u.series}/instances/${u.instance}`;
      await compare(`${inst}/metadata`);
      await compare(`/studies/${u.study}/series/${u.series}/metadata`);
      await compare(`/studies/${u.study}/metadata`);
      assert.match(await compare(`${inst}/frames/1`), /^multipart\/related/);
      assert.match(
        await compare(`${inst}/frames/1`, { accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' }),
        /^multipart\/related/,
      );
      assert.match(await compare(`${inst}/rendered`, { accept: 'image/jpeg' }), /^image\/jpeg/);
      assert.match(await compare(`${inst}/rendered`, { accept: 'image/png' }), /^image\/png/);
    }
    const mf = uids.get('multiframe')!;
    const inst = `/studies/${mf.study}/series/${mf.series}/instances/${mf.instance}`;
    await compare(`${inst}/frames/2,4,6`);
    assert.match(await compare(`${inst}/frames/3/rendered`, { accept: 'image/png' }), /^image\/png/);
    // A BulkDataURI from the gateway's metadata works through the gateway.
    const meta = (await raw(`${gw.base}/dicom-web${inst}/metadata`)).body.toString();
    const bulk = /"BulkDataURI" : "([^"]+)"/.exec(meta)?.[1];
    assert.ok(bulk?.startsWith(`${gw.base}/dicom-web/`), 'BulkDataURI points at the gateway');
    await compare(bulk!.slice(`${gw.base}/dicom-web`.length));
  });

  test('WADO-URI', async () => {
    for (const name of ['jpegls', 'mprage1']) {
      const u = uids.get(name)!;
      const q = `requestType=WADO&studyUID=${u.study}&seriesUID=${u.series}&objectUID=${u.instance}`;
      // PS3.18's default contentType is a rendered image (Orthanc: PNG).
      assert.match(await compare(`/wado?${q}`, {}, true), /^image\//);
      assert.match(await compare(`/wado?${q}&contentType=application/dicom`, {}, true), /^application\/dicom/);
      assert.match(await compare(`/wado?${q}&contentType=image/jpeg`, {}, true), /^image\//);
    }
  });

  test('WADO-URI with an encoded contentType (application%2Fdicom, as cornerstone and Weasis send it) gets what the literal one gets from the PACS', async () => {
    const u = uids.get('jpegls')!;
    const q = `requestType=WADO&studyUID=${u.study}&seriesUID=${u.series}&objectUID=${u.instance}`;
    for (const [encoded, literal] of [
      ['application%2Fdicom', 'application/dicom'],
      ['image%2Fpng', 'image/png'],
    ]) {
      // Orthanc 1.10 compares contentType undecoded (pacs-quirks.ts: wadoUriContentTypeNeedsLiteralSlash).
      assert.equal((await raw(`${stack.orthancUrl}/wado?${q}&contentType=${encoded}`)).status, 400, `Orthanc's own answer to ${encoded}`);
      const direct = normalise(await raw(`${stack.orthancUrl}/wado?${q}&contentType=${literal}`), roots);
      const viaGw = normalise(await raw(`${gw.base}/wado?${q}&contentType=${encoded}`), roots);
      assert.equal(direct.status, 200);
      assert.equal(viaGw.status, 200, encoded);
      assert.equal(viaGw.contentType, direct.contentType, encoded);
      assert.ok(viaGw.body === direct.body, `body of ${encoded}`);
    }
  });

  test('STOW to /studies/{study} names the study in the hook event', async () => {
    const u = uids.get('implicit')!;
    const before = hookEvents.length;
    const { body, contentType } = stowBody([sample(VIA_STOW.implicit)]);
    const r = await raw(`${gw.base}/dicom-web/studies/${u.study}`, { method: 'POST', headers: { 'content-type': contentType }, body });
    const direct = await raw(`${stack.orthancDicomWebUrl}/studies/${u.study}`, {
      method: 'POST',
      headers: { 'content-type': contentType },
      body,
    });
    assert.equal(r.status, direct.status);
    await new Promise((res) => setTimeout(res, 50));
    assert.equal(hookEvents.length, before + 1);
    assert.equal(hookEvents.at(-1)?.studyUid, u.study);
    assert.equal(hookEvents.at(-1)?.status, r.status);
  });

  test('errors pass through: unknown study → the PACS status and body', async () => {
    await compare('/studies/1.2.3.4.5.6.7.8.9/metadata', {}, false, 404);
  });

  // Orthanc 1.10 answers every HEAD 404 with no body (its HTTP server routes only GET for these
  // URIs), so what this can show against it is that the gateway gives the PACS's own answer, not
  // one of its own (it was a 405 problem at the gateway). That HEAD goes upstream as HEAD, not as a
  // GET whose body is dropped, is test/unit/gateway-upstream-passthrough.test.ts's.
  test("HEAD gets the PACS's own answer: the same status and headers as direct, no body (it was 405 at the gateway)", async () => {
    const u = uids.get('mprage1')!;
    for (const p of [`/studies/${u.study}/series`, `/studies/${u.study}/series/${u.series}/instances/${u.instance}`]) {
      const direct = await raw(`${stack.orthancDicomWebUrl}${p}`, { method: 'HEAD' });
      const viaGw = await raw(`${gw.base}/dicom-web${p}`, { method: 'HEAD' });
      assert.equal(direct.status, 404, `Orthanc 1.10's own HEAD of ${p} (if this changed, compare lengths here)`);
      assert.equal((await raw(`${stack.orthancDicomWebUrl}${p}`)).status, 200, `GET ${p} is served, so the 404 is Orthanc's HEAD`);
      assert.equal(viaGw.status, direct.status, p);
      assert.equal(viaGw.headers['content-type'], direct.headers['content-type'], p);
      assert.equal(viaGw.headers['content-length'], direct.headers['content-length'], p);
      assert.equal(viaGw.body.length, 0);
    }
  });
});
