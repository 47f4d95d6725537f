/**
 * models/runtime/preprocess.ts against the Python reference's golden vectors
 * (models/train/golden/, written by models/train/golden.py from models/train/preprocess.py):
 * max abs difference ≤ the manifest's tolerance (1e-3) for every case, from the golden
 * decoded pixels; and end to end from the image files through our own decoders, and
 * through a DICOM written by `cbmir load` and decoded by core/dicom — the path the
 * index worker takes for loaded datasets.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { decodeDicom } from '../../core/dicom/decode.js';
import { writeMrInstance } from '../../core/dicom/mr-writer.js';
import { decodeSourceImage } from '../../core/dicom/source-image.js';
import { deterministicUid } from '../../core/dicom/uids.js';
import { LUMA as DECODER_LUMA } from '../../core/dicom/pixels.js';
import { LUMA, normalise, padSquare, percentiles, preprocess, resizePadded, resizeSquare, resizeWeights, rgbToGray } from '../../models/runtime/preprocess.js';
import { Embedder } from '../../models/runtime/embedder.js';
import { loadModelManifest } from '../../core/model-manifest.js';
import { repoRoot } from '../helpers/fixtures.js';

const goldenDir = path.join(repoRoot, 'models', 'train', 'golden');

interface GoldenCase {
  name: string;
  /** null: pixels only (a float image as a DICOM decoder hands it over, no file format for it). */
  image: string | null;
  embedding: { file: string; shape: number[] };
  pixels: { file: string; dtype: 'uint8' | 'uint16' | 'float32'; shape: number[] };
  input: { file: string; shape: number[] };
  /** The same preprocessing at another input size (a model trained at that size declares it in its manifest). */
  inputs_other_sizes?: { size: number; file: string }[];
}

const manifest = JSON.parse(readFileSync(path.join(goldenDir, 'manifest.json'), 'utf8')) as {
  preprocessing_version: number;
  model: { file: string; version: string; sha256: string };
  tolerance: { input_max_abs: number; embedding_max_abs: number };
  cases: GoldenCase[];
};
const tol = manifest.tolerance.input_max_abs;

function readPixels(c: GoldenCase): { data: ArrayLike<number>; rows: number; cols: number; channels: number } {
  const buf = readFileSync(path.join(goldenDir, c.pixels.file));
  const [rows, cols, channels = 1] = c.pixels.shape as [number, number, number?];
  const bytes = new Uint8Array(buf).buffer;
  const data = c.pixels.dtype === 'uint16' ? new Uint16Array(bytes) : c.pixels.dtype === 'float32' ? new Float32Array(bytes) : new Uint8Array(buf);
  assert.equal(data.length, rows * cols * channels, `${c.name}: pixel count`);
  return { data, rows, cols, channels };
}

function readExpected(c: GoldenCase): Float32Array {
  const buf = readFileSync(path.join(goldenDir, c.input.file));
  return new Float32Array(new Uint8Array(buf).buffer);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

function grayOf(c: GoldenCase) {
  const p = readPixels(c);
  const gray = p.channels === 1 ? p.data : rgbToGray(p.data, p.rows, p.cols, p.channels as 3 | 4);
  return { gray, rows: p.rows, cols: p.cols };
}

describe('preprocess matches the Python reference (golden vectors)', () => {
  it('is the preprocessing version the golden files were made for', () => {
    assert.equal(manifest.preprocessing_version, 1);
    assert.ok(manifest.cases.length >= 7);
    // odd padding, upsampling and signed fractional values each have a case (golden.py)
    const shapes = manifest.cases.map((c) => c.pixels.shape);
    assert.ok(shapes.some(([h, w]) => (Math.max(h!, w!) - Math.min(h!, w!)) % 2 === 1), 'a case pads by an odd amount');
    assert.ok(shapes.some(([h, w]) => Math.max(h!, w!) < 224), 'a case is upsampled');
    assert.ok(manifest.cases.some((c) => c.pixels.dtype === 'float32'), 'a case has signed fractional values');
    assert.deepEqual([...LUMA], [...DECODER_LUMA], 'decoder and preprocessing use the same luma');
  });

  for (const c of manifest.cases) {
    it(`${c.name}: max abs diff ≤ ${tol}`, () => {
      const { gray, rows, cols } = grayOf(c);
      const side = c.input.shape[0]!; // the shipped model's input size
      const out = preprocess(gray, rows, cols, side);
      assert.equal(out.length, side * side);
      const d = maxAbsDiff(out, readExpected(c));
      assert.ok(d <= tol, `${c.name}: max abs diff ${d}`);
    });
  }

  it('matches at another input size too (what a model trained at 320 is fed)', () => {
    const sized = manifest.cases.flatMap((c) => (c.inputs_other_sizes ?? []).map((o) => ({ c, o })));
    assert.ok(sized.length >= 1, 'golden.py writes at least one case at another size');
    for (const { c, o } of sized) {
      const { gray, rows, cols } = grayOf(c);
      const out = preprocess(gray, rows, cols, o.size);
      assert.equal(out.length, o.size * o.size);
      const expected = new Float32Array(new Uint8Array(readFileSync(path.join(goldenDir, o.file))).buffer);
      const d = maxAbsDiff(out, expected);
      assert.ok(d <= tol, `${c.name} at ${o.size}: max abs diff ${d}`);
    }
  });

  it('decodes the golden image files to the golden pixels (gray cases), so file → input matches too', async () => {
    for (const c of manifest.cases) {
      const p = readPixels(c);
      if (p.channels !== 1 || c.image === null) continue; // cbmir load takes grayscale image files only
      const img = await decodeSourceImage(readFileSync(path.join(goldenDir, c.image)));
      assert.deepEqual([img.rows, img.cols], [p.rows, p.cols]);
      assert.equal(maxAbsDiff(img.pixels, p.data), 0, `${c.name}: decoded pixels differ from PIL's`);
    }
  });

  it('image → cbmir load DICOM → decodeDicom → preprocess equals the golden input', async () => {
    for (const c of manifest.cases) {
      if (readPixels(c).channels !== 1 || c.image === null) continue;
      const img = await decodeSourceImage(readFileSync(path.join(goldenDir, c.image)));
      const dicom = writeMrInstance({
        pixels: img.pixels,
        rows: img.rows,
        cols: img.cols,
        bitsStored: img.bitsStored,
        studyInstanceUid: deterministicUid('golden-study', c.name),
        seriesInstanceUid: deterministicUid('golden-series', c.name),
        sopInstanceUid: deterministicUid('golden-instance', c.name),
        patientId: c.name,
        patientName: `golden^${c.name}`,
        seriesNumber: 1,
        instanceNumber: 1,
        studyDate: '20260101',
      });
      const r = await decodeDicom(dicom);
      assert.ok(r.ok, !r.ok ? r.reason : '');
      if (!r.ok) return;
      const f = r.frames[0]!;
      const d = maxAbsDiff(preprocess(f.pixels, f.rows, f.cols), readExpected(c));
      assert.ok(d <= tol, `${c.name}: max abs diff ${d}`);
    }
  });
});

describe('TypeScript preprocess + onnxruntime-node embedding match the Python pipeline', () => {
  it(`gives the golden embeddings (max abs diff ≤ ${manifest.tolerance.embedding_max_abs}) for the shipped model`, async () => {
    const model = loadModelManifest();
    assert.equal(
      model.version,
      manifest.model.version,
      `golden vectors are for model ${manifest.model.version}, the shipped model is ${model.version}: run python3 models/train/golden.py`,
    );
    const embedder = await Embedder.load(model, { preferGpu: false, threads: 1 });
    try {
      // Inputs from OUR preprocessing of the golden pixels, not the golden inputs: the whole TS path.
      const inputs = manifest.cases.map((c) => {
        const { gray, rows, cols } = grayOf(c);
        return preprocess(gray, rows, cols, model.inputSize);
      });
      const { embeddings } = await embedder.embed(inputs);
      manifest.cases.forEach((c, k) => {
        const expected = new Float32Array(new Uint8Array(readFileSync(path.join(goldenDir, c.embedding.file))).buffer);
        const d = maxAbsDiff(embeddings[k]!, expected);
        assert.ok(d <= manifest.tolerance.embedding_max_abs, `${c.name}: embedding max abs diff ${d}`);
      });
    } finally {
      await embedder.close();
    }
  });
});

describe('preprocess building blocks', () => {
  it('takes percentiles by rank without interpolation', () => {
    const x = Float64Array.from({ length: 1001 }, (_, i) => 1000 - i); // 0..1000 reversed
    assert.deepEqual(percentiles(x), [5, 995]); // ⌊0.005·1000⌋ = 5, ⌊0.995·1000⌋ = 995
    assert.deepEqual([...normalise([7, 7, 7])], [0, 0, 0], 'constant image → zeros');
  });

  it('gives the values of a full sort on both paths (histogram for integers, quickselect otherwise)', () => {
    let seed = 42;
    const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (const n of [1, 2, 7, 1000, 40_001]) {
      const ints = Float64Array.from({ length: n }, () => Math.floor(rand() * 4096) - 1000);
      const floats = Float64Array.from(ints, (v) => v * 0.37 + rand() * 1e-3);
      for (const x of [ints, floats]) {
        const sorted = Float64Array.from(x).sort();
        const expected = [sorted[Math.floor(0.005 * (n - 1))], sorted[Math.floor(0.995 * (n - 1))]];
        assert.deepEqual(percentiles(x), expected, `n=${n}`);
      }
    }
  });

  it('has weight rows that sum to 1 and is the identity at 224', () => {
    for (const s of [197, 224, 233, 480, 512]) {
      const { weights } = resizeWeights(s);
      for (const w of weights) assert.ok(Math.abs(w.reduce((a, b) => a + b, 0) - 1) < 1e-12);
    }
    const { start, weights } = resizeWeights(224);
    for (let i = 0; i < 224; i++) {
      const w = weights[i]!;
      const j = w.findIndex((v) => v === 1);
      assert.equal(start[i]! + j, i);
    }
  });

  it('resizes without the padded square to the same bits as padding, then resizing (the spec\'s steps 3 and 4)', async () => {
    // The golden cases (odd padding, upsampling, signed fractional values) and crops of a real
    // DICOM image: wide and tall by odd and even amounts, thin strips, and at another output size.
    const dfl = await decodeDicom(readFileSync(path.join(repoRoot, 'test', 'fixtures', 'dicom-samples', 'transfer-syntax', 'deflate_image_dfl.dcm')));
    assert.ok(dfl.ok);
    if (!dfl.ok) return;
    const real = dfl.frames[0]!;
    const crop = (rows: number, cols: number) => ({
      gray: Float32Array.from({ length: rows * cols }, (_, i) => real.pixels[(100 + Math.floor(i / cols)) * real.cols + 50 + (i % cols)]!),
      rows,
      cols,
    });
    const images = [...manifest.cases.map(grayOf), crop(300, 411), crop(411, 300), crop(301, 410), crop(1, 400), crop(400, 1), crop(150, 150)];
    for (const { gray, rows, cols } of images) {
      for (const outSize of [224, 320]) {
        const n = normalise(gray);
        const { data, size } = padSquare(n, rows, cols);
        assert.deepEqual(resizePadded(n, rows, cols, outSize), resizeSquare(data, size, outSize), `${rows}×${cols} → ${outSize}`);
      }
    }
  });

  it('rejects a pixel count that does not match the size', () => {
    assert.throws(() => preprocess(new Float32Array(10), 3, 4), RangeError);
  });
});
