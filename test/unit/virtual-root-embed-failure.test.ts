/**
 * A virtual root whose query instance is not indexed and cannot be embedded (gateway/virtual-root.ts):
 * the viewer gets 503 EMBED_UNAVAILABLE with Retry-After and no internal detail, and the log gets
 * the reason (docs/api.md), as for /similar and /similar/heatmap (gateway/problem-answer.ts).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../core/config.js';
import type { VectorIndex } from '../../core/index/types.js';
import type { Logger } from '../../core/log.js';
import { JobUnavailable } from '../../core/queue/job-requester.js';
import { virtualRootGateway } from './fake-gateway.js';
import type { AccessChecker } from '../../gateway/similar-access.js';
import { SimilarSearch } from '../../gateway/similar-search.js';
import { attachVirtualRoot } from '../../gateway/virtual-root.js';

const SOP = '2.25.9.1.1';
const logged: Array<{ level: string; obj: unknown; msg: string }> = [];
const closeHooks: Array<() => Promise<void> | void> = [];
let pacs: http.Server;
let gateway: http.Server;
let base = '';

before(async () => {
  // The PACS knows the instance (QIDO /instances by SOP Instance UID); nothing else is asked of it.
  pacs = http.createServer((_req, res) => {
    const record = { '0020000D': { vr: 'UI', Value: ['2.25.9'] }, '0020000E': { vr: 'UI', Value: ['2.25.9.1'] } };
    res.writeHead(200, { 'content-type': 'application/dicom+json' }).end(JSON.stringify([record]));
  });
  pacs.listen(0, '127.0.0.1');
  await once(pacs, 'listening');
  const config = loadConfig({ CBMIR_PACS_URL: `http://127.0.0.1:${(pacs.address() as AddressInfo).port}/dicom-web` });
  const note = (level: string) => (obj: unknown, msg: string) => void logged.push({ level, obj, msg });
  const logger = { warn: note('warn'), error: note('error'), info: note('info'), debug: note('debug') } as unknown as Logger;
  const index = { get: async () => undefined, liveVersion: async () => 'v1' } as unknown as VectorIndex;
  const access = { requireInstance: async () => undefined } as unknown as AccessChecker;
  const embed = {
    embed: async () => {
      throw new JobUnavailable('the embedding job failed', 'no model file /models/v1.onnx (ECONNREFUSED 10.9.8.7:6379)', 5);
    },
  };
  const search = new SimilarSearch({ index, access, embed, modelVersion: 'v1', log: logger });
  const { gateway: fakeGateway, handler } = virtualRootGateway(closeHooks);
  attachVirtualRoot(fakeGateway, { config, index, search, logger });
  gateway = http.createServer((req, res) => {
    const root = `http://${req.headers.host}/similar-to/${SOP}`;
    handler()(req, res, {
      sopInstanceUid: SOP,
      query: '',
      publicBase: { base: root, host: req.headers.host ?? '', proto: 'http', path: `/similar-to/${SOP}` },
    });
  });
  gateway.listen(0, '127.0.0.1');
  await once(gateway, 'listening');
  base = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
});

after(async () => {
  gateway.close();
  pacs.close();
  for (const h of closeHooks) await h();
});

test('virtual root, embed job failed: 503 with Retry-After for the viewer, the reason in the log', async () => {
  const r = await fetch(`${base}/similar-to/${SOP}/dicom-web/studies`);
  assert.equal(r.status, 503);
  assert.equal(r.headers.get('retry-after'), '5');
  const body = await r.text();
  assert.equal((JSON.parse(body) as { code: string }).code, 'EMBED_UNAVAILABLE');
  assert.doesNotMatch(body, /10\.9\.8\.7|onnx/);
  const entry = logged.find((l) => l.level === 'warn' && /no query vector/.test(l.msg));
  assert.ok(entry, `the reason is logged: ${JSON.stringify(logged)}`);
  assert.match((entry.obj as { reason: string }).reason, /no model file/);
});
