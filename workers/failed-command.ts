/**
 * `cbmir failed [--json] [--retry [--all]]`: the failed index jobs — job id, UIDs,
 * failed step and reason, attempts, time — newest first (workers/failed-jobs.ts
 * says which are permanent and which retryable). `--retry` puts the retryable ones
 * (PACS/index down past the retry window, a model version no worker ran) back in the
 * queue; `--all` also the permanent ones (after deploying a decoder fix, say); it goes
 * through every failed job, not only the --limit shown. A job that leaves the failed set
 * meanwhile is counted as gone, and the others are still retried. Exit 0 unless Redis is
 * unreachable or the options are wrong.
 */
import { Command, InvalidArgumentError } from 'commander';
import { Queue } from 'bullmq';
import { queueName, type IndexJobData } from '../core/jobs.js';
import { producerConnection, quiet } from '../core/queue/redis.js';
import { configOrExit, exitStatusHelp, noSuchQueue, queueExists, redisReachable } from './command-config.js';
import { listFailed, retryFailed, type FailedJobView } from './failed-jobs.js';

interface FailedCliOptions {
  json?: boolean;
  retry?: boolean;
  all?: boolean;
  namespace?: string;
  limit: number;
}

function table(jobs: readonly FailedJobView[]): string {
  const rows = jobs.map((j) => [
    j.failedAt?.replace('T', ' ').slice(0, 19) ?? '-',
    j.step + (j.code ? `/${j.code}` : ''),
    `${j.attempts}/${j.maxAttempts}`,
    j.retryable ? 'yes' : 'no',
    j.sopInstanceUid ?? j.jobId,
    j.reason.replace(/\s+/g, ' ').slice(0, 120),
  ]);
  const header = ['failed at (UTC)', 'step', 'attempts', 'retry?', 'SOP Instance UID', 'reason'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function failedCommand(): Command {
  return new Command('failed')
    .description('list index jobs that failed (step, reason, attempts); --retry re-queues the retryable ones')
    .option('--json', 'one JSON object per failed job (and a closing summary object)')
    .option('--retry', 're-queue the retryable failures (the PACS or index was down too long)')
    .option('--all', 'with --retry: re-queue permanent failures too')
    .option('--namespace <ns>', 'queue namespace (tests, or reindex-<version> for a reindex run)')
    .option(
      '--limit <n>',
      'show at most n (newest first)',
      (v) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1 || n > 1_000_000) throw new InvalidArgumentError('--limit must be 1..1000000');
        return n;
      },
      1000,
    )
    .addHelpText(
      'after',
      exitStatusHelp(['0  listed (and, with --retry, re-queued)', '1  Redis did not answer', '2  bad usage or configuration']),
    )
    .action(async (o: FailedCliOptions, cmd: Command) => {
      if (o.all && !o.retry)
        cmd.error('cbmir failed: --all only goes with --retry', {
          exitCode: 2,
        });
      const config = configOrExit();
      let connectionError: Error | undefined;
      const conn = quiet(producerConnection(config.redisUrl), (err) => (connectionError = err));
      // Read only (--retry moves jobs, writes no meta): a Queue otherwise writes its meta key.
      const queue = new Queue<IndexJobData>(queueName('index', o.namespace), {
        connection: conn,
        skipMetasUpdate: true,
      });
      queue.on('error', () => undefined);
      try {
        await redisReachable(() => conn.ping(), config.redisUrl, {
          lastError: () => connectionError,
          isReady: () => conn.status === 'ready',
        });
        if (!(await queueExists(queue, conn))) process.stderr.write(`cbmir failed: warning: ${noSuchQueue(queue.name, o.namespace)}\n`);
        const { total, jobs } = await listFailed(queue, o.limit);
        const { retried, gone } = o.retry ? await retryFailed(queue, { all: Boolean(o.all) }) : { retried: 0, gone: 0 };
        const retryable = jobs.filter((j) => j.retryable).length;
        if (o.json) {
          for (const j of jobs) process.stdout.write(`${JSON.stringify(j)}\n`);
          process.stdout.write(`${JSON.stringify({ summary: true, failed: total, shown: jobs.length, retryable, retried, gone })}\n`);
        } else if (total === 0) {
          process.stdout.write(`no failed index jobs in ${queue.name}\n`);
        } else {
          process.stdout.write(`${table(jobs)}\n`);
          process.stdout.write(
            `${total} failed in ${queue.name}${jobs.length < total ? ` (newest ${jobs.length} shown)` : ''}: ${jobs.length - retryable} permanent, ${retryable} retryable` +
              `${o.retry ? `; ${retried} re-queued${gone ? `, ${gone} no longer failed when retried (cleared, pruned or retried elsewhere)` : ''}` : retryable ? '; re-queue them with --retry' : ''}\n`,
          );
        }
      } finally {
        await queue.close().catch(() => undefined);
        conn.disconnect();
      }
    });
}
