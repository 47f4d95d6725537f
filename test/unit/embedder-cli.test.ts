/** `cbmir embed`: one line per file whatever happens to it, and exit 1 when one could not be read. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import type { EmbeddingPipeline as EmbeddingPipelineType } from '../../workers/embedding-pipeline.js';
import { dicomFixturesDir, repoRoot } from '../helpers/fixtures.js';

const run = promisify(execFile);
// A 1 KB graph (test/fixtures/models/README.md): the command's behaviour, not the model's, is tested.
const TINY = path.join(repoRoot, 'test/fixtures/models/tiny32-0.0.1.onnx');

test('cbmir embed: a file that cannot be read for any reason gets an UNREADABLE line with its code, and the run goes on', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cbmir-embed-'));
  try {
    const loop = path.join(dir, 'loop');
    symlinkSync(path.join(dir, 'loop2'), loop);
    symlinkSync(loop, path.join(dir, 'loop2'));
    const good = path.join(dicomFixturesDir, 'transfer-syntax/siemens_mosaic_1.dcm');
    const files = [good, loop, path.join(dir, 'x'.repeat(300)), path.join(dicomFixturesDir, 'transfer-syntax/deflate_image_dfl.dcm')];
    const r = await run(process.execPath, ['--import', 'tsx', 'workers/cli.ts', 'embed', '--json', '--model', TINY, ...files], {
      cwd: repoRoot,
    }).then(
      (ok) => ({ ...ok, code: 0 }),
      (err: { stdout: string; stderr: string; code: number }) => err,
    );
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { file: string; ok: boolean; code?: string; reason?: string });
    assert.deepEqual(
      lines.map((l) => [l.file, l.ok, l.code ?? null, l.reason ?? null]),
      [
        [files[0], true, null, null],
        [files[1], false, 'UNREADABLE', 'cannot read file: ELOOP'],
        [files[2], false, 'UNREADABLE', 'cannot read file: ENAMETOOLONG'],
        [files[3], true, null, null],
      ],
      r.stderr,
    );
    assert.equal(r.code, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** `cbmir embed …` with env additions; never rejects. */
function embed(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; stderr: string; code: number }> {
  return run(process.execPath, ['--import', 'tsx', 'workers/cli.ts', 'embed', ...args], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
  }).then(
    (ok) => ({ ...ok, code: 0 }),
    (err: { stdout: string; stderr: string; code: number }) => err,
  );
}

test(
  'cbmir embed: a model that does not load exits 2 as for backfill and reindex, naming --model when it was given',
  { timeout: 60_000 },
  async () => {
    const good = path.join(dicomFixturesDir, 'transfer-syntax/siemens_mosaic_1.dcm');
    const [missing, notAModel] = await Promise.all([
      embed(['--model', '/nope.onnx', good]),
      embed(['--model', path.join(repoRoot, 'test/fixtures/models/README.md'), good]),
    ]);
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /^cbmir embed: --model \/nope\.onnx: no such file/);
    assert.doesNotMatch(missing.stderr, /CBMIR_MODEL/);
    assert.equal(notAModel.code, 2, notAModel.stderr);
    assert.match(notAModel.stderr, /^cbmir embed: model manifest .*README\.md is not valid JSON/);
  },
);

test(
  'cbmir embed: an unreadable file is "cannot read", not "refused"; --vectors without --json is refused (exit 2)',
  { timeout: 60_000 },
  async () => {
    const good = path.join(dicomFixturesDir, 'transfer-syntax/siemens_mosaic_1.dcm');
    const [unreadable, vectors] = await Promise.all([embed(['--model', TINY, '/nope.dcm']), embed(['--model', TINY, '--vectors', good])]);
    assert.equal(unreadable.code, 1, unreadable.stderr);
    assert.equal(unreadable.stdout, 'cannot read /nope.dcm: ENOENT\n');
    assert.equal(vectors.code, 2, vectors.stderr);
    assert.match(vectors.stderr, /--vectors goes with --json/);
    assert.equal(vectors.stdout, '');
  },
);

test(
  'npm run cbmir -- embed: relative paths are taken from where npm was run (INIT_CWD), and printed as given',
  { timeout: 60_000 },
  async () => {
    const r = await embed(['--json', '--model', 'tiny32-0.0.1.onnx', '../dicom-samples/transfer-syntax/siemens_mosaic_1.dcm'], {
      npm_lifecycle_event: 'cbmir',
      INIT_CWD: path.join(repoRoot, 'test/fixtures/models'),
    });
    assert.equal(r.code, 0, r.stderr);
    const line = JSON.parse(r.stdout) as { file: string; ok: boolean; model: string };
    assert.deepEqual([line.file, line.ok, line.model], ['../dicom-samples/transfer-syntax/siemens_mosaic_1.dcm', true, 'tiny32-0.0.1']);
  },
);

test('cbmir embed: a file the machine could not decode (out of memory, codecs) gets a RESOURCES line, and the files after it are embedded', async () => {
  const { embedCommand } = await import('../../workers/embed-command.js');
  const { EmbeddingPipeline } = await import('../../workers/embedding-pipeline.js');
  const { resourceFailure } = await import('../../core/dicom/resources.js');
  const files = ['siemens_mosaic_1.dcm', 'siemens_mosaic_4.dcm', 'deflate_image_dfl.dcm'].map((f) =>
    path.join(dicomFixturesDir, 'transfer-syntax', f),
  );
  const original = EmbeddingPipeline.prototype.embedDicom;
  let calls = 0;
  EmbeddingPipeline.prototype.embedDicom = function (this: EmbeddingPipelineType, bytes: Uint8Array) {
    if (++calls === 2) return Promise.reject(resourceFailure(new Error('rle codec: bad_alloc')));
    return original.call(this, bytes);
  };
  const out: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string) => (out.push(String(chunk)), true)) as typeof process.stdout.write;
  const exitCode = process.exitCode;
  try {
    await embedCommand().parseAsync(['--json', '--model', TINY, ...files], { from: 'user' });
  } finally {
    process.stdout.write = write;
    EmbeddingPipeline.prototype.embedDicom = original;
  }
  const code = process.exitCode;
  process.exitCode = exitCode;
  const lines = out
    .join('')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { file: string; ok: boolean; code?: string; reason?: string });
  assert.deepEqual(
    lines.map((l) => [l.file, l.ok, l.code ?? null]),
    [
      [files[0], true, null],
      [files[1], false, 'RESOURCES'],
      [files[2], true, null],
    ],
  );
  assert.equal(lines[1]!.reason, 'out of memory while decoding: rle codec: bad_alloc');
  assert.equal(code, 1);
});
