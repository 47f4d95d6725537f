/**
 * A model is used as its graph says: it embeds at the input size the graph declares, its
 * vectors have the size the graph gives them, and a graph that breaks the runtime's contract or
 * disagrees with its manifest is refused by name (a worker exits 2 on it).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { loadModelManifest } from '../../core/model-manifest.js';
import { declaredInputSide, Embedder, embeddingDims, ModelContractError } from '../../models/runtime/embedder.js';
import { EmbeddingPipeline } from '../../workers/embedding-pipeline.js';
import { repoRoot } from '../helpers/fixtures.js';

// 1 KB graphs (test/fixtures/models/README.md): image [N,1,32,32] → mean → [N,256] or [N,128].
const TINY = path.join(repoRoot, 'test/fixtures/models/tiny32-0.0.1.onnx');
const TINY128 = path.join(repoRoot, 'test/fixtures/models/tiny32-128d-0.0.1.onnx');

test('embedder: the graph decides the input side; a 32×32 model by path embeds a 64×64 image', async () => {
  const e = await Embedder.load(loadModelManifest(TINY), { threads: 1 });
  assert.equal(e.inputSize, 32);
  const p = await EmbeddingPipeline.create({ model: TINY, batchSize: 1, batchWaitMs: 1, threads: 1 });
  try {
    const pixels = Float32Array.from({ length: 64 * 64 }, (_, i) => i % 64);
    const out = await p.embedPixels(pixels, 64, 64);
    assert.equal(out.vector.length, 256);
  } finally {
    await p.close();
  }
});

test('embedder: a graph that leaves the side open falls back to the manifest', () => {
  const meta = (shape: (number | string)[]) => ({
    inputMetadata: [{ name: 'image', isTensor: true as const, type: 'float32' as const, shape }],
  });
  assert.equal(declaredInputSide(meta(['N', 1, 320, 320])), 320);
  assert.equal(declaredInputSide(meta(['N', 1, 'H', 'W'])), undefined);
  assert.equal(declaredInputSide(meta(['N', 1, 224, 320])), undefined);
});

test('embedder: a 128-dimension model by its path embeds and reports 128, not an assumed 256', async () => {
  const p = await EmbeddingPipeline.create({ model: TINY128, batchSize: 2, batchWaitMs: 1, threads: 1 });
  try {
    assert.equal(p.dims, 128);
    const out = await p.embedPixels(new Float32Array(32 * 32).fill(1), 32, 32);
    assert.equal(out.vector.length, 128);
  } finally {
    await p.close();
  }
});

/** A manifest next to nothing, naming a graph elsewhere. */
function manifestFor(dir: string, file: string, extra: Record<string, unknown>): string {
  const at = path.join(dir, `manifest-${Object.keys(extra).join('-') || 'plain'}.json`);
  writeFileSync(at, JSON.stringify({ name: 'tiny', version: '0.0.9', file, ...extra }));
  return at;
}

test("embedder: a manifest that states other dims than its graph is refused, naming both; one that states none takes the graph's", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cbmir-dims-'));
  try {
    await assert.rejects(
      EmbeddingPipeline.create({ model: manifestFor(dir, TINY128, { dims: 256 }), threads: 1 }),
      (err: Error) =>
        err instanceof ModelContractError &&
        err.message === `model ${TINY128}: its manifest says 256 dimensions, the graph's embedding has 128`,
    );
    const e = await Embedder.load(loadModelManifest(manifestFor(dir, TINY128, {})), { threads: 1 });
    try {
      assert.equal(e.manifest.dims, 128);
    } finally {
      await e.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("embedder: a graph without the runtime's input or output, or with a fixed batch, is refused by name", () => {
  const tensor = (name: string, shape: (number | string)[]) => ({ name, isTensor: true as const, type: 'float32' as const, shape });
  const graph = (inputs: ReturnType<typeof tensor>[], outputs: ReturnType<typeof tensor>[]) => ({
    inputNames: inputs.map((i) => i.name),
    outputNames: outputs.map((o) => o.name),
    inputMetadata: inputs,
    outputMetadata: outputs,
  });
  const image = tensor('image', ['N', 1, 224, 224]);
  const assumed = { file: 'm.onnx', dims: 256, dimsDeclared: false };
  const refusal = (g: ReturnType<typeof graph>, m = assumed) => {
    try {
      embeddingDims(g, m);
    } catch (err) {
      assert.ok(err instanceof ModelContractError);
      return err.message;
    }
    return 'accepted';
  };
  assert.equal(embeddingDims(graph([image], [tensor('embedding', ['N', 512])]), assumed), 512);
  assert.match(
    refusal(graph([tensor('input', ['N', 1, 224, 224])], [tensor('embedding', ['N', 256])])),
    /^model m\.onnx: the graph has no input "image" \(it has input\)/,
  );
  assert.match(refusal(graph([image], [tensor('output', ['N', 256])])), /no output "embedding" \(it has output\)/);
  assert.match(
    refusal(graph([tensor('image', [1, 1, 224, 224])], [tensor('embedding', [1, 256])])),
    /input "image" has a fixed batch of 1/,
  );
  assert.match(refusal(graph([image], [tensor('embedding', ['N', 256, 1])])), /output "embedding" has 3 dimensions/);
  // Size left open: only a manifest can say it.
  const open = graph([image], [tensor('embedding', ['N', 'D'])]);
  assert.match(refusal(open), /leaves the size of "embedding" open/);
  assert.equal(embeddingDims(open, { file: 'm.onnx', dims: 64, dimsDeclared: true }), 64);
});

test('cbmir worker: a model whose manifest disagrees with its graph exits 2 with the reason, before touching Redis', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cbmir-dims-worker-'));
  try {
    const env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      CBMIR_DATA_DIR: dir,
      CBMIR_MODEL: manifestFor(dir, TINY128, { dims: 256 }),
      CBMIR_PATIENT_KEY_SECRET: 'dims-test-secret-0123456789',
      CBMIR_REDIS_URL: 'redis://127.0.0.1:1',
    };
    const r = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'workers/cli.ts', 'worker'], { cwd: repoRoot, env }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /cbmir worker: model .*tiny32-128d-0\.0\.1\.onnx: its manifest says 256 dimensions, the graph's embedding has 128/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('backfill/reindex take the embedding size from the graph: storage for a 128-d .onnx is 128-d, not an assumed 256', async () => {
  // checkedManifestOrExit is what they call before index.ensure(manifest.dims, …).
  const { checkedManifestOrExit } = await import('../../workers/command-config.js');
  assert.equal(loadModelManifest(TINY128).dims, 256); // by path, the manifest alone can only assume
  const m = await checkedManifestOrExit(TINY128, 'backfill');
  assert.equal(m.dims, 128);
  assert.equal(m.version, '0.0.1');
});
