/** `cbmir worker`: run the index/embed queue consumers (see worker-process.ts). */
import { Command, InvalidArgumentError } from 'commander';
import { configOrExit, exitStatusHelp } from './command-config.js';
import { runWorkerProcess } from './worker-process.js';

export function workerCommand(): Command {
  return new Command('worker')
    .description('consume the index and embed queues: fetch, decode, embed, write the vector index')
    .option(
      '--namespace <ns>',
      'consume cbmir-index-<ns> and cbmir-embed-<ns> instead of the default queues: reindex-<version> (with CBMIR_MODEL=<its manifest>) helps a `cbmir reindex` run; also tests',
    )
    .option('--stalled-interval-ms <ms>', 'how often to take back the jobs of dead workers, in ms: 100..3600000 (default 30000)', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 100 || n > 3_600_000) throw new InvalidArgumentError('--stalled-interval-ms must be 100..3600000');
      return n;
    })
    .addHelpText(
      'after',
      exitStatusHelp([
        '0  stopped by SIGTERM or Ctrl-C, cleanly',
        '1  Redis unreachable at start (systemd restarts it); the stop did not finish within CBMIR_SHUTDOWN_GRACE_MS + 10 s,',
        '   or a second signal; the index did not answer while a new patient-key secret was needed',
        '2  bad configuration: a setting, the model (CBMIR_MODEL), the patient-key secret',
      ]),
    )
    .action(async (o: { namespace?: string; stalledIntervalMs?: number }) => {
      await runWorkerProcess(configOrExit(), o);
    });
}
