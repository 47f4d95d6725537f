/**
 * Authorization passes through unchanged to an Orthanc that requires HTTP
 * basic auth; configured PACS credentials are used only when the client sent
 * none.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { orthancAuthHeader, testStack } from '../helpers/stack.js';
import {
  deleteStudies,
  raw,
  sample,
  startGateway,
  storeDirect,
  stowBody,
  uploadThenRead,
  type Running,
  type StoredUids,
} from './gateway-fixture.js';

describe('gateway authorization pass-through', () => {
  const stack = testStack();
  const good = orthancAuthHeader();
  const wrong = `Basic ${Buffer.from(`${stack.orthancAuth.user}:not-the-password`).toString('base64')}`;
  let open: Running;
  let withCreds: Running;
  let uids: StoredUids;

  before(async () => {
    uids = await storeDirect(stack.orthancAuthUrl, sample('transfer-syntax/mr_small_implicit.dcm'), good);
    open = await startGateway({ CBMIR_PACS_URL: stack.orthancAuthDicomWebUrl });
    withCreds = await startGateway({
      CBMIR_PACS_URL: stack.orthancAuthDicomWebUrl,
      CBMIR_PACS_USER: stack.orthancAuth.user,
      CBMIR_PACS_PASSWORD: stack.orthancAuth.password,
    });
  });
  after(async () => {
    await open?.close();
    await withCreds?.close();
    await deleteStudies(stack.orthancAuthUrl, [uids.study], good);
  });

  test("no credentials → the PACS's 401 passes through, with its challenge", async () => {
    const direct = await raw(`${stack.orthancAuthDicomWebUrl}/studies`);
    const r = await raw(`${open.base}/dicom-web/studies`);
    assert.equal(direct.status, 401);
    assert.equal(r.status, 401);
    assert.equal(r.headers['www-authenticate'], direct.headers['www-authenticate']);
  });

  test('client credentials are forwarded unchanged: right → 200, wrong → 401', async () => {
    const ok = await raw(`${open.base}/dicom-web/studies?StudyInstanceUID=${uids.study}`, { headers: { authorization: good } });
    assert.equal(ok.status, 200);
    assert.ok(ok.body.toString().includes(uids.study));
    const bad = await raw(`${open.base}/dicom-web/studies`, { headers: { authorization: wrong } });
    assert.equal(bad.status, 401);
  });

  test('configured credentials are used when the client sends none, never over the client’s own', async () => {
    const r = await raw(`${withCreds.base}/dicom-web/studies?StudyInstanceUID=${uids.study}`);
    assert.equal(r.status, 200);
    assert.ok(r.body.toString().includes(uids.study));
    const inst = `/dicom-web/studies/${uids.study}/series/${uids.series}/instances/${uids.instance}`;
    const wado = await raw(`${withCreds.base}${inst}`);
    assert.equal(wado.status, 200);
    assert.match(wado.headers['content-type'] ?? '', /^multipart\/related/);
    // The client's (wrong) credentials win over the configured ones.
    const bad = await raw(`${withCreds.base}/dicom-web/studies`, { headers: { authorization: wrong } });
    assert.equal(bad.status, 401);
  });

  test('thumbnails are cached per credential: a cached image is not served to an unauthenticated client', async () => {
    const thumb = `/dicom-web/studies/${uids.study}/series/${uids.series}/instances/${uids.instance}/thumbnail`;
    const first = await raw(`${open.base}${thumb}`, { headers: { authorization: good } });
    assert.equal(first.status, 200);
    const again = await raw(`${open.base}${thumb}`, { headers: { authorization: good } });
    assert.equal(again.headers['x-cbmir-thumbnail-cache'], 'HIT');
    const anon = await raw(`${open.base}${thumb}`);
    assert.equal(anon.status, 401);
  });

  test('a large STOW without credentials: an uploader that sends everything before reading gets the PACS’s 401, not a reset', async () => {
    const gw = await startGateway({ CBMIR_PACS_URL: stack.orthancAuthDicomWebUrl });
    try {
      // First upload: the gateway asks with `Expect: 100-continue`, Orthanc refuses from the head.
      assert.match(await uploadThenRead(gw.base, '/dicom-web/studies', 48 << 20), /^HTTP\/1\.1 401 /);
      // A STOW that succeeds teaches the gateway that Orthanc never sends 100 (later uploads keep
      // Expect but go after a 100 ms head start); an early 401 must still come through then.
      const { body, contentType } = stowBody([sample('transfer-syntax/mr_small_implicit.dcm')]);
      const ok = await raw(`${gw.base}/dicom-web/studies`, {
        method: 'POST',
        headers: { 'content-type': contentType, authorization: good },
        body,
      });
      assert.equal(ok.status, 200, ok.body.toString());
      assert.match(await uploadThenRead(gw.base, '/dicom-web/studies', 48 << 20), /^HTTP\/1\.1 401 /);
    } finally {
      await gw.close();
    }
  });

  test('/readyz counts a PACS that asks for credentials as reachable', async () => {
    const r = await raw(`${open.base}/readyz`);
    assert.equal(r.status, 200);
  });
});
