/**
 * `cbmir embed <files…> [--json [--vectors]]`: decode + preprocess + embed local DICOM files
 * with the shipped model. One line per file; exit 0 when every file was either
 * embedded or refused with a reason (a refusal is an answer, not an error);
 * exit 1 when a file could not be read, 2 for bad usage or a model that does not load.
 */
import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { DecoderResourceError, isResourceError, resourceFailure } from '../core/dicom/resources.js';
import { exitStatusHelp, invocationPath, modelOptionOrExit } from './command-config.js';
import { EmbeddingPipeline } from './embedding-pipeline.js';

/**
 * The file's bytes, or its UNREADABLE line with the reason's code: whatever it is (ELOOP,
 * ENAMETOOLONG, a file over 2 GiB, EMFILE …), the file gets its line and the others are embedded.
 */
async function readInput(file: string, from: string): Promise<{ bytes: Uint8Array } | { unreadable: Record<string, unknown>; why: string }> {
  try {
    return { bytes: new Uint8Array(await readFile(from)) };
  } catch (err) {
    const e = err as NodeJS.ErrnoException | undefined;
    const why = e?.code ?? e?.name ?? String(err);
    return { unreadable: { file, ok: false, reason: `cannot read file: ${why}`, code: 'UNREADABLE' }, why };
  }
}

export function embedCommand(): Command {
  return new Command('embed')
    .description('embed local DICOM files with the shipped model (one line per file)')
    .argument('<files...>', 'DICOM Part-10 files')
    .option('--json', 'one JSON object per line', false)
    .option('--vectors', 'with --json: include the vector', false)
    .option('--model <path>', 'models/manifest.json or an .onnx file (default: CBMIR_MODEL, else the shipped model)')
    .addHelpText(
      'after',
      exitStatusHelp([
        '0  every file embedded, or refused with a reason (a refusal is an answer)',
        '1  a file could not be read, or the machine could not decode it (memory, codecs)',
        '2  bad usage, or a model that does not load',
      ]),
    )
    .action(async (files: string[], o: { json: boolean; vectors: boolean; model?: string }, cmd: Command) => {
      // The text lines have no room for 256 numbers: asked for, they would be dropped without a word.
      if (o.vectors && !o.json) cmd.error('cbmir embed: --vectors goes with --json', { exitCode: 2 });
      const model = o.model !== undefined ? invocationPath(o.model) : process.env.CBMIR_MODEL;
      modelOptionOrExit(model, 'embed', o.model !== undefined ? '--model' : undefined);
      let pipeline: EmbeddingPipeline;
      try {
        pipeline = await EmbeddingPipeline.create({ model, batchWaitMs: 0 });
      } catch (err) {
        // As backfill and reindex: a model that does not load is a configuration error.
        process.stderr.write(`cbmir embed: ${(err as Error).message}\n`);
        process.exitCode = 2;
        return;
      }
      let broken = 0;
      try {
        for (const file of files) {
          let line: Record<string, unknown>;
          let text: string;
          const input = await readInput(file, invocationPath(file));
          if ('unreadable' in input) {
            broken++;
            line = input.unreadable;
            text = `cannot read ${file}: ${input.why}`;
          } else {
            // Memory or codecs failed on this machine (DecoderResourceError): not a refusal of the
            // file, and no reason to give up on the files after it.
            const r = await pipeline.embedDicom(input.bytes).catch((err: unknown) => {
              if (isResourceError(err)) return resourceFailure(err);
              throw err;
            });
            if (r instanceof DecoderResourceError) {
              broken++;
              line = { file, ok: false, reason: r.reason, code: 'RESOURCES' };
              text = `failed  ${file}: ${r.reason}`;
            } else {
              line = r.ok
                ? {
                    file,
                    ok: true,
                    dims: r.vectors[0]?.vector.length ?? 0,
                    model: `${pipeline.modelName}-${pipeline.modelVersion}`,
                    frame: r.vectors[0]?.frameNumber,
                    ...(o.vectors ? { vector: Array.from(r.vectors[0]?.vector ?? []) } : {}),
                  }
                : { file, ok: false, reason: r.reason, code: r.code };
              text = r.ok ? `ok      ${file} dims=${String(line.dims)}` : `refused ${file}: ${r.reason}`;
            }
          }
          process.stdout.write(`${o.json ? JSON.stringify(line) : text}\n`);
        }
      } finally {
        await pipeline.close();
      }
      if (broken) process.exitCode = 1;
    });
}
