/**
 * `cbmir status [--json] [--namespace ns]`: what an operator checks first — the index and
 * embed queues (waiting, active, delayed, failed …), the worker connections BullMQ sees on
 * them, and the vector index (live model version, its document count, the versions held).
 * Each part is asked on its own, so a Redis or index that is down is reported, not fatal, and
 * each is given --timeout-ms (5 s) to answer, so a probe answers in bounded time even when a
 * part accepts connections and never answers. Exit 0 when every part answered, 1 otherwise
 * (usable as a monitoring probe), 2 for bad usage or configuration.
 */
import { Command, InvalidArgumentError } from 'commander';
import { Queue } from 'bullmq';
import { queueName, type QueueKind } from '../core/jobs.js';
import { producerConnection, quiet } from '../core/queue/redis.js';
import { withDeadline } from '../core/queue/job-requester.js';
import { createVectorIndex, embeddedIndexPath } from '../core/index/factory.js';
import type { VectorIndex } from '../core/index/types.js';
import type { Redis } from 'ioredis';
import {
  configOrExit,
  exitStatusHelp,
  missingEmbeddedIndex,
  noSuchQueue,
  queueExists,
  redisReachable,
  withoutCredentials,
} from './command-config.js';

/** BullMQ's job states an operator reads; prioritized jobs are waiting too (BullMQ ≥ 4 keeps them apart). */
const STATES = ['waiting', 'prioritized', 'active', 'delayed', 'failed', 'completed'] as const;

export interface QueueStatus {
  readonly queue: string;
  readonly counts?: Record<(typeof STATES)[number], number>;
  /** Paused queues hand out no jobs (BullMQ's queue.pause()): its waiting jobs stay waiting. */
  readonly paused?: boolean;
  /** Connections of running workers on this queue; undefined when Redis does not list clients (CLIENT LIST disabled). */
  readonly workers?: number;
  /** false when Redis holds no key of this queue at all (a wrong --namespace): not the same as an empty queue. */
  readonly exists?: false;
  readonly error?: string;
}

export interface IndexStatus {
  readonly backend: VectorIndex['backend'];
  readonly liveVersion?: string;
  readonly documents?: number;
  readonly versions?: string[];
  readonly error?: string;
}

export interface Status {
  readonly redis: string;
  readonly queues: QueueStatus[];
  readonly index: IndexStatus;
  readonly ok: boolean;
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Default of --timeout-ms: how long each part (Redis, the index) may take to answer. */
export const STATUS_TIMEOUT_MS = 5_000;

/** `p`, or a rejection saying `what` did not answer within `ms`: a probe must answer in bounded time. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return withDeadline(p, ms, () => new Error(`${what} did not answer within ${ms / 1000} s`));
}

async function queueStatus(queue: Queue, conn: Redis): Promise<QueueStatus> {
  const exists = await queueExists(queue, conn);
  const counts = (await queue.getJobCounts(...STATES)) as Record<(typeof STATES)[number], number>;
  // CLIENT LIST is often disabled on managed Redis: the counts still stand without it.
  const workers = await queue.getWorkersCount().catch(() => undefined);
  return {
    queue: queue.name,
    counts,
    paused: await queue.isPaused(),
    ...(workers === undefined ? {} : { workers }),
    ...(exists ? {} : { exists: false as const }),
  };
}

/** Every part asked at once, each given `timeoutMs` (default 5 s) to answer: a part that does not is reported so. */
export async function collectStatus(
  config: ReturnType<typeof configOrExit>,
  namespace?: string,
  timeoutMs = STATUS_TIMEOUT_MS,
): Promise<Status> {
  let connectionError: Error | undefined;
  const conn = quiet(producerConnection(config.redisUrl), (err) => (connectionError = err));
  // Read only: a Queue otherwise writes its meta key, and a mistyped --namespace would then exist.
  const queues = (['index', 'embed'] as QueueKind[]).map(
    (k) => new Queue(queueName(k, namespace), { connection: conn, skipMetasUpdate: true }),
  );
  for (const q of queues) q.on('error', () => undefined);
  // Opening the embedded store creates it: a status probe with the wrong CBMIR_DATA_DIR would
  // then report an empty index instead of the missing one.
  const embeddedMissing = missingEmbeddedIndex(config);
  const index = embeddedMissing ? undefined : createVectorIndex({ ...config, esRequestTimeoutMs: timeoutMs });
  try {
    const [queueStates, indexState] = await Promise.all([
      within(
        redisReachable(() => conn.ping(), config.redisUrl, {
          timeoutMs,
          lastError: () => connectionError,
          isReady: () => conn.status === 'ready',
        }).then(() =>
          Promise.all(queues.map((q) => queueStatus(q, conn).catch((err: unknown) => ({ queue: q.name, error: message(err) })))),
        ),
        timeoutMs,
        `Redis at ${withoutCredentials(config.redisUrl)} (CBMIR_REDIS_URL)`,
      ).catch((err: unknown) => queues.map((q) => ({ queue: q.name, error: message(err) }))),
      (async (): Promise<IndexStatus> => {
        if (!index) {
          return {
            backend: 'embedded',
            error: `no embedded index at ${embeddedMissing} (CBMIR_DATA_DIR); a worker creates it when it starts`,
          };
        }
        const where = config.es
          ? `Elasticsearch at ${withoutCredentials(config.es.url)} (CBMIR_ES_URL)`
          : `the embedded index ${embeddedIndexPath(config)}`;
        try {
          const [liveVersion, documents, versions] = await within(
            Promise.all([index.liveVersion(), index.count(), index.versions()]),
            timeoutMs,
            where,
          );
          return { backend: index.backend, ...(liveVersion === undefined ? {} : { liveVersion }), documents, versions };
        } catch (err) {
          return { backend: index.backend, error: message(err) };
        }
      })(),
    ]);
    const ok = queueStates.every((q) => !q.error) && !indexState.error;
    return { redis: withoutCredentials(config.redisUrl), queues: queueStates, index: indexState, ok };
  } finally {
    const closing = Promise.all([...queues.map((q) => q.close()), index?.close()]);
    await within(closing, 1_000, 'closing').catch(() => undefined);
    conn.disconnect();
  }
}

/** The status as an operator reads it (without --json). */
export function statusText(s: Status, namespace: string | undefined): string {
  const lines: string[] = [];
  for (const q of s.queues) {
    if (q.error || !q.counts) {
      lines.push(`${q.queue}: unreachable (${q.error ?? 'no answer'})`);
      continue;
    }
    if (q.exists === false) {
      lines.push(`${q.queue}: ${noSuchQueue(q.queue, namespace)}`);
      continue;
    }
    const c = q.counts;
    lines.push(
      `${q.queue}: ${c.waiting + c.prioritized} waiting, ${c.active} active, ${c.delayed} delayed, ${c.failed} failed` +
        `${q.paused ? ' (queue paused)' : ''}; ${q.workers === undefined ? 'workers: unknown (Redis lists no clients)' : `${q.workers} worker connection${q.workers === 1 ? '' : 's'}`}`,
    );
  }
  const ix = s.index;
  if (ix.error) lines.push(`index (${ix.backend}): unreachable (${ix.error})`);
  else
    lines.push(
      `index (${ix.backend}): ${ix.liveVersion ? `live version ${ix.liveVersion}, ${ix.documents} documents` : 'no live version yet (nothing indexed)'}` +
        `${ix.versions && ix.versions.length > 1 ? `; versions held: ${ix.versions.join(', ')}` : ''}`,
    );
  if (s.queues.some((q) => (q.counts?.failed ?? 0) > 0)) lines.push('failed jobs: `cbmir failed` lists them with their reasons');
  return lines.join('\n');
}

export function statusCommand(): Command {
  return new Command('status')
    .description('queues (waiting, active, failed …), worker connections and the vector index; exit 1 when a part does not answer')
    .option('--json', 'one JSON object')
    .option('--namespace <ns>', 'queue namespace (tests, or reindex-<version> for a reindex run)')
    .option(
      '--timeout-ms <ms>',
      'how long each part (Redis, the index) may take to answer before it is reported as not answering, 100..600000',
      (v) => {
        const n = Number(v);
        if (!/^\d+$/.test(v.trim()) || n < 100 || n > 600_000) throw new InvalidArgumentError('--timeout-ms must be 100..600000');
        return n;
      },
      STATUS_TIMEOUT_MS,
    )
    .addHelpText(
      'after',
      exitStatusHelp([
        '0  every part answered',
        '1  a part did not answer within --timeout-ms (Redis, the index), or the embedded index is missing',
        '2  bad usage or configuration',
      ]),
    )
    .action(async (o: { json?: boolean; namespace?: string; timeoutMs: number }) => {
      const status = await collectStatus(configOrExit(), o.namespace, o.timeoutMs);
      if (o.json)
        for (const q of status.queues)
          if (q.exists === false) process.stderr.write(`cbmir status: warning: ${noSuchQueue(q.queue, o.namespace)}\n`);
      process.stdout.write(`${o.json ? JSON.stringify(status) : statusText(status, o.namespace)}\n`);
      process.exitCode = status.ok ? 0 : 1;
    });
}
