/**
 * The STOW hook (gateway/stow-indexing.ts) with a stand-in enqueuer: what the PACS says it stored
 * becomes index jobs, and what the hook cannot read of its answer is counted and logged instead
 * of being dropped unseen (a PACS whose answers lack per-instance RetrieveURLs would otherwise
 * index nothing on STOW without anyone knowing).
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { createLogger } from '../../core/log.js';
import type { StoredInstance } from '../../core/pacs/stow-response.js';
import type { IndexEnqueuer } from '../../core/queue/index-enqueuer.js';
import type { Gateway } from '../../gateway/server.js';
import type { StowResponseListener } from '../../gateway/stow-hooks.js';
import { attachStowIndexing } from '../../gateway/stow-indexing.js';

const ref = (sop: string, url?: string) => ({
  '00081155': { vr: 'UI', Value: [sop] },
  ...(url ? { '00081190': { vr: 'UR', Value: [url] } } : {}),
});
const URL_OF = (sop: string) => `http://pacs/dicom-web/studies/1.2.3/series/1.2.3.4/instances/${sop}`;

function setup() {
  const registry = new Registry();
  let listener: StowResponseListener | undefined;
  const gateway = {
    metrics: { registry },
    onStowResponse: (l: StowResponseListener) => void (listener = l),
    addReadinessCheck: () => undefined,
  } as unknown as Gateway;
  const queued: StoredInstance[] = [];
  const enqueuer = {
    enqueue: async (list: readonly StoredInstance[]) => {
      queued.push(...list);
      return { enqueued: list.length, failed: 0 };
    },
    ping: async () => undefined,
  } as unknown as IndexEnqueuer;
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write: (chunk: Buffer, _e, cb) => (lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>), cb()),
  });
  attachStowIndexing(gateway, enqueuer, createLogger('info', 'test', sink));
  const send = async (status: number, body: unknown) =>
    listener!({
      status,
      contentType: undefined,
      body: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)),
      studyUid: undefined,
      reqId: 'r1',
    });
  const unread = async (what: string) =>
    (await registry.getSingleMetric('cbmir_gateway_stow_unread_total')!.get()).values.find((v) => v.labels.what === what)?.value ?? 0;
  return { send, queued, lines, unread };
}

test('references without a series are counted and logged; the readable ones are queued', async () => {
  const t = setup();
  await t.send(200, {
    '0020000D': { vr: 'UI', Value: ['1.2.3'] },
    '00081199': { vr: 'SQ', Value: [ref('1.2.3.4.5', URL_OF('1.2.3.4.5')), ref('1.2.3.4.6'), ref('1.2.3.4.7')] },
  });
  assert.deepEqual(
    t.queued.map((i) => i.sopInstanceUid),
    ['1.2.3.4.5'],
  );
  assert.equal(await t.unread('reference'), 2);
  assert.equal(await t.unread('answer'), 0);
  const warn = t.lines.find((l) => String(l.msg).startsWith('STOW answer not fully readable'));
  assert.ok(warn, JSON.stringify(t.lines));
  assert.equal(warn.unreadReferences, 2);
  assert.ok(!JSON.stringify(warn).includes('1.2.3.4.6'), 'no UIDs in the log');
});

test('a 2xx answer that is neither DICOM JSON nor XML is counted; a refusal that is not DICOM is not', async () => {
  const t = setup();
  await t.send(200, 'stored');
  assert.equal(await t.unread('answer'), 1);
  await t.send(415, 'Unsupported Media Type');
  await t.send(409, { '00081198': { vr: 'SQ', Value: [ref('1.2.3.4.9')] } }); // nothing stored, all failed: nothing unread
  assert.equal(await t.unread('answer'), 1);
  assert.equal(await t.unread('reference'), 0);
  assert.equal(t.lines.filter((l) => String(l.msg).startsWith('STOW answer not fully readable')).length, 1);
  assert.equal(t.queued.length, 0);
});
