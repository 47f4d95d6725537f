#!/usr/bin/env node
/**
 * `cbmir` — the command-line entry point (bin/cbmir.js runs this file, or its build in
 * dist/). One subcommand per module; this table is the whole CLI:
 *
 *   load <dir>     dataset folder → DICOM MR instances → STOW-RS   (workers/load-command.ts)
 *   worker         consume the index/embed queues                  (workers/worker-command.ts)
 *   embed <files>  embed local DICOM files, one line per file      (workers/embed-command.ts)
 *   backfill       enqueue every PACS instance missing from the index (workers/backfill-command.ts)
 *   reindex        index everything with a new model, then swap it live (workers/reindex-command.ts)
 *   failed         failed index jobs: step, reason; --retry          (workers/failed-command.ts)
 *   status         queues, worker connections, the vector index      (workers/status-command.ts)
 */
import { Command, type CommanderError } from 'commander';
import { embedCommand } from './embed-command.js';
import { loadCommand } from './load-command.js';
import { workerCommand } from './worker-command.js';
import { backfillCommand } from './backfill-command.js';
import { reindexCommand } from './reindex-command.js';
import { failedCommand } from './failed-command.js';
import { statusCommand } from './status-command.js';
import { commandErrorMessage } from './command-config.js';

/** Usage errors exit 2 (commander's default is 1, which we keep for "the work failed"). */
function exitOnUsageError(err: CommanderError): never {
  const usage = err.exitCode === 1 && err.code.startsWith('commander.') && err.code !== 'commander.executeSubCommandAsync';
  process.exit(usage ? 2 : err.exitCode);
}

/** `cbmir <subcommand>` once a subcommand runs: what an error that ends it is prefixed with. */
let running = 'cbmir';

export function buildProgram(): Command {
  const program = new Command('cbmir')
    .description('cbmir-gateway: content-based image retrieval in front of a DICOMweb PACS')
    .showHelpAfterError()
    .addCommand(loadCommand())
    .addCommand(workerCommand())
    .addCommand(embedCommand())
    .addCommand(backfillCommand())
    .addCommand(reindexCommand())
    .addCommand(failedCommand())
    .addCommand(statusCommand());
  for (const cmd of [program, ...program.commands]) cmd.exitOverride(exitOnUsageError);
  program.hook('preAction', (_program, action) => {
    running = `cbmir ${action.name()}`;
  });
  return program;
}

buildProgram()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    const message = commandErrorMessage(err);
    process.stderr.write(`${message.startsWith(`${running}:`) ? message : `${running}: ${message}`}\n`);
    process.exitCode = 1;
  });
