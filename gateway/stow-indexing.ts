/**
 * Automatic indexing on storage (ARCHITECTURE.md flow 2): when the PACS has
 * answered a STOW, read its own ReferencedSOPSequence and enqueue one index job
 * per stored instance — also on Orthanc's partial success (HTTP 400, no
 * Content-Type, still lists what it stored). The client already has the PACS's
 * answer, unchanged; if Redis is down the jobs are counted as lost here and the
 * reconciler finds the instances later.
 */
import { Counter } from 'prom-client';
import type { Logger } from '../core/log.js';
import type { IndexEnqueuer } from '../core/queue/index-enqueuer.js';
import { readStowResponse } from '../core/pacs/stow-response.js';
import type { Gateway } from './server.js';

export function attachStowIndexing(gateway: Gateway, enqueuer: IndexEnqueuer, log: Logger): void {
  const enqueued = new Counter({
    name: 'cbmir_gateway_index_jobs_enqueued_total',
    help: 'Index jobs enqueued after STOW (re-sends dedupe by job id and still count here)',
    registers: [gateway.metrics.registry],
  });
  const lost = new Counter({
    name: 'cbmir_gateway_index_enqueue_failures_total',
    help: 'Stored instances whose index job could not be enqueued (Redis down); the reconciler catches up',
    registers: [gateway.metrics.registry],
  });
  const unread = new Counter({
    name: 'cbmir_gateway_stow_unread_total',
    help: 'STOW answers the gateway could not read (what: answer = a 2xx body neither DICOM JSON nor XML; reference = a stored instance without study, series and SOP UIDs); the reconciler catches up',
    labelNames: ['what'] as const,
    registers: [gateway.metrics.registry],
  });
  gateway.onStowResponse(async (ev) => {
    if (ev.status >= 500) return;
    const { stored, unread: refs, parsed } = readStowResponse(ev.body);
    // A PACS whose answers the hook cannot read would otherwise index nothing on STOW, unseen.
    const badAnswer = !parsed && ev.status < 300;
    if (badAnswer) unread.inc({ what: 'answer' });
    if (refs > 0) unread.inc({ what: 'reference' }, refs);
    if (badAnswer || refs > 0)
      log.warn(
        { reqId: ev.reqId, status: ev.status, unreadReferences: refs, answerUnreadable: badAnswer },
        'STOW answer not fully readable (no ReferencedSOPSequence with study/series RetrieveURLs?): those instances wait for the reconciler',
      );
    if (stored.length === 0) return;
    const r = await enqueuer.enqueue(stored, 'stow');
    enqueued.inc(r.enqueued);
    if (r.failed) {
      lost.inc(r.failed);
      log.warn({ reqId: ev.reqId, instances: r.failed, err: r.error }, 'could not enqueue index jobs; the reconciler will catch up');
    }
  });
  gateway.addReadinessCheck({ name: 'redis', check: () => enqueuer.ping() });
}
