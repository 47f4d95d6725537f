/**
 * `cbmir reindex --model <manifest>`: index every instance of the PACS with a new
 * model version, into that version's own storage beside the live one (an index
 * per version behind an alias in Elasticsearch, a table per version in the embedded
 * store: core/index/types.ts), then make it live with one atomic swap. Searches keep
 * using the old version until the swap.
 *
 *   1. ensure storage for the new version (dims from its manifest)
 *   2. start in-process workers of the new model on a queue of its own
 *      (`reindex-<version>`, so workers of the live model never see these jobs;
 *      more machines can help with `CBMIR_MODEL=<manifest> cbmir worker --namespace reindex-<version>`)
 *   3. crawl the PACS with the reconciler (rate-limited, resumable with --resume)
 *   4. wait until the queue is drained, with a progress bar; then one more crawl for
 *      what arrived meanwhile
 *   5. swap the alias — only if nothing is left to retry (retryable failures mean the
 *      PACS or index was down: fix, `cbmir failed --retry --namespace reindex-<v>`,
 *      then `cbmir reindex --swap-only`); `--drop-old` then removes the old version.
 *      With `--match` only part of the PACS is indexed, so nothing is swapped: the
 *      version goes live with a later `--swap-only` (after the other parts).
 *
 * `cbmir reindex --drop <version>` (alone) deletes a version that is not live: the one a
 * swap without --drop-old left behind. A swap only knows the version it replaces, so a
 * later --drop-old has nothing to go by.
 *
 * After the swap, point the gateway and the workers at the new manifest (CBMIR_MODEL):
 * the STOW hook stamps jobs with the gateway's model version.
 */
import { rmSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';
import { Queue } from 'bullmq';
import { createVectorIndex } from '../core/index/factory.js';
import type { VectorIndex } from '../core/index/types.js';
import { queueName, type IndexJobData } from '../core/jobs.js';
import { createLogger, type Logger } from '../core/log.js';
import { freshSecretProblem, loadPatientKeySecret } from '../core/index/patient-key.js';
import { PacsClient } from '../core/pacs/client.js';
import { IndexEnqueuer } from '../core/queue/index-enqueuer.js';
import { producerConnection, quiet } from '../core/queue/redis.js';
import { interruptOnSignals, parseMatch, parseRate, reconcileProgress } from './backfill-command.js';
import {
  checkedManifestOrExit,
  configOrExit,
  embeddedIndexOrExit,
  exitStatusHelp,
  invocationPath,
  redisReachable,
} from './command-config.js';
import { EmbeddingPipeline, workerDecodeOptions } from './embedding-pipeline.js';
import { listAllFailed, listFailed } from './failed-jobs.js';
import { startWorkers, type RunningWorkers } from './index-worker.js';
import { Checkpoint } from './reconcile/checkpoint.js';
import { describeSummary, Reconciler, type ReconcileSummary } from './reconciler.js';

interface ReindexCliOptions {
  match?: Record<string, string>;
  model?: string;
  swapOnly?: boolean;
  force?: boolean;
  dropOld?: boolean;
  drop?: string;
  resume?: boolean;
  rate?: number;
  localWorker: boolean;
  concurrency?: number;
  json?: boolean;
  progress: boolean;
}

/**
 * Why `--swap-only` must not make a version live: it holds nothing, less than the live one
 * (an interrupted reindex), or its queue still has work or retryable failures that no process
 * will finish once this one has swapped (and, with --drop-old, deleted the old version).
 */
export function swapBlockers(s: { newCount: number; liveCount: number; pending: number; retryable: number }): string[] {
  const out: string[] = [];
  if (s.newCount === 0) out.push('it holds 0 documents');
  else if (s.newCount < s.liveCount) out.push(`it holds ${s.newCount} documents, fewer than the ${s.liveCount} of the live version`);
  if (s.pending > 0) out.push(`${s.pending} jobs are still queued or running for it`);
  if (s.retryable > 0) out.push(`${s.retryable} of its jobs failed and can be retried`);
  return out;
}

/**
 * Whether a full (not --match) reindex run may swap: everything crawled and nothing left to
 * retry, and — where a version is live — the new one holds at least as many documents. A crawl
 * that saw an empty or partial PACS (another PACS URL, a service login that reads only some
 * studies, documents refused one by one) is "complete" by itself; swapping it, and with
 * --drop-old deleting the live version, would lose the index.
 */
export function reindexBlockers(s: {
  crawled: boolean;
  retryable: number;
  indexed: number;
  instances: number;
  liveCount: number;
}): string[] {
  const out: string[] = [];
  if (!s.crawled) out.push('the PACS was not crawled completely');
  if (s.retryable > 0) out.push(`${s.retryable} of its jobs failed and can be retried`);
  if (s.liveCount > 0) {
    if (s.indexed === 0) out.push(`it holds 0 documents (${s.instances} instances crawled) while the live version holds ${s.liveCount}`);
    else if (s.indexed < s.liveCount)
      out.push(
        `it holds ${s.indexed} documents, fewer than the ${s.liveCount} of the live version ` +
          '(if images were deleted from the PACS since they were indexed, that is expected: pass --force)',
      );
  } else if (s.indexed === 0 && s.instances > 0) out.push(`none of the ${s.instances} instances crawled was indexed`);
  return out;
}

/** Queue namespace of a reindex run: its own queue, invisible to workers of the live model. */
export function reindexNamespace(modelVersion: string): string {
  return `reindex-${modelVersion}`;
}

const say = (json: boolean | undefined, msg: string) => {
  if (!json) process.stderr.write(`cbmir reindex: ${msg}\n`);
};

/**
 * The reconciler's and the local worker's logger. On stderr: stdout carries the outcome
 * alone (`--json`: one JSON line).
 */
export function reindexLogger(level: string): Logger {
  return createLogger(level === 'info' ? 'warn' : level, 'reindex', process.stderr);
}

/**
 * `--drop <version>`: delete a stored version that is not live. The live one, or one the store
 * does not hold, is refused (the command exits 2): a typo must not look like a job done.
 */
export async function dropVersion(
  index: Pick<VectorIndex, 'liveVersion' | 'versions' | 'dropVersion'>,
  version: string,
): Promise<{ ok: true; live: string | undefined } | { ok: false; message: string }> {
  const live = await index.liveVersion();
  const stored = await index.versions();
  if (version === live)
    return { ok: false, message: `${version} is the live version: not dropped (make another version live first, with --swap-only)` };
  if (!stored.includes(version)) return { ok: false, message: `no version ${version} is stored (stored: ${stored.join(', ') || 'none'})` };
  await index.dropVersion(version);
  return { ok: true, live };
}

/** Options a --swap-only run has no use for: it crawls nothing and runs no worker. */
const CRAWL_OPTIONS = [
  ['rate', '--rate'],
  ['resume', '--resume'],
  ['match', '--match'],
  ['localWorker', '--no-local-worker'],
  ['concurrency', '--concurrency'],
] as const;

/**
 * Options given together where one would be ignored (exit 2 naming them): --swap-only does not
 * crawl; a --match run never swaps, so it has nothing to --force or --drop-old.
 */
export function reindexConflict(given: (attribute: string) => boolean, swapOnly: boolean, match: boolean): string | undefined {
  if (swapOnly) {
    const crawl = CRAWL_OPTIONS.filter(([a]) => given(a)).map(([, flag]) => flag);
    if (crawl.length > 0) return `--swap-only crawls nothing and runs no worker: not with ${crawl.join(', ')}`;
  }
  if (match) {
    const swap = (['force', 'dropOld'] as const).filter((a) => given(a)).map((a) => (a === 'force' ? '--force' : '--drop-old'));
    if (swap.length > 0)
      return `--match indexes part of the PACS and never swaps, so ${swap.join(' and ')} would do nothing: pass ${swap.length > 1 ? 'them' : 'it'} to the --swap-only run that makes the version live`;
  }
  return undefined;
}

export function reindexCommand(): Command {
  return new Command('reindex')
    .description('index the whole PACS with another model version beside the live one, then swap it live')
    .option('--model <manifest>', 'the new model: a manifest.json (or .onnx) file (required but with --drop)')
    .option('--swap-only', 'only make the (already indexed) version live; refused while it is incomplete')
    .option('--force', 'swap even a version that holds fewer documents than the live one or has work left')
    .option('--drop-old', 'after the swap, delete the previous live version')
    .option('--drop <version>', 'only delete this stored version, which must not be live (e.g. the one an earlier swap replaced)')
    .option('--resume', 'skip the studies an interrupted reindex already crawled')
    .option('--rate <n>', 'at most n PACS requests per second while crawling, 0.01..10000 (default CBMIR_RECONCILE_RATE, 10)', parseRate)
    .option(
      '--match <attr=value>',
      'only studies matching this QIDO attribute (repeatable; staged rollouts); never swaps: finish with --swap-only',
      parseMatch,
    )
    .option('--no-local-worker', 'do not embed in this process (external `cbmir worker --namespace reindex-<version>` do)')
    .option('--concurrency <n>', 'jobs in flight in the local worker (default CBMIR_WORKER_CONCURRENCY)', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 256) throw new InvalidArgumentError('--concurrency must be 1..256');
      return n;
    })
    .option('--json', 'print the outcome as one JSON line')
    .option('--no-progress', 'no progress (bars on a terminal, elsewhere a line every 30 s)')
    .addHelpText(
      'after',
      exitStatusHelp([
        '0  the version was made live (or is live already; with --match: indexed), or --drop dropped it',
        '1  not made live (the reason is printed: incomplete, retryable failures, fewer documents), interrupted,',
        '   --drop-old with nothing to drop, or Redis or the index did not answer',
        '2  bad usage or configuration: options that conflict, no embedded index in CBMIR_DATA_DIR, a model that does not load,',
        '   --swap-only of a version without storage, --drop of the live version or of one not stored',
      ]),
    )
    .action(async (o: ReindexCliOptions, cmd: Command) => {
      if (o.drop !== undefined) {
        const others = cmd.options
          .filter((opt) => cmd.getOptionValueSource(opt.attributeName()) === 'cli' && !['drop', 'json'].includes(opt.attributeName()))
          .map((opt) => opt.long ?? opt.flags);
        if (others.length > 0)
          cmd.error(`cbmir reindex: --drop goes alone (with --json at most), not with ${others.join(', ')}`, { exitCode: 2 });
        const config = configOrExit();
        // What --drop deletes is in the store the services use: a missing one is a wrong CBMIR_DATA_DIR, not created empty here.
        embeddedIndexOrExit(config, 'reindex');
        const index = createVectorIndex(config);
        try {
          const r = await dropVersion(index, o.drop);
          if (!r.ok) {
            process.stderr.write(`cbmir reindex: ${r.message}\n`);
            process.exitCode = 2;
            return;
          }
          // A later reindex of that version starts over; --resume would skip the studies of the storage just deleted.
          rmSync(Checkpoint.fileFor(config.dataDir, 'reindex', o.drop), { force: true });
          process.stdout.write(
            o.json
              ? `${JSON.stringify({ dropped: o.drop, live: r.live ?? null })}\n`
              : `cbmir reindex: dropped ${o.drop} (live: ${r.live ?? 'none'})\n`,
          );
        } finally {
          await index.close();
        }
        return;
      }
      if (o.model === undefined)
        cmd.error("cbmir reindex: required option '--model <manifest>' not specified (or --drop <version>)", { exitCode: 2 });
      const conflict = reindexConflict((name) => cmd.getOptionValueSource(name) === 'cli', Boolean(o.swapOnly), o.match !== undefined);
      if (conflict) cmd.error(`cbmir reindex: ${conflict}`, { exitCode: 2 });
      if (!o.localWorker && o.concurrency !== undefined)
        cmd.error(
          'cbmir reindex: --concurrency sets the local worker, and --no-local-worker runs none: set CBMIR_WORKER_CONCURRENCY for the `cbmir worker` processes instead',
          { exitCode: 2 },
        );
      const modelRef = o.model;
      const config = configOrExit();
      const manifest = await checkedManifestOrExit(invocationPath(modelRef), 'reindex', '--model');
      const version = manifest.version;
      // The new version's storage is created (below) in the store the services read, beside the
      // live version: a store that is not there means another CBMIR_DATA_DIR than theirs.
      embeddedIndexOrExit(config, 'reindex');
      const index = createVectorIndex(config);
      let oldLive: string | undefined;
      try {
        oldLive = await index.liveVersion();
      } catch (err) {
        await index.close();
        throw err;
      }
      const finish = async (swapped: boolean, extra: Record<string, unknown> = {}) => {
        let dropped: string | undefined;
        if (swapped && o.dropOld && oldLive && oldLive !== version) {
          await index.dropVersion(oldLive);
          dropped = oldLive;
          say(o.json, `dropped ${oldLive}`);
        }
        if (o.json)
          process.stdout.write(
            `${JSON.stringify({ model: version, previous: oldLive ?? null, swapped, dropped: dropped ?? null, ...extra })}\n`,
          );
        else
          process.stdout.write(
            `cbmir reindex: ${
              swapped
                ? `${version} is live (was ${oldLive ?? 'none'})`
                : oldLive === version
                  ? `${version} is already live; nothing swapped`
                  : `${version} NOT made live; ${oldLive ?? 'none'} stays live`
            }\n`,
          );
      };
      // Nothing to swap, so --drop-old has no "previous" version to go by: it drops nothing, and
      // says so (exit 1) while other versions are stored.
      const finishAlreadyLive = async (hint: string) => {
        say(o.json, `${version} is already live${hint}`);
        const others = o.dropOld ? (await index.versions()).filter((v) => v !== version) : [];
        if (others.length > 0) {
          process.stderr.write(
            `cbmir reindex: --drop-old drops the version a swap replaces, and nothing was swapped: nothing dropped. ` +
              `Delete an earlier version with \`cbmir reindex --drop <version>\` (stored besides ${version}: ${others.join(', ')})\n`,
          );
          process.exitCode = 1;
        }
        await finish(false, { alreadyLive: true });
      };

      if (oldLive === version) {
        try {
          await finishAlreadyLive(o.swapOnly ? '' : '; use `cbmir backfill` to fill gaps');
        } finally {
          await index.close();
        }
        return;
      }

      if (o.swapOnly) {
        const namespace = reindexNamespace(version);
        let connectionError: Error | undefined;
        const queueConn = quiet(producerConnection(config.redisUrl), (err) => (connectionError = err));
        const queue = new Queue<IndexJobData>(queueName('index', namespace), { connection: queueConn });
        queue.on('error', () => undefined);
        try {
          if (!(await index.versions()).includes(version))
            cmd.error(`cbmir reindex: version ${version} has no storage yet: run the reindex without --swap-only first`, { exitCode: 2 });
          const liveCount = oldLive ? await index.count() : 0; // unbound: the live version
          await index.ensure(manifest.dims, version); // exists: binds, creates nothing
          await redisReachable(() => queueConn.ping(), config.redisUrl, {
            lastError: () => connectionError,
            isReady: () => queueConn.status === 'ready',
          });
          const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'waiting-children');
          const blockers = swapBlockers({
            newCount: await index.count(),
            liveCount,
            pending: Object.values(c).reduce((a, b) => a + b, 0),
            retryable: (await listAllFailed(queue)).filter((f) => f.view.retryable).length,
          });
          if (blockers.length > 0 && !o.force) {
            process.stderr.write(
              `cbmir reindex: not swapping ${version}: ${blockers.join('; ')}. ` +
                `Finish it with \`cbmir failed --retry --namespace ${namespace}\` and \`cbmir reindex --model ${modelRef} --resume\`, ` +
                `or pass --force to swap it as it is\n`,
            );
            await finish(false);
            process.exitCode = 1;
            return;
          }
          await index.swapAlias(version);
          await finish(true);
        } finally {
          await queue.close().catch(() => undefined);
          queueConn.disconnect();
          await index.close();
        }
        return;
      }
      const log = reindexLogger(config.logLevel);
      const namespace = reindexNamespace(version);
      const pacs = new PacsClient({
        url: config.pacs.url,
        user: config.pacs.user,
        password: config.pacs.password,
        timeoutMs: config.pacs.timeoutMs,
      });
      let connectionError: Error | undefined;
      const enqueuer = new IndexEnqueuer(config.redisUrl, version, {
        namespace,
        onConnectionError: (err) => (connectionError = err),
      });
      const queueConn = quiet(producerConnection(config.redisUrl));
      const queue = new Queue<IndexJobData>(queueName('index', namespace), {
        connection: queueConn,
      });
      queue.on('error', () => undefined);
      let workers: RunningWorkers | undefined;
      let pipeline: EmbeddingPipeline | undefined;
      const abort = new AbortController();
      const stopListening = interruptOnSignals(abort);
      try {
        await redisReachable(() => enqueuer.ping(), config.redisUrl, {
          lastError: () => connectionError,
          isReady: () => enqueuer.connected,
          signal: abort.signal,
        });
        const liveCount = oldLive ? await index.count() : 0; // still unbound: the live version
        const secretProblem = o.localWorker
          ? freshSecretProblem(process.env.CBMIR_PATIENT_KEY_SECRET, config.dataDir, liveCount)
          : undefined;
        if (secretProblem) {
          process.stderr.write(`cbmir reindex: ${secretProblem}\n`);
          process.exitCode = 2;
          return;
        }
        await index.ensure(manifest.dims, version);
        if (o.localWorker) {
          // The same worker settings as `cbmir worker` (an admin who lowered them to avoid OOM meant them here too).
          pipeline = await EmbeddingPipeline.create({
            model: invocationPath(modelRef),
            batchSize: config.worker.batchSize,
            batchWaitMs: config.worker.batchWaitMs,
            ...(config.worker.ortThreads > 0 ? { threads: config.worker.ortThreads } : {}),
            decode: workerDecodeOptions(config),
          });
          workers = await startWorkers({
            redisUrl: config.redisUrl,
            pipeline,
            index,
            pacs,
            patientKeySecret: loadPatientKeySecret(process.env.CBMIR_PATIENT_KEY_SECRET, config.dataDir),
            log,
            concurrency: o.concurrency ?? config.worker.concurrency,
            decodeConcurrency: config.worker.decodeConcurrency,
            maxInstanceBytes: config.worker.maxInstanceBytes,
            embedTimeoutMs: config.similar.embedTimeoutMs,
            namespace,
          });
        }
        const reconciler = new Reconciler({ pacs, index, enqueuer, log });
        const checkpoint = Checkpoint.open(Checkpoint.fileFor(config.dataDir, 'reindex', version), Boolean(o.resume));
        const crawl = async (cp: Checkpoint | undefined): Promise<ReconcileSummary> => {
          const bar = reconcileProgress({ bar: o.progress && !o.json, lines: o.progress, prefix: 'cbmir reindex' });
          try {
            return await reconciler.run({
              source: 'reindex',
              maxRequestsPerSecond: o.rate ?? config.reconcile.maxRequestsPerSecond,
              ...(cp ? { checkpoint: cp } : {}),
              ...(o.match ? { studyQuery: o.match } : {}),
              signal: abort.signal,
              onProgress: (p) => bar?.update(p),
            });
          } finally {
            bar?.stop();
          }
        };
        say(o.json, `crawling the PACS for model ${version} (live: ${oldLive ?? 'none'})`);
        const first = await crawl(checkpoint);
        say(o.json, describeSummary(first));
        await drain(queue, index, first.instances - first.invalid - first.notImages, o, abort.signal);
        // What arrived during the first crawl (the STOW hook stamps the live version).
        const second = await crawl(undefined);
        if (second.enqueued + second.requeued > 0) {
          say(o.json, `catch-up: ${describeSummary(second)}`);
          await drain(queue, index, second.instances - second.invalid - second.notImages, o, abort.signal);
        }
        const failed = await listFailed(queue, 100_000);
        const retryable = failed.jobs.filter((j) => j.retryable).length;
        const indexed = await index.count();
        const crawled = first.complete && second.complete;
        const complete = crawled && retryable === 0 && (indexed > 0 || second.instances === 0);
        // A --match run covers part of the PACS: making it live would hide every other image from
        // search, and it is compared with the live version only when its parts are swapped in
        // together (--swap-only).
        const blockers = o.match ? [] : reindexBlockers({ crawled, retryable, indexed, instances: second.instances, liveCount });
        const swap = !o.match && (o.force === true || (complete && blockers.length === 0));
        if (complete) checkpoint.remove();
        if (swap) {
          await index.swapAlias(version);
        } else if (complete && o.match) {
          say(
            o.json,
            `not swapping: --match indexed only the matching studies; when every part is indexed, \`cbmir reindex --model ${modelRef} --swap-only\``,
          );
        } else {
          process.stderr.write(
            `cbmir reindex: not swapping ${version}: ${blockers.join('; ') || 'incomplete'} ` +
              `(${first.studyErrors.length + second.studyErrors.length} studies not crawled, ` +
              `${first.enqueueFailures + second.enqueueFailures} not enqueued, ${failed.total - retryable} refused for good). ` +
              (complete
                ? // Crawled and nothing to retry: only the count stands in the way, and a rerun
                  // would crawl everything again to the same count.
                  `If images were deleted from the PACS since the live version indexed them, make it live with \`cbmir reindex --model ${modelRef} --swap-only --force\`\n`
                : o.match
                  ? // A --match run never swaps, so --force is refused with it.
                    `Fix, then \`cbmir failed --retry --namespace ${namespace}\` and \`cbmir reindex --model ${modelRef} --resume\` with the same --match\n`
                  : `Fix, then \`cbmir failed --retry --namespace ${namespace}\` and \`cbmir reindex --model ${modelRef} --resume\`, ` +
                    'or pass --force to swap it as it is\n'),
          );
        }
        await finish(swap, {
          indexed,
          instances: second.instances,
          failed: failed.total,
          retryable,
          namespace,
          complete,
          ...(blockers.length > 0 ? { blockers } : {}),
        });
        process.exitCode = swap || (complete && o.match) ? 0 : 1;
      } catch (err) {
        if (abort.signal.aborted) {
          process.stderr.write('cbmir reindex: interrupted; continue with --resume\n');
          process.exitCode = 1;
          return;
        }
        throw err;
      } finally {
        stopListening();
        await workers?.close();
        await pipeline?.close();
        await queue.close().catch(() => undefined);
        queueConn.disconnect();
        await enqueuer.close();
        await index.close();
        await pacs.close();
      }
    });
}

/** How long a drain may see no progress and no running job before it says so. */
const STALL_WARN_MS = 120_000;

/**
 * Wait until the reindex queue has nothing waiting, delayed or running; progress = documents in
 * the new storage: a bar on a terminal, elsewhere a line every `lineEveryMs`; none with --no-progress.
 */
export async function drain(
  queue: Pick<Queue<IndexJobData>, 'name' | 'getJobCounts'>,
  index: { count(): Promise<number> },
  target: number,
  o: Pick<ReindexCliOptions, 'progress' | 'json' | 'model'>,
  signal: AbortSignal,
  timing: { pollMs?: number; lineEveryMs?: number } = {},
): Promise<void> {
  const { pollMs = 1000, lineEveryMs = 30_000 } = timing;
  const bar =
    o.progress && !o.json && process.stderr.isTTY
      ? new cliProgress.SingleBar(
          {
            stream: process.stderr,
            format: ' indexing {bar} {value}/{total} | {failed} failed | {eta_formatted} left',
            hideCursor: true,
          },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
  bar?.start(Math.max(1, target), 0, { failed: 0 });
  // Without a bar (--json, not a terminal) a line every 30 s unless --no-progress, so a long drain
  // is never silent; and a warning when nothing moves, e.g. --no-local-worker with no helper worker running.
  let lastLine = Date.now();
  let lastCount = -1;
  let stillSince = Date.now();
  let warned = false;
  try {
    for (;;) {
      signal.throwIfAborted();
      const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'failed');
      const count = await index.count();
      bar?.update(Math.min(target, count), { failed: c.failed ?? 0 });
      const pending = (c.waiting ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0) + (c['waiting-children'] ?? 0);
      if (pending === 0) return;
      const now = Date.now();
      if (count !== lastCount || (c.active ?? 0) > 0) {
        lastCount = count;
        stillSince = now;
      }
      if (!bar && o.progress && now - lastLine >= lineEveryMs) {
        lastLine = now;
        process.stderr.write(`cbmir reindex: ${count}/${target} indexed, ${pending} pending, ${c.failed ?? 0} failed\n`);
      }
      if (!warned && now - stillSince >= STALL_WARN_MS) {
        warned = true;
        bar?.stop();
        process.stderr.write(
          `cbmir reindex: nothing has been indexed for ${Math.round(STALL_WARN_MS / 1000)} s and no job is running: is a worker consuming ${queue.name}? ` +
            `(without the local worker: CBMIR_MODEL=${o.model ?? '<manifest>'} cbmir worker --namespace ${queue.name.replace(/^cbmir-index-/, '')})\n`,
        );
      }
      await new Promise((r) => setTimeout(r, pollMs));
    }
  } finally {
    bar?.stop();
  }
}
