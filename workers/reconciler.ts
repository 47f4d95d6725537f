/**
 * The reconciler (ARCHITECTURE.md flow 3): find instances that are in the PACS but
 * not in the vector index, and enqueue index jobs for them. Images reach a PACS by
 * DIMSE C-STORE from modalities, while Redis was down, or before the gateway
 * existed; this is how they become searchable. Used periodically by the worker
 * process (workers/reconcile/periodic.ts), by `cbmir backfill` and by `cbmir reindex`.
 *
 * The crawl is QIDO-RS only (PS3.18 §10.6), paged with limit/offset:
 *   GET /studies?limit=L&offset=O&includefield=00201208     (until an empty page)
 *   GET /studies/{study}/instances?limit=L&offset=O           (per study, until empty)
 * Paging stops on an empty page, never on a short one: a PACS may cap a page below
 * the limit we asked for, and a short page would otherwise end the crawl early.
 * Every PACS request waits for the rate limiter (default 10/s), so a backfill of a
 * large archive cannot crowd out viewers.
 *
 * Per page of instances: `index.has()` in batches → for the missing ones, the state
 * of their job in the queue (job id = SOP Instance UID + model version, so this
 * dedupes against the STOW hook):
 *   unknown              → enqueue
 *   waiting/active/…     → already on its way; nothing to do
 *   failed               → a refusal (or an exhausted retry) is not retried each pass;
 *                          `cbmir failed --retry` is the way back
 *   completed            → completed but not in the index: if it was indexed (the
 *                          document was deleted since, or the index rebuilt) the old job
 *                          is removed and a new one enqueued; a skip stays skipped.
 * The other direction too, so that search never returns what the PACS no longer has:
 *   - per study crawled completely, documents of that study whose instance the PACS no
 *     longer lists (deleted), or lists in another series (moved), are deleted from the index
 *     (a moved one is indexed again on the next pass, as missing);
 *   - after a crawl of the whole study list (no --match/--since/study list), documents of
 *     studies the PACS no longer lists at all are deleted, unless that would remove more than
 *     a fifth of the indexed studies at once (a PACS login that suddenly reads less, a PACS
 *     that lost its database): then nothing is deleted and the summary says why.
 *   Documents indexed after the PACS was listed are kept (an image stored meanwhile).
 * A study is "done" (checkpointed, for `cbmir backfill --resume`) when all of its
 * pages were checked and every enqueue succeeded. A PACS error skips one study (recorded
 * in studyErrors); a failing queue or index stops the pass (`stopped`), since every
 * further study would fail the same way, and so do five studies in a row with the PACS
 * unreachable.
 */
import { isNonImageSopClass } from '../core/dicom/sop-classes.js';
import type { Queue } from 'bullmq';
import { isValidUid } from '../core/errors.js';
import { indexJobId, type IndexJobData, type IndexJobResult, type IndexJobSource } from '../core/jobs.js';
import { stringValue, type DicomJsonDataset } from '../core/dicom-json.js';
import { isTransientPacsError, type PacsClient } from '../core/pacs/client.js';
import type { StoredInstance } from '../core/pacs/stow-response.js';
import type { IndexEnqueuer } from '../core/queue/index-enqueuer.js';
import type { VectorIndex } from '../core/index/types.js';
import type { Logger } from '../core/log.js';
import type { Checkpoint } from './reconcile/checkpoint.js';
import { RateLimiter } from './reconcile/rate-limiter.js';
import { classifyFailure } from './failed-jobs.js';

export interface ReconcileDeps {
  readonly pacs: PacsClient;
  /** Bound to the model version being reconciled (its storage is what `has` checks). */
  readonly index: Pick<VectorIndex, 'has' | 'listStudy' | 'studyUids' | 'deleteMany'>;
  /** Enqueues with the same model version as `index` is bound to. */
  readonly enqueuer: IndexEnqueuer;
  readonly log?: Logger;
}

export interface ReconcileOptions {
  readonly source: Extract<IndexJobSource, 'reconciler' | 'backfill' | 'reindex'>;
  /** PACS requests per second, at most (default 10). */
  readonly maxRequestsPerSecond?: number;
  /** A limiter shared with other passes (wins over maxRequestsPerSecond): concurrent passes share one budget. */
  readonly limiter?: RateLimiter;
  /** QIDO page sizes (defaults 100 studies, 500 instances). */
  readonly studyPageSize?: number;
  readonly instancePageSize?: number;
  /** UIDs per `index.has()` call (default 500). */
  readonly hasBatchSize?: number;
  /** Only studies with StudyDate ≥ this (YYYYMMDD); QIDO range matching `since-`. */
  readonly since?: string;
  /**
   * Extra QIDO matching attributes for the study search (keyword or tag → value, e.g.
   * { ModalitiesInStudy: 'CT' } or { StudyDescription: 'trial-7*' }): reconcile a slice.
   */
  readonly studyQuery?: Readonly<Record<string, string>>;
  /** Delete documents whose instance or study the PACS no longer lists (default true). */
  readonly prune?: boolean;
  /** Reconcile exactly these studies instead of crawling /studies (the change-feed fast path). */
  readonly studyUids?: readonly string[];
  /** Skip the studies it lists; record each study finished. */
  readonly checkpoint?: Pick<Checkpoint, 'has' | 'markDone'>;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: ReconcileProgress) => void;
}

export interface ReconcileProgress {
  /**
   * True while the study list is being paged (before any study is checked): studiesTotal is then
   * the number of studies listed so far, instancesTotal the instances they hold, the rest 0.
   */
  readonly listing?: boolean;
  readonly studiesTotal: number;
  readonly studiesDone: number;
  /** Sum of NumberOfStudyRelatedInstances when the PACS reports it, else what was seen so far. */
  readonly instancesTotal: number;
  readonly instancesSeen: number;
  readonly missing: number;
  readonly enqueued: number;
}

export interface ReconcileSummary {
  readonly studies: number;
  /** Studies skipped because the checkpoint lists them (--resume). */
  readonly studiesResumed: number;
  readonly instances: number;
  readonly alreadyIndexed: number;
  readonly missing: number;
  readonly enqueued: number;
  /** Missing, but a job for it is waiting or running. */
  readonly alreadyQueued: number;
  /** Missing, and its job failed before: left alone (see `cbmir failed`). */
  readonly previouslyFailed: number;
  /** Missing although a job completed for it (document deleted since): re-enqueued. */
  readonly requeued: number;
  /** Missing instances whose job could not be enqueued (Redis down). */
  readonly enqueueFailures: number;
  /** Documents deleted from the index: their instance is gone from the PACS, or moved to another series. */
  readonly pruned: number;
  /** Studies the PACS no longer lists whose documents were deleted. */
  readonly prunedStudies: number;
  /** Why documents of studies the PACS no longer lists were NOT deleted (too many at once). */
  readonly pruneRefused?: string;
  /** Instances the PACS listed without valid UIDs. */
  readonly invalid: number;
  /** Instances of a SOP class that is never an image (SR, presentation states, KOS …): not enqueued. */
  readonly notImages: number;
  /** Studies that could not be checked completely (PACS error), with the reason. */
  readonly studyErrors: ReadonlyArray<{
    readonly study: string;
    readonly reason: string;
  }>;
  readonly pacsRequests: number;
  readonly elapsedMs: number;
  /** Why the pass stopped early (the queue or the index failed, the PACS unreachable study after study); the studies after it were not checked. */
  readonly stopped?: string;
  /** Every study was checked and every missing instance enqueued. */
  readonly complete: boolean;
}

/**
 * The queue or the index cannot be reached: every further study would fail the same way,
 * so the pass stops (with a summary) instead of logging one error per study.
 */
class PassStopped extends Error {}

const STUDY_UID = '0020000D';
const SERIES_UID = '0020000E';
const SOP_UID = '00080018';
const SOP_CLASS = '00080016';
const STUDY_INSTANCES = '00201208';
/** Clock difference between worker and reconciler machines tolerated when keeping documents indexed during a listing. */
const CLOCK_MARGIN_MS = 5 * 60_000;
/** Studies in a row whose listing failed with the PACS unreachable (down, 5xx, timeouts) before a pass stops. */
const MAX_PACS_FAILURES_IN_ROW = 5;
/** How long a job that WADO answered 404 for stays failed before a listing of its instance queues it again. */
const FETCH_404_RETRY_MS = 3_600_000;
/** Documents of one study compared with the PACS per pass (more than any real study holds). */
const MAX_STUDY_DOCS = 10_000;

interface StudyEntry {
  readonly uid: string;
  readonly instances: number | undefined;
}

export class Reconciler {
  constructor(private readonly deps: ReconcileDeps) {}

  async run(opts: ReconcileOptions): Promise<ReconcileSummary> {
    const t0 = performance.now();
    const limiter = opts.limiter ?? new RateLimiter(opts.maxRequestsPerSecond ?? 10);
    const studyPage = opts.studyPageSize ?? 100;
    const instancePage = opts.instancePageSize ?? 500;
    const hasBatch = opts.hasBatchSize ?? 500;
    const signal = opts.signal;
    const s = {
      studiesResumed: 0,
      instances: 0,
      alreadyIndexed: 0,
      missing: 0,
      enqueued: 0,
      alreadyQueued: 0,
      previouslyFailed: 0,
      requeued: 0,
      enqueueFailures: 0,
      invalid: 0,
      notImages: 0,
      pacsRequests: 0,
      pruned: 0,
      prunedStudies: 0,
    };
    const prune = opts.prune ?? true;
    const listedAt = Date.now();
    let pruneRefused: string | undefined;
    const studyErrors: { study: string; reason: string }[] = [];

    const qido = async (path: string, params: Record<string, string | number | undefined>): Promise<DicomJsonDataset[]> => {
      await limiter.take(signal);
      s.pacsRequests++;
      return this.deps.pacs.qido(path, params, signal ? { signal } : {});
    };

    // 1. The study list first (UIDs and sizes only), so progress has a total.
    //    A PACS error here ends the run: there is nothing to reconcile against.
    const studies: StudyEntry[] = [];
    const seen = new Set<string>();
    for (const uid of opts.studyUids ?? []) {
      if (isValidUid(uid) && !seen.has(uid)) {
        seen.add(uid);
        studies.push({ uid, instances: undefined });
      }
    }
    let listTruncated: string | undefined;
    let listedInstances = 0; // kept as the list grows: summing it again per page is quadratic
    for (let offset = 0; !opts.studyUids;) {
      const page = await qido('/studies', {
        limit: studyPage,
        offset,
        includefield: STUDY_INSTANCES,
        ...(opts.since ? { StudyDate: `${opts.since}-` } : {}),
        ...opts.studyQuery,
      }).catch((err: Error) => {
        if (signal?.aborted) throw err;
        throw new Error(`listing the PACS's studies (QIDO /studies, offset ${offset}) failed: ${err.message}`, { cause: err });
      });
      if (page.length === 0) break;
      offset += page.length;
      const before = seen.size;
      for (const ds of page) {
        const uid = stringValue(ds, STUDY_UID);
        if (!isValidUid(uid) || seen.has(uid)) continue;
        seen.add(uid);
        const n = Number(stringValue(ds, STUDY_INSTANCES) ?? (ds[STUDY_INSTANCES]?.Value?.[0] as unknown));
        studies.push({
          uid,
          instances: Number.isFinite(n) && n >= 0 ? n : undefined,
        });
        if (Number.isFinite(n) && n >= 0) listedInstances += n;
      }
      if (seen.size === before) {
        // A full page and nothing new: the PACS ignores `offset` (or the list shifted by a
        // whole page). Paging further would loop forever; stop and say so.
        listTruncated = `the PACS answered offset=${offset - page.length} with studies already listed (does it support QIDO offset?); the study list may be incomplete`;
        break;
      }
      // A large archive takes minutes to list at the rate limit: say how far it got.
      opts.onProgress?.({
        listing: true,
        studiesTotal: studies.length,
        studiesDone: 0,
        instancesTotal: listedInstances,
        instancesSeen: 0,
        missing: 0,
        enqueued: 0,
      });
    }

    if (listTruncated) studyErrors.push({ study: '(study list)', reason: listTruncated });
    const todo = studies.filter((st) => !opts.checkpoint?.has(st.uid));
    s.studiesResumed = studies.length - todo.length;
    let instancesTotal = todo.reduce((a, st) => a + (st.instances ?? 0), 0);
    let studiesDone = 0;
    let stopped: string | undefined;
    const progress = () =>
      opts.onProgress?.({
        studiesTotal: todo.length,
        studiesDone,
        instancesTotal: Math.max(instancesTotal, s.instances),
        instancesSeen: s.instances,
        missing: s.missing,
        enqueued: s.enqueued + s.requeued,
      });
    progress();

    // 2. Each study, page by page: memory stays bounded by one page.
    let pacsDownInRow = 0;
    for (const study of todo) {
      signal?.throwIfAborted();
      let ok = true;
      let seenInStudy = 0;
      let pages = 0;
      /** SOP Instance UID → its series, as the PACS lists them. */
      const sopsOfStudy = new Map<string, string>();
      const studyListedAt = Date.now();
      try {
        for (let offset = 0; ;) {
          const page = await qido(`/studies/${study.uid}/instances`, {
            limit: instancePage,
            offset,
          });
          if (page.length === 0) break;
          offset += page.length;
          pages++;
          const instances: StoredInstance[] = [];
          const knownBefore = sopsOfStudy.size;
          for (const ds of page) {
            const sop = stringValue(ds, SOP_UID);
            const series = stringValue(ds, SERIES_UID);
            const sopClassUid = stringValue(ds, SOP_CLASS);
            // No valid series: the PACS still lists the instance, so its document stays (compared by SOP only).
            if (isValidUid(sop)) sopsOfStudy.set(sop, isValidUid(series) ? series : '');
            if (!isValidUid(sop) || !isValidUid(series)) s.invalid++;
            // Never indexable: enqueuing them fetched and refused them again every time their
            // failed job expired (a week). Stored through the gateway they are refused once,
            // with the reason, in `cbmir failed`.
            else if (isNonImageSopClass(sopClassUid)) s.notImages++;
            else instances.push({ studyInstanceUid: study.uid, seriesInstanceUid: series, sopInstanceUid: sop, sopClassUid });
          }
          s.instances += page.length;
          seenInStudy += page.length;
          for (let i = 0; i < instances.length; i += hasBatch) {
            await this.reconcileBatch(instances.slice(i, i + hasBatch), opts.source, s);
          }
          progress();
          if (sopsOfStudy.size === knownBefore)
            throw new Error(
              `the PACS answered offset=${offset - page.length} with instances already listed (does it support QIDO offset?)`,
            );
        }
        // Only after the whole listing was read: a study cut short says nothing about what is gone,
        // nor one whose listing came out smaller than the PACS's own count of it (a page lost to
        // offset paging while the archive changed, a capped answer).
        const short = study.instances !== undefined && seenInStudy < study.instances;
        // Without the PACS's count (a change-feed run, a PACS without 00201208) a listing paged
        // while the study changed cannot be checked, so only a one-page listing is trusted to prune.
        const unchecked = study.instances === undefined && pages > 1;
        if (prune && sopsOfStudy.size > 0 && !short && !unchecked) s.pruned += await this.pruneStudy(study.uid, sopsOfStudy, studyListedAt);
      } catch (err) {
        if (signal?.aborted) throw err;
        if (err instanceof PassStopped) {
          stopped = err.message;
          this.deps.log?.warn({ err: err.message }, 'reconciler: pass stopped');
          break;
        }
        ok = false;
        studyErrors.push({ study: study.uid, reason: (err as Error).message });
        // The summary names the study; the logger takes UIDs out of the message (core/log.ts).
        this.deps.log?.warn({ err: (err as Error).message }, 'reconciler: study not checked');
        // A PACS that is down fails every study alike: going on would cost each remaining study
        // its own timeout (a hung PACS: 30 s apiece, days for a large archive) under the pass lock.
        if (isTransientPacsError(err) && ++pacsDownInRow >= MAX_PACS_FAILURES_IN_ROW) {
          stopped = `PACS unreachable: ${pacsDownInRow} studies in a row failed (last: ${(err as Error).message}); the rest wait for the next pass`;
          this.deps.log?.warn({ err: (err as Error).message }, 'reconciler: pass stopped');
          studiesDone++;
          progress();
          break;
        }
      }
      if (ok) pacsDownInRow = 0;
      // The PACS's count was a guess (instances may have arrived since): keep the total honest.
      if (study.instances !== undefined && seenInStudy > study.instances) instancesTotal += seenInStudy - study.instances;
      if (ok) opts.checkpoint?.markDone(study.uid);
      studiesDone++;
      progress();
    }

    // 3. Studies the PACS no longer lists at all: only when the whole list was read.
    const wholeList = !opts.studyUids && !opts.since && !opts.studyQuery && !listTruncated;
    if (prune && wholeList && !stopped) {
      try {
        const indexed = await this.deps.index.studyUids();
        // Absent from the paged list is not proof: a study deleted before the offset while paging
        // shifts the next page by one. Each one is asked for by UID before anything is deleted.
        const gone = await this.confirmGone(indexed.filter((u) => !seen.has(u)), qido);
        const bound = Math.max(10, Math.floor(indexed.length / 5));
        if (gone.length > 0 && (seen.size === 0 || gone.length === indexed.length || gone.length > bound)) {
          pruneRefused =
            `the PACS no longer lists ${gone.length} of the ${indexed.length} indexed studies (${seen.size === 0 ? 'it lists none' : gone.length === indexed.length ? 'none of them' : `more than ${bound} at once`}): ` +
            'nothing deleted; if they really were deleted, rebuild the index (docs/indexing.md, "Rebuilding the live version")';
          this.deps.log?.warn({ gone: gone.length, indexed: indexed.length }, 'reconciler: too many indexed studies missing from the PACS; none deleted');
        } else
          for (const uid of gone) {
            signal?.throwIfAborted();
            const n = await this.pruneStudy(uid, new Map(), listedAt);
            s.pruned += n;
            if (n > 0) s.prunedStudies++;
          }
      } catch (err) {
        if (signal?.aborted) throw err;
        if (err instanceof PassStopped) stopped = err.message;
        else pruneRefused = `nothing deleted: ${(err as Error).message}`; // the index or the PACS failed the check
      }
    }

    return {
      studies: studies.length,
      ...s,
      ...(pruneRefused ? { pruneRefused } : {}),
      studyErrors,
      elapsedMs: Math.round(performance.now() - t0),
      ...(stopped ? { stopped } : {}),
      complete: !stopped && studyErrors.length === 0 && s.enqueueFailures === 0,
    };
  }

  /** Of these study UIDs, those the PACS does not list when asked for by UID (≤ 50 a QIDO). */
  private async confirmGone(
    candidates: string[],
    qido: (path: string, params: Record<string, string | number | undefined>) => Promise<DicomJsonDataset[]>,
  ): Promise<string[]> {
    const gone: string[] = [];
    for (let i = 0; i < candidates.length; i += 50) {
      const batch = candidates.slice(i, i + 50);
      const listed = new Set(
        (await qido('/studies', { StudyInstanceUID: batch.join(','), includefield: STUDY_UID, limit: batch.length })).map((d) =>
          stringValue(d, STUDY_UID),
        ),
      );
      gone.push(...batch.filter((u) => !listed.has(u)));
    }
    return gone;
  }

  /**
   * Delete the study's documents whose instance the PACS does not list (or lists in another
   * series), except those indexed after `listedAt`: stored while the PACS was being listed.
   */
  private async pruneStudy(study: string, pacs: ReadonlyMap<string, string>, listedAt: number): Promise<number> {
    const { index } = this.deps;
    try {
      const refs = await index.listStudy(study, MAX_STUDY_DOCS);
      // A listed SOP whose series the PACS did not give ('') is kept; so is what was indexed after
      // the listing, with a margin for another machine's clock.
      const before = listedAt - CLOCK_MARGIN_MS;
      const stale = refs.filter((r) => {
        const listed = pacs.get(r.sopInstanceUid);
        const moved = listed === undefined || (listed !== '' && listed !== r.seriesInstanceUid);
        return moved && !(Date.parse(r.indexedAt) >= before);
      });
      return stale.length === 0 ? 0 : await index.deleteMany(stale.map((r) => r.sopInstanceUid));
    } catch (err) {
      throw new PassStopped(`index failed: ${(err as Error).message}`);
    }
  }

  /** has() → job state → enqueue. Throws PassStopped when the queue or the index is unreachable. */
  private async reconcileBatch(instances: StoredInstance[], source: IndexJobSource, s: Counters): Promise<void> {
    if (instances.length === 0) return;
    const { index, enqueuer } = this.deps;
    let present: Set<string>;
    try {
      present = await index.has(instances.map((i) => i.sopInstanceUid));
    } catch (err) {
      throw new PassStopped(`index failed: ${(err as Error).message}`);
    }
    const missing = instances.filter((i) => !present.has(i.sopInstanceUid));
    s.alreadyIndexed += instances.length - missing.length;
    s.missing += missing.length;
    if (missing.length === 0) return;

    let states: JobState[];
    try {
      states = await jobStates(
        enqueuer.queue,
        missing.map((i) => indexJobId(i.sopInstanceUid, enqueuer.modelVersion)),
      );
    } catch (err) {
      s.enqueueFailures += missing.length;
      throw new PassStopped(`queue failed: ${(err as Error).message}`);
    }
    const toAdd: StoredInstance[] = [];
    const toRequeue: StoredInstance[] = [];
    missing.forEach((inst, k) => {
      const st = states[k];
      if (st === 'unknown') toAdd.push(inst);
      else if (st === 'failed') s.previouslyFailed++;
      // A job failed only because no worker of its version came (index-worker.ts): this pass runs
      // that version now, so it is queued again rather than left failed for a week. So is one
      // WADO said was not there, an hour later, when QIDO lists the instance all the same.
      else if (st === 'completed-indexed' || st === 'failed-other-model' || st === 'failed-not-found') toRequeue.push(inst);
      else s.alreadyQueued++;
    });
    if (toRequeue.length) {
      // has() ran before the state check: a job may have completed in between. Look again
      // before throwing its record away, so a fresh document is never indexed twice.
      const nowPresent = await index.has(toRequeue.map((i) => i.sopInstanceUid)).catch((err: Error) => {
        throw new PassStopped(`index failed: ${err.message}`);
      });
      const gone = toRequeue.filter((i) => !nowPresent.has(i.sopInstanceUid));
      s.alreadyIndexed += toRequeue.length - gone.length;
      s.missing -= toRequeue.length - gone.length;
      try {
        for (const i of gone) await enqueuer.queue.remove(indexJobId(i.sopInstanceUid, enqueuer.modelVersion));
      } catch (err) {
        throw new PassStopped(`queue failed: ${(err as Error).message}`);
      }
      toRequeue.length = 0;
      toRequeue.push(...gone);
    }
    for (const [list, key] of [
      [toAdd, 'enqueued'],
      [toRequeue, 'requeued'],
    ] as const) {
      if (list.length === 0) continue;
      const r = await enqueuer.enqueue(list, source);
      s[key] += r.enqueued;
      if (r.failed) {
        s.enqueueFailures += r.failed;
        throw new PassStopped(`queue failed: ${r.error ?? 'enqueue failed'}`);
      }
    }
  }
}

type Counters = {
  alreadyIndexed: number;
  missing: number;
  enqueued: number;
  alreadyQueued: number;
  previouslyFailed: number;
  requeued: number;
  enqueueFailures: number;
};

type JobState = 'unknown' | 'failed' | 'failed-other-model' | 'failed-not-found' | 'completed-indexed' | 'completed-other' | 'pending';

/** Where each job id stands. ioredis pipelines the concurrent calls on one connection. */
async function jobStates(queue: Queue<IndexJobData>, ids: readonly string[]): Promise<JobState[]> {
  return Promise.all(
    ids.map(async (id): Promise<JobState> => {
      const st = await queue.getJobState(id);
      if (st === 'unknown') return 'unknown';
      if (st === 'failed') {
        const job = await queue.getJob(id);
        if (!job) return 'unknown';
        const step = classifyFailure(job.failedReason ?? '').step;
        if (step === 'other-model') return 'failed-other-model';
        // "Not found" from WADO while QIDO lists the instance (a replica behind, a proxy's
        // wrong turn): the listing says otherwise, so the job gets another go, once an hour at most.
        if (step === 'fetch' && / 404 /.test(job.failedReason ?? '') && Date.now() - (job.finishedOn ?? Date.now()) > FETCH_404_RETRY_MS)
          return 'failed-not-found';
        return 'failed';
      }
      if (st === 'completed') {
        const job = await queue.getJob(id);
        if (!job) return 'unknown'; // removed in between (removeOnComplete)
        return (job.returnvalue as IndexJobResult | undefined)?.status === 'indexed' ? 'completed-indexed' : 'completed-other';
      }
      return 'pending';
    }),
  );
}

/** One line for logs and the CLI. */
export function describeSummary(r: ReconcileSummary): string {
  return (
    `${r.studies} studies${r.studiesResumed ? ` (${r.studiesResumed} already done)` : ''}, ${r.instances} instances: ` +
    `${r.alreadyIndexed} indexed, ${r.missing} missing → ${r.enqueued} enqueued, ${r.requeued} re-enqueued, ` +
    `${r.alreadyQueued} already queued, ${r.previouslyFailed} failed before` +
    `${r.enqueueFailures ? `, ${r.enqueueFailures} NOT enqueued (queue failed)` : ''}` +
    `${r.studyErrors.length ? `, ${r.studyErrors.length} studies not checked` : ''}` +
    `${r.stopped ? `, STOPPED (${r.stopped})` : ''}` +
    `${r.invalid ? `, ${r.invalid} listed without valid UIDs` : ''}` +
    `${r.notImages ? `, ${r.notImages} not images (skipped)` : ''}` +
    `${r.pruned ? `, ${r.pruned} documents deleted (gone from the PACS${r.prunedStudies ? `, ${r.prunedStudies} whole studies` : ''})` : ''}` +
    `${r.pruneRefused ? `, NOT pruned: ${r.pruneRefused}` : ''} — ${(r.elapsedMs / 1000).toFixed(1)} s, ${r.pacsRequests} PACS requests`
  );
}
