/**
 * `cbmir backfill [--resume] [--rate N] [--since YYYYMMDD] [--json]`: one reconciler
 * pass over the whole PACS (workers/reconciler.ts) for the configured model version,
 * with progress on stderr (a bar on a terminal, elsewhere a line every 30 s; none with
 * --no-progress), the listing of the PACS's studies included, and a summary. Enqueues
 * only: the workers (`cbmir worker`) do the indexing.
 *
 * Resumable: every study checked is appended to a checkpoint file in CBMIR_DATA_DIR;
 * after an interruption (Ctrl-C, SIGTERM, crash, PACS outage), `--resume` skips those. A run
 * that completes removes its checkpoint.
 *
 * Exit status: 0 when every study was checked and every missing instance enqueued;
 * 1 when some were not (the summary says which; rerun with --resume); 2 bad usage.
 */
import { Command, InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';
import { createVectorIndex } from '../core/index/factory.js';
import { PacsClient } from '../core/pacs/client.js';
import { IndexEnqueuer } from '../core/queue/index-enqueuer.js';
import type { VectorIndex } from '../core/index/types.js';
import { checkedManifestOrExit, configOrExit, dateOption, embeddedIndexOrExit, exitStatusHelp, redisReachable } from './command-config.js';
import { Checkpoint } from './reconcile/checkpoint.js';
import { describeSummary, Reconciler, type ReconcileProgress } from './reconciler.js';
import { progressLines } from './progress-lines.js';

/** Slowest crawl --rate allows: one request every 100 s (below, a crawl of any archive would never end). */
export const MIN_RATE = 0.01;

export const parseRate = (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < MIN_RATE || n > 10_000)
    throw new InvalidArgumentError(`--rate must be a number of PACS requests per second, ${MIN_RATE}..10000`);
  return n;
};

/** --match keys that name the Study Date, which --since sets too. */
const STUDY_DATE_KEYS = new Set(['studydate', '00080020']);

/** Options that cannot go together (the second would be ignored); undefined when none. */
export function backfillConflict(o: { since?: string; match?: Record<string, string> }): string | undefined {
  const date = Object.keys(o.match ?? {}).find((k) => STUDY_DATE_KEYS.has(k.toLowerCase()));
  if (o.since !== undefined && date !== undefined)
    return `--since and --match ${date}=… both set the Study Date (--match's would replace --since's): give one of them`;
  return undefined;
}

export const parseDate = dateOption('--since');

/**
 * Ctrl-C and SIGTERM (systemd, docker stop, a CI timeout) stop a crawl alike: the checkpoint
 * is kept and the --resume line printed. Returns the function that stops listening.
 */
export function interruptOnSignals(abort: AbortController): () => void {
  const onSignal = () => abort.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}

/** A progress bar on stderr when it is a terminal; undefined otherwise. */
export function reconcileBar(enabled: boolean): { update(p: ReconcileProgress): void; stop(): void } | undefined {
  if (!enabled || !process.stderr.isTTY) return undefined;
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: ' {bar} {value}/{total} instances | studies {studies} | {missing} missing | {enqueued} enqueued | {eta_formatted} left',
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  // While the study list is paged there is no total yet: a counter of the studies listed.
  let listing: cliProgress.SingleBar | undefined;
  return {
    update(p) {
      if (p.listing) {
        if (!listing) {
          listing = new cliProgress.SingleBar({
            stream: process.stderr,
            format: ' listing the PACS studies: {value} so far',
            hideCursor: true,
            clearOnComplete: true,
          });
          listing.start(0, 0);
        }
        listing.update(p.studiesTotal);
        return;
      }
      listing?.stop();
      listing = undefined;
      const payload = {
        studies: `${p.studiesDone}/${p.studiesTotal}`,
        missing: p.missing,
        enqueued: p.enqueued,
      };
      if (!started) {
        bar.start(p.instancesTotal, p.instancesSeen, payload);
        started = true;
      }
      bar.setTotal(p.instancesTotal);
      bar.update(p.instancesSeen, payload);
    },
    stop: () => {
      listing?.stop();
      if (started) bar.stop();
    },
  };
}

/**
 * Progress of a crawl: the bar on a terminal (unless `bar` is false), otherwise, when `lines`,
 * a line on stderr every `everyMs`, so that a crawl of hours under nohup or systemd is not silent.
 */
export function reconcileProgress(o: {
  bar: boolean;
  lines: boolean;
  prefix: string;
  everyMs?: number;
}): { update(p: ReconcileProgress): void; stop(): void } | undefined {
  const bar = reconcileBar(o.bar);
  if (bar || !o.lines) return bar;
  return progressLines<ReconcileProgress>(
    (p) =>
      p.listing
        ? `${o.prefix}: listing the PACS studies: ${p.studiesTotal} so far`
        : `${o.prefix}: ${p.studiesDone}/${p.studiesTotal} studies, ${p.instancesSeen}/${p.instancesTotal} instances, ${p.missing} missing, ${p.enqueued} enqueued`,
    o.everyMs,
  );
}

/** `--match Key=value` (repeatable) → QIDO matching attributes. */
export const parseMatch = (v: string, prev: Record<string, string> = {}): Record<string, string> => {
  const m = /^([A-Za-z][A-Za-z0-9]*|[0-9A-Fa-f]{8})=(.+)$/.exec(v);
  if (!m) throw new InvalidArgumentError('--match must be a QIDO attribute and value, e.g. ModalitiesInStudy=CT');
  return { ...prev, [m[1] as string]: m[2] as string };
};

interface BackfillCliOptions {
  match?: Record<string, string>;
  resume?: boolean;
  rate?: number;
  since?: string;
  namespace?: string;
  json?: boolean;
  progress: boolean;
}

export function backfillCommand(): Command {
  return new Command('backfill')
    .description('crawl the PACS (QIDO, paged, rate-limited) and enqueue every instance missing from the index')
    .option('--resume', 'skip the studies an interrupted run already checked (checkpoint in CBMIR_DATA_DIR)')
    .option('--rate <n>', `at most n PACS requests per second, ${MIN_RATE}..10000 (default CBMIR_RECONCILE_RATE, 10)`, parseRate)
    .option('--since <YYYYMMDD>', 'only studies with StudyDate on or after this date', parseDate)
    .option('--match <attr=value>', 'only studies matching this QIDO attribute (repeatable), e.g. ModalitiesInStudy=CT', parseMatch)
    .option(
      '--namespace <ns>',
      'enqueue to cbmir-index-<ns> instead of cbmir-index, which only `cbmir worker --namespace <ns>` consumes (tests, a separate pool of workers)',
    )
    .option('--json', 'print the summary as one JSON line')
    .option('--no-progress', 'no progress (a bar on a terminal, elsewhere a line every 30 s)')
    .addHelpText(
      'after',
      exitStatusHelp([
        '0  every study checked and every missing instance enqueued',
        '1  some were not (the summary says which; rerun with --resume), interrupted, or Redis or the index did not answer',
        '2  bad usage or configuration: options that conflict, no embedded index in CBMIR_DATA_DIR, CBMIR_MODEL not the live version',
      ]),
    )
    .action(async (o: BackfillCliOptions, cmd: Command) => {
      const conflict = backfillConflict(o);
      if (conflict) cmd.error(`cbmir backfill: ${conflict}`, { exitCode: 2 });
      const config = configOrExit();
      const manifest = await checkedManifestOrExit(config.model, 'backfill');
      // Nothing is created (index store, checkpoint) before the index is known to be there and
      // Redis answers: a run with the wrong CBMIR_DATA_DIR or Redis leaves no trace.
      embeddedIndexOrExit(config, 'backfill');
      let connectionError: Error | undefined;
      const enqueuer = new IndexEnqueuer(config.redisUrl, manifest.version, {
        ...(o.namespace ? { namespace: o.namespace } : {}),
        onConnectionError: (err) => (connectionError = err),
      });
      const pacs = new PacsClient({
        url: config.pacs.url,
        user: config.pacs.user,
        password: config.pacs.password,
        timeoutMs: config.pacs.timeoutMs,
        connections: 2,
      });
      const abort = new AbortController();
      const stopListening = interruptOnSignals(abort);
      let index: VectorIndex | undefined;
      let checkpoint: Checkpoint | undefined;
      let bar: ReturnType<typeof reconcileProgress>;
      try {
        await redisReachable(() => enqueuer.ping(), config.redisUrl, {
          lastError: () => connectionError,
          isReady: () => enqueuer.connected,
          signal: abort.signal,
        });
        index = createVectorIndex(config);
        bar = reconcileProgress({ bar: o.progress && !o.json, lines: o.progress, prefix: 'cbmir backfill' });
        checkpoint = Checkpoint.open(Checkpoint.fileFor(config.dataDir, 'backfill', manifest.version, o.namespace), Boolean(o.resume));
        // Backfill fills the live version. Jobs stamped with another one would be put back by
        // every worker of the live model (and storage for it created on the way): a new model
        // goes in with `cbmir reindex`.
        const live = await index.liveVersion();
        if (live && live !== manifest.version) {
          bar?.stop();
          process.stderr.write(
            `cbmir backfill: CBMIR_MODEL is model ${manifest.version}, but the index's live version is ${live}. ` +
              `Point CBMIR_MODEL at the manifest of ${live} (as the workers are), or index ${manifest.version} with \`cbmir reindex --model <its manifest>\`\n`,
          );
          process.exitCode = 2;
          return;
        }
        await index.ensure(manifest.dims, manifest.version);
        const summary = await new Reconciler({ pacs, index, enqueuer }).run({
          source: 'backfill',
          maxRequestsPerSecond: o.rate ?? config.reconcile.maxRequestsPerSecond,
          ...(o.since ? { since: o.since } : {}),
          ...(o.match ? { studyQuery: o.match } : {}),
          checkpoint,
          signal: abort.signal,
          onProgress: (p) => bar?.update(p),
        });
        bar?.stop();
        if (summary.complete) checkpoint.remove();
        if (o.json) {
          process.stdout.write(
            `${JSON.stringify({ model: manifest.version, checkpoint: summary.complete ? null : checkpoint.file, ...summary })}\n`,
          );
        } else {
          process.stdout.write(`cbmir backfill (model ${manifest.version}, ${index.backend}): ${describeSummary(summary)}\n`);
          for (const e of summary.studyErrors.slice(0, 20)) process.stdout.write(`  study ${e.study}: ${e.reason}\n`);
          if (!summary.complete) process.stdout.write(`  incomplete: rerun with --resume (checkpoint ${checkpoint.file})\n`);
        }
        process.exitCode = summary.complete ? 0 : 1;
      } catch (err) {
        bar?.stop();
        if (abort.signal.aborted) {
          process.stderr.write(`cbmir backfill: interrupted after ${checkpoint?.size ?? 0} studies; continue with --resume\n`);
          process.exitCode = 1;
          return;
        }
        throw err;
      } finally {
        stopListening();
        await enqueuer.close();
        await index?.close();
        await pacs.close();
      }
    });
}
