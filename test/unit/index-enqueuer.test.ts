import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IndexEnqueuer } from '../../core/queue/index-enqueuer.js';
test('enqueue and close stay bounded when Redis is unreachable', async () => {
  const e = new IndexEnqueuer('redis://127.0.0.1:1', 'v1', { timeoutMs: 1000 });
  const t0 = Date.now();
  const r = await e.enqueue([{ studyInstanceUid: '1.2', seriesInstanceUid: '1.2.3', sopInstanceUid: '1.2.3.4', sopClassUid: undefined }], 'stow');
  assert.equal(r.failed, 1);
  await e.close(500);
  assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
});
