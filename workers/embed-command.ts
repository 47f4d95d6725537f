/**
 * `cbmir embed <files…> [--json]`: decode + preprocess + embed local DICOM files
 * with the shipped model. One line per file; exit 0 when every file was either
 * embedded or refused with a reason (a refusal is an answer, not an error);
 * exit 1 only when something broke (unreadable path, model failure).
 */
import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { EmbeddingPipeline } from './embedding-pipeline.js';

/**
 * The file's bytes, or its UNREADABLE line with the reason's code: whatever it is (ELOOP,
 * ENAMETOOLONG, a file over 2 GiB, EMFILE …), the file gets its line and the others are embedded.
 */
async function readInput(file: string): Promise<{ bytes: Uint8Array } | { unreadable: Record<string, unknown> }> {
  try {
    return { bytes: new Uint8Array(await readFile(file)) };
  } catch (err) {
    const e = err as NodeJS.ErrnoException | undefined;
    return { unreadable: { file, ok: false, reason: `cannot read file: ${e?.code ?? e?.name ?? String(err)}`, code: 'UNREADABLE' } };
  }
}

export function embedCommand(): Command {
  return new Command('embed')
    .description('embed local DICOM files with the shipped model (one line per file)')
    .argument('<files...>', 'DICOM Part-10 files')
    .option('--json', 'one JSON object per line', false)
    .option('--vectors', 'include the vector in the JSON output', false)
    .option('--model <path>', 'models/manifest.json or an .onnx file (default: the shipped model)')
    .action(async (files: string[], o: { json: boolean; vectors: boolean; model?: string }) => {
      const pipeline = await EmbeddingPipeline.create({ model: o.model ?? process.env.CBMIR_MODEL, batchWaitMs: 0 });
      let broken = 0;
      try {
        for (const file of files) {
          let line: Record<string, unknown>;
          const input = await readInput(file);
          if ('unreadable' in input) {
            broken++;
            line = input.unreadable;
          } else {
            const r = await pipeline.embedDicom(input.bytes);
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
          }
          process.stdout.write(o.json ? `${JSON.stringify(line)}\n` : `${line.ok ? 'ok     ' : 'refused'} ${file}${line.ok ? ` dims=${String(line.dims)}` : `: ${String(line.reason)}`}\n`);
        }
      } finally {
        await pipeline.close();
      }
      if (broken) process.exitCode = 1;
    });
}
