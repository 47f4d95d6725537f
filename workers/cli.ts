#!/usr/bin/env node
/**
 * `cbmir` — the command-line entry point (bin/cbmir.js runs this file, or its build in
 * dist/). One subcommand per module; this table is the whole CLI:
 *
 *   load <dir>   dataset folder → DICOM MR instances → STOW-RS   (workers/load-command.ts)
 */
import { Command } from 'commander';
import { loadCommand } from './load-command.js';

export function buildProgram(): Command {
  return new Command('cbmir')
    .description('cbmir-gateway: content-based image retrieval in front of a DICOMweb PACS')
    .showHelpAfterError()
    .addCommand(loadCommand());
}

buildProgram()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    process.stderr.write(`cbmir: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
