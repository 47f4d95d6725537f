/**
 * The worker side of similarity heatmaps (workers/heatmap.ts) with the shipped model and
 * its heatmap graph, on real DICOM fixtures — no queue: HeatmapJobs.run is what the
 * embed worker calls for a "heatmap" job.
 *
 * What must hold for any model: s from the heatmap graph is the dot product of the two
 * embeddings the pipeline computes (the number /similar ranks by), the grids are 7×7
 * and finite, the maps of an image with itself vanish (s = 1 is a maximum), non-images
 * are refused with the decoder's reason, and a heatmap made for another model is
 * refused at load rather than silently used.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, copyFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadModelManifest } from '../../core/model-manifest.js';
import { EmbeddingPipeline } from '../../workers/embedding-pipeline.js';
import { HeatmapJobs, locateHeatmapModel } from '../../workers/heatmap.js';
import { dicomFixturesDir } from '../helpers/fixtures.js';

const MOSAIC = path.join(dicomFixturesDir, 'transfer-syntax', 'siemens_mosaic_1.dcm');
const DEFLATE = path.join(dicomFixturesDir, 'transfer-syntax', 'deflate_image_dfl.dcm');
const SR = path.join(dicomFixturesDir, 'non-image', 'comprehensive_sr_test-SR.dcm');

const b64 = async (f: string) => ({ dicomBase64: (await readFile(f)).toString('base64') });
const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + v * b[i]!, 0);

describe('heatmap jobs (workers/heatmap.ts)', () => {
  let pipeline: EmbeddingPipeline;
  let jobs: HeatmapJobs;
  const noFetch = async () => {
    throw new Error('no archive in this test');
  };

  before(async () => {
    pipeline = await EmbeddingPipeline.create({ batchSize: 4, batchWaitMs: 5, threads: 2 });
    jobs = new HeatmapJobs(pipeline, noFetch);
  });
  after(async () => {
    await jobs?.close();
    await pipeline?.close();
  });

  it('s is the dot product of the two embeddings; grids are 7×7 and finite', async () => {
    const [a, b] = await Promise.all([pipeline.embedDicom(await readFile(MOSAIC)), pipeline.embedDicom(await readFile(DEFLATE))]);
    assert.ok(a.ok && b.ok);
    const r = await jobs.run({ kind: 'heatmap', query: await b64(MOSAIC), result: await b64(DEFLATE), modelVersion: pipeline.modelVersion, enqueuedAt: Date.now() });
    assert.equal(r.status, 'heatmap', JSON.stringify(r));
    if (r.status !== 'heatmap') return;
    assert.equal(r.height, 7);
    assert.equal(r.width, 7);
    assert.equal(r.query.length, 49);
    assert.equal(r.result.length, 49);
    assert.ok([...r.query, ...r.result].every(Number.isFinite));
    assert.ok(Math.abs(r.similarity - dot(a.vectors[0]!.vector, b.vectors[0]!.vector)) < 1e-4, `s ${r.similarity}`);
    // Different images: something to show, with both signs possible but not all zero.
    assert.ok(Math.max(...r.query.map(Math.abs)) > 1e-5);
  });

  it('an image with itself: s = 1 and the maps vanish', async () => {
    const r = await jobs.run({ kind: 'heatmap', query: await b64(MOSAIC), result: await b64(MOSAIC), modelVersion: pipeline.modelVersion, enqueuedAt: Date.now() });
    assert.equal(r.status, 'heatmap');
    if (r.status !== 'heatmap') return;
    assert.ok(Math.abs(r.similarity - 1) < 1e-5);
    assert.ok(Math.max(...r.query.map(Math.abs), ...r.result.map(Math.abs)) < 1e-4);
  });

  it('refuses non-images (naming the side) and another model version', async () => {
    const sr = await jobs.run({ kind: 'heatmap', query: await b64(MOSAIC), result: await b64(SR), modelVersion: pipeline.modelVersion, enqueuedAt: Date.now() });
    assert.equal(sr.status, 'refused');
    assert.match(sr.status === 'refused' ? sr.reason : '', /^result: not an image: Comprehensive SR/);
    const v = await jobs.run({ kind: 'heatmap', query: await b64(MOSAIC), result: await b64(MOSAIC), modelVersion: 'other-9.9.9', enqueuedAt: Date.now() });
    assert.equal(v.status, 'refused');
    assert.match(v.status === 'refused' ? v.reason : '', /other-9\.9\.9/);
  });

  it('finds the shipped heatmap graph and refuses one made for another model', async () => {
    const model = loadModelManifest();
    const shipped = locateHeatmapModel(model);
    assert.match(shipped, /heatmap-cbmir-.*\.onnx$/);
    // The INT8 variant (manifest "variants") shares the FP32 head, hence the same graph.
    const manifest = JSON.parse(await readFile(path.join(path.dirname(model.file), 'manifest.json'), 'utf8')) as { variants?: Record<string, { file: string }> };
    const int8 = manifest.variants?.int8?.file;
    assert.ok(int8, 'the manifest lists the INT8 variant');
    assert.equal(locateHeatmapModel(loadModelManifest(path.join(path.dirname(model.file), int8))), shipped);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'cbmir-heatmap-'));
    try {
      const file = path.join(dir, path.basename(model.file));
      await writeFile(file, 'not the model');
      const hm = `heatmap-${path.basename(model.file)}`;
      await copyFile(path.join(path.dirname(model.file), hm), path.join(dir, hm));
      await writeFile(path.join(dir, 'manifest.json'), JSON.stringify({ file: path.basename(model.file), sha256: 'a'.repeat(64), heatmap: { file: hm, source_sha256: 'b'.repeat(64) } }));
      assert.throws(() => locateHeatmapModel({ file, sha256: 'a'.repeat(64) }), /made for another model; run: python3 models\/train\/export_heatmap\.py/);
      await rm(path.join(dir, hm));
      await writeFile(path.join(dir, 'manifest.json'), '{}');
      assert.throws(() => locateHeatmapModel({ file }), /no heatmap model for .*export_heatmap\.py/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
