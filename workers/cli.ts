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
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, type CommanderError } from 'commander';
import { loadModelManifest } from '../core/model-manifest.js';
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

/** The settings the commands read, for the top-level --help (docs/operations.md has them all). */
const SETTINGS_HELP = `
Settings (environment variables, checked at start; a bad one exits 2, naming it):
  CBMIR_REDIS_URL           the queue's Redis (worker, backfill, reindex, failed, status)
  CBMIR_PACS_URL            the PACS's DICOMweb root; CBMIR_PACS_USER, CBMIR_PACS_PASSWORD its login (worker, backfill, reindex)
  CBMIR_ES_URL              Elasticsearch, CBMIR_ES_INDEX its alias; unset: the embedded index in CBMIR_DATA_DIR
  CBMIR_DATA_DIR            embedded index, checkpoints, patient-key secret (default .cbmir-data, from the current folder)
  CBMIR_MODEL               model manifest.json or .onnx (worker, embed, backfill; default models/manifest.json)
  CBMIR_RECONCILE_RATE      PACS requests per second of backfill and reindex (default 10)
  CBMIR_WORKER_CONCURRENCY, CBMIR_BATCH_SIZE, CBMIR_ORT_THREADS, CBMIR_GPU …  the worker's (and reindex's) model runs
  CBMIR_PATIENT_KEY_SECRET  the patient-key secret (worker, reindex; default: a file in CBMIR_DATA_DIR)
  CBMIR_LOG_LEVEL           fatal, error, warn, info (default), debug, trace, silent
  CBMIR_LOAD_URL, CBMIR_LOAD_AUTH  load's --url and --auth (a password here stays out of the shell history)
Every setting and its default: docs/operations.md, "Gateway and worker settings".
Each command's --help ends with its exit statuses.
`;

/** `cbmir --version`: this package's version and the model a command would run (CBMIR_MODEL, else the shipped one). */
export function versionText(env: NodeJS.ProcessEnv = process.env): string {
  // workers/cli.ts, or dist/workers/cli.js of a build: package.json is one or two folders up.
  const pkg = ['../package.json', '../../package.json']
    .map((p) => fileURLToPath(new URL(p, import.meta.url)))
    .filter((p) => existsSync(p))
    .map((p) => JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string })
    .find((j) => j.name === 'cbmir-gateway');
  let model: string;
  try {
    const m = loadModelManifest(env.CBMIR_MODEL?.trim() || undefined);
    model = `model ${m.name} ${m.version}${env.CBMIR_MODEL?.trim() ? ' (CBMIR_MODEL)' : ''}`;
  } catch (err) {
    model = `model: ${(err as Error).message}`;
  }
  return `cbmir-gateway ${pkg?.version ?? 'unknown'}\n${model}\n`;
}

/** `cbmir <subcommand>` once a subcommand runs: what an error that ends it is prefixed with. */
let running = 'cbmir';

export function buildProgram(): Command {
  const program = new Command('cbmir')
    .description('cbmir-gateway: content-based image retrieval in front of a DICOMweb PACS')
    .option('-V, --version', 'print the version of cbmir-gateway and of the model, and exit')
    .on('option:version', () => {
      process.stdout.write(versionText());
      process.exit(0);
    })
    .addHelpText('after', SETTINGS_HELP)
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
