/** `cbmir worker`: run the index/embed queue consumers (see worker-process.ts). */
import { Command, InvalidArgumentError } from 'commander';
import { configOrExit } from './command-config.js';
import { runWorkerProcess } from './worker-process.js';

export function workerCommand(): Command {
  return new Command('worker')
    .description('consume the index and embed queues: fetch, decode, embed, write the vector index')
    .option('--namespace <ns>', 'queue namespace (tests)')
    .option('--stalled-interval-ms <ms>', 'how often to reclaim jobs of dead workers', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 100 || n > 3_600_000) throw new InvalidArgumentError('--stalled-interval-ms must be 100..3600000');
      return n;
    })
    .action(async (o: { namespace?: string; stalledIntervalMs?: number }) => {
      await runWorkerProcess(configOrExit(), o);
    });
}
