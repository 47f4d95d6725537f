/** A model loaded by its .onnx path embeds at the input size its graph declares (no manifest to say it). */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { loadModelManifest } from '../../core/model-manifest.js';
import { declaredInputSide, Embedder } from '../../models/runtime/embedder.js';
import { EmbeddingPipeline } from '../../workers/embedding-pipeline.js';
import { repoRoot } from '../helpers/fixtures.js';

// A 1 KB graph (test/fixtures/models/README.md): image [N,1,32,32] → mean → [N,256].
const TINY = path.join(repoRoot, 'test/fixtures/models/tiny32-0.0.1.onnx');

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
