/**
 * core/dicom/decode on the repo's own real samples (test/fixtures/dicom-samples):
 * every file decodes or is refused with a reason, the same image in seven encodings
 * decodes to the same numbers, known pixel values match pydicom's published reference
 * values, and the pixel semantics (Modality LUT, MONOCHROME1, sign, Bits Stored,
 * palette, planar RGB, multi-frame selection) are checked on real pixels by editing
 * only the header attributes that govern them.
 */
import assert from 'node:assert/strict';
import { deflateRawSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, it } from 'node:test';
import dcmjs, { type DcmDataset } from 'dcmjs';
import { decodeDicom, selectFrames, type DecodeOk, type DecodeResult } from '../../core/dicom/decode.js';
import { decodeEncapsulatedFrame, initCodecs, markCodecsForReset } from '../../core/dicom/codecs.js';
import { LUMA } from '../../core/dicom/pixels.js';
import { loadConfig } from '../../core/config.js';
import { workerDecodeOptions } from '../../workers/embedding-pipeline.js';
import { dicomFixturesDir, listDicom, readManifest } from '../helpers/fixtures.js';

const fixture = (name: string) => readFileSync(path.join(dicomFixturesDir, name));

function ok(r: DecodeResult): DecodeOk {
  if (!r.ok) assert.fail(`expected a decoded image, got refusal ${r.code}: ${r.reason}`);
  return r;
}

/** Re-encode a real file with header edits (Explicit VR LE, pixels untouched). */
function withHeader(bytes: Uint8Array, edit: (ds: DcmDataset) => void): Uint8Array {
  const copy = new Uint8Array(bytes).buffer;
  const dict = dcmjs.data.DicomMessage.readFile(copy);
  // dcmjs writes what it read uncompressed: say so (a deflated source is inflated now).
  dict.meta['00020010'] = { vr: 'UI', Value: ['1.2.840.10008.1.2.1'] };
  edit(dict.dict);
  return new Uint8Array(dict.write());
}

/** The mosaic sample as a plain image (ImageType without MOSAIC): its whole 384×384 frame is decoded. */
const wholeFrame = (bytes: Uint8Array) =>
  withHeader(bytes, (ds) => {
    ds['00080008'] = { vr: 'CS', Value: ['ORIGINAL', 'PRIMARY', 'M', 'ND'] };
  });

const at = (r: DecodeOk, row: number, col: number, frame = 0) => r.frames[frame]!.pixels[row * r.frames[frame]!.cols + col]!;

describe('decodeDicom on test/fixtures/dicom-samples', () => {
  const manifest = readManifest(dicomFixturesDir);

  it('has the 12 files its README lists', () => {
    assert.deepEqual(listDicom(dicomFixturesDir), [...manifest.keys()].sort());
  });

  for (const [file, m] of manifest) {
    it(`${file}: ${m.frames ? 'decodes' : 'is refused with a reason'}`, async () => {
      const r = await decodeDicom(fixture(file));
      if (!m.frames) {
        assert.equal(r.ok, false);
        if (r.ok) return;
        assert.equal(r.code, 'NOT_AN_IMAGE');
        assert.match(r.reason, /^not an image: /);
        assert.ok(r.meta?.sopInstanceUid, 'a refusal still names the instance');
        return;
      }
      const d = ok(r);
      assert.equal(d.frames.length, 1);
      const f = d.frames[0]!;
      // A Siemens mosaic (6×6 tiles of 64×64, 35 slices) is embedded as its middle slice.
      const mosaic = file.includes('siemens_mosaic_');
      assert.equal(f.rows, mosaic ? Number(m.rows) / 6 : Number(m.rows));
      assert.equal(f.cols, mosaic ? Number(m.columns) / 6 : Number(m.columns));
      assert.equal(f.mosaicSlice, mosaic ? 18 : undefined);
      assert.equal(f.pixels.length, f.rows * f.cols);
      assert.equal(d.meta.sopClassUid, m.sop_class);
      assert.equal(d.meta.transferSyntaxUid, m.transfer_syntax_uid);
      let min = Infinity;
      let max = -Infinity;
      for (const v of f.pixels) {
        assert.ok(Number.isFinite(v));
        min = Math.min(min, v);
        max = Math.max(max, v);
      }
      assert.ok(max > min, 'a real image is not constant');
    });
  }

  it("decodes a compressed image even when another decode's codec trap reset the module while it waited", async () => {
    const file = fixture('transfer-syntax/jpeg_baseline_SC_rgb_jpeg_dcmtk.dcm');
    await initCodecs();
    const pending = decodeDicom(file); // runs up to its await of the codecs
    markCodecsForReset(); // what a WebAssembly trap in a concurrent decode does
    ok(await pending);
  });

  it('refuses a frame over the pixel limit (36 Mi by default) from its Rows and Columns, before reading its pixels', async () => {
    // The mosaic's header re-declared 6145 × 6144, one row over 6144²: its 384² pixels are never read.
    const huge = withHeader(fixture('transfer-syntax/siemens_mosaic_1.dcm'), (ds) => {
      ds['00280010'] = { vr: 'US', Value: [6145] };
      ds['00280011'] = { vr: 'US', Value: [6144] };
    });
    const r = await decodeDicom(huge);
    assert.deepEqual(r.ok ? [] : [r.code, r.reason], ['TOO_LARGE', 'frame of 6145×6144 exceeds 37748736 pixels']);
    // A thin strip is bounded by its own pixels: preprocessing pads it to a square without building it.
    const strip = withHeader(fixture('transfer-syntax/siemens_mosaic_1.dcm'), (ds) => {
      ds['00280010'] = { vr: 'US', Value: [16] };
      ds['00280011'] = { vr: 'US', Value: [9216] };
    });
    const long = ok(await decodeDicom(strip)).frames[0]!;
    assert.deepEqual([long.rows, long.cols], [16, 9216]);
    const low = await decodeDicom(strip, { maxPixelsPerFrame: 100_000 });
    assert.deepEqual(low.ok ? [] : [low.code, low.reason], ['TOO_LARGE', 'frame of 16×9216 exceeds 100000 pixels']);
  });

  it('decodes a frame over the default when a worker is configured with a larger CBMIR_WORKER_MAX_FRAME_PIXELS', async () => {
    // The real 8-bit image tiled to 5000 × 7600 (38 M pixels, over 36 Mi), built here rather than stored.
    const source = ok(await decodeDicom(fixture('transfer-syntax/deflate_image_dfl.dcm'))).frames[0]!;
    const [rows, cols] = [5000, 7600];
    const tiled = new Uint8Array(rows * cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) tiled[r * cols + c] = source.pixels[(r % 512) * 512 + (c % 512)]!;
    const big = withHeader(fixture('transfer-syntax/deflate_image_dfl.dcm'), (ds) => {
      ds['00280010'] = { vr: 'US', Value: [rows] };
      ds['00280011'] = { vr: 'US', Value: [cols] };
      ds['7FE00010'] = { vr: 'OB', Value: [tiled.buffer] };
    });
    const refused = await decodeDicom(big, workerDecodeOptions(loadConfig({}, { serves: false })));
    assert.deepEqual(refused.ok ? [] : [refused.code, refused.reason], ['TOO_LARGE', 'frame of 5000×7600 exceeds 37748736 pixels']);
    const raised = workerDecodeOptions(loadConfig({ CBMIR_WORKER_MAX_FRAME_PIXELS: '40000000' }, { serves: false }));
    const frame = ok(await decodeDicom(big, raised)).frames[0]!;
    assert.deepEqual([frame.rows, frame.cols], [rows, cols]);
    for (const [r, c] of [[0, 0], [4999, 7599], [2600, 3333]] as const) assert.equal(frame.pixels[r * cols + c], source.pixels[(r % 512) * 512 + (c % 512)]);
  });

  it('decodes the same mosaic identically in all 7 encodings (LE, implicit, BE, RLE, JPEG-LL, JPEG-LS, J2K)', async () => {
    const files = [...manifest.keys()].filter((f) => f.includes('siemens_mosaic_'));
    assert.equal(files.length, 7);
    const ref = ok(await decodeDicom(fixture(files[0]!))).frames[0]!.pixels;
    for (const f of files.slice(1)) {
      const px = ok(await decodeDicom(fixture(f))).frames[0]!.pixels;
      assert.deepEqual(px, ref, `${f} differs from ${files[0]}`);
    }
    // 12-bit data: every value inside 0..4095, and the image is not empty.
    assert.ok(ref.every((v) => v >= 0 && v <= 4095));
    assert.ok(ref.some((v) => v > 1000));
  });

  it('embeds a Siemens mosaic as its middle slice: tile 18 of 35, in every encoding (implicit VR: the count as UN bytes)', async () => {
    const whole = ok(await decodeDicom(wholeFrame(fixture('transfer-syntax/siemens_mosaic_1.dcm')))).frames[0]!;
    assert.equal(whole.rows, 384);
    // Tile index 17 of a 6×6 grid: row 2, column 5 → pixels [128, 192) × [320, 384).
    const want = new Float32Array(64 * 64);
    for (let r = 0; r < 64; r++) want.set(whole.pixels.subarray((128 + r) * 384 + 320, (128 + r) * 384 + 384), r * 64);
    for (const f of [...manifest.keys()].filter((k) => k.includes('siemens_mosaic_'))) {
      const tile = ok(await decodeDicom(fixture(f))).frames[0]!;
      assert.deepEqual([tile.rows, tile.cols, tile.mosaicSlice], [64, 64, 18], f);
      assert.deepEqual(tile.pixels, want, f);
    }
    // No slice count, or a grid that does not fit the frame: the whole image, as before.
    for (const edit of [(ds: DcmDataset) => delete ds['0019100A'], (ds: DcmDataset) => (ds['0019100A'] = { vr: 'US', Value: [37] }) /* a 7×7 grid: 384 is no multiple of 7 */]) {
      const d = ok(await decodeDicom(withHeader(fixture('transfer-syntax/siemens_mosaic_1.dcm'), edit)));
      assert.deepEqual([d.frames[0]!.rows, d.frames[0]!.mosaicSlice], [384, undefined]);
    }
  });

  it('matches pydicom reference values for the deflated image (image_dfl.dcm)', async () => {
    const d = ok(await decodeDicom(fixture('transfer-syntax/deflate_image_dfl.dcm')));
    const row = (r: number) => Array.from(d.frames[0]!.pixels.subarray(r * 512, (r + 1) * 512));
    assert.equal(Math.min(...row(10)), 41);
    assert.equal(Math.max(...row(10)), 255);
    assert.deepEqual(row(300).slice(255, 263), [138, 65, 65, 65, 65, 35, 35, 35]);
    assert.equal(Math.min(...row(500)), 65);
    assert.equal(Math.max(...row(500)), 219);
  });

  it('turns JPEG YBR_FULL colour into BT.601 luma (pydicom reference Y values, ±1)', async () => {
    const d = ok(await decodeDicom(fixture('transfer-syntax/jpeg_baseline_SC_rgb_jpeg_dcmtk.dcm')));
    // pydicom's reference Y (luma) of SC_rgb_jpeg_dcmtk.dcm at column 50 of these rows.
    const expected: [number, number][] = [
      [5, 76], [15, 166], [25, 150], [35, 203], [45, 29], [55, 142], [65, 0], [75, 64], [85, 192], [95, 255],
    ];
    for (const [r, y] of expected) assert.ok(Math.abs(at(d, r, 50) - y) <= 1, `row ${r}: ${at(d, r, 50)} vs ${y}`);
  });

  it('refuses SR and presentation states by name', async () => {
    const sr = await decodeDicom(fixture('non-image/comprehensive_sr_test-SR.dcm'));
    assert.deepEqual([sr.ok, !sr.ok && sr.reason], [false, 'not an image: Comprehensive SR']);
    const pr = await decodeDicom(fixture('non-image/gsps_PR000000.dcm'));
    assert.deepEqual([pr.ok, !pr.ok && pr.reason], [false, 'not an image: Grayscale Softcopy Presentation State']);
  });
});

describe('multi-frame selection (Enhanced MR, 6 frames)', () => {
  const file = fixture('multi-frame/enhanced_mr_xa10_6fr.dcm');

  it('embeds the middle frame by default and says which', async () => {
    const d = ok(await decodeDicom(file));
    assert.equal(d.frames.length, 1);
    assert.equal(d.frames[0]!.frameNumber, 3);
    assert.equal(d.meta.numberOfFrames, 6);
  });

  it("'all' decodes every frame, in order, and the middle one is the default's", async () => {
    const all = ok(await decodeDicom(file, { frames: 'all' }));
    assert.deepEqual(all.frames.map((f) => f.frameNumber), [1, 2, 3, 4, 5, 6]);
    const mid = ok(await decodeDicom(file));
    assert.deepEqual(all.frames[2]!.pixels, mid.frames[0]!.pixels);
    assert.notDeepEqual(all.frames[0]!.pixels, all.frames[5]!.pixels);
    const first = ok(await decodeDicom(file, { frames: 'first' }));
    assert.deepEqual(first.frames[0]!.pixels, all.frames[0]!.pixels);
  });

  it('applies the per-frame Pixel Value Transformation of the frame it decodes', async () => {
    const edited = withHeader(file, (ds) => {
      const perFrame = ds['52009230']!.Value as DcmDataset[];
      const pvt = (perFrame[2]!['00289145']!.Value as DcmDataset[])[0]!;
      pvt['00281053'] = { vr: 'DS', Value: [2] };
      pvt['00281052'] = { vr: 'DS', Value: [-10] };
    });
    const before = ok(await decodeDicom(file, { frames: 'all' }));
    const after = ok(await decodeDicom(edited, { frames: 'all' }));
    assert.deepEqual(after.frames[1]!.pixels, before.frames[1]!.pixels, 'frame 2 untouched');
    const a = after.frames[2]!.pixels;
    const b = before.frames[2]!.pixels;
    for (let i = 0; i < a.length; i += 97) assert.equal(a[i], b[i]! * 2 - 10);
  });

  it('selectFrames spreads a capped selection over the whole object', () => {
    assert.deepEqual(selectFrames(1), [0]);
    assert.deepEqual(selectFrames(96), [47]);
    assert.deepEqual(selectFrames(30, 'first'), [0]);
    assert.deepEqual(selectFrames(4, 'all', 16), [0, 1, 2, 3]);
    const capped = selectFrames(96, 'all', 4);
    assert.deepEqual(capped, [12, 36, 60, 84]);
  });
});

describe('pixel semantics on real pixels (header edits of siemens_mosaic_1.dcm)', () => {
  const base = wholeFrame(fixture('transfer-syntax/siemens_mosaic_1.dcm'));
  const original = () => decodeDicom(base).then((r) => ok(r).frames[0]!.pixels);

  it('applies Rescale Slope/Intercept (Modality LUT)', async () => {
    const px = await original();
    const d = ok(await decodeDicom(withHeader(base, (ds) => {
      ds['00281053'] = { vr: 'DS', Value: [0.5] };
      ds['00281052'] = { vr: 'DS', Value: [-1024] };
    })));
    const out = d.frames[0]!.pixels;
    for (let i = 0; i < px.length; i += 101) assert.equal(out[i], px[i]! * 0.5 - 1024);
  });

  it('refuses a rescale beyond float range and Rows/Columns that are not whole numbers, with reasons', async () => {
    const huge = await decodeDicom(withHeader(base, (ds) => {
      ds['00281053'] = { vr: 'DS', Value: [1e308] };
    }));
    assert.equal(huge.ok, false);
    assert.deepEqual(huge.ok ? [] : [huge.code, /beyond float range/.test(huge.reason)], ['UNSUPPORTED_PIXELS', true]);
    const half = await decodeDicom(withHeader(base, (ds) => {
      ds['00280010'] = { vr: 'DS', Value: [383.5] };
    }));
    assert.equal(half.ok, false);
    assert.deepEqual(half.ok ? [] : [half.code, /not whole numbers/.test(half.reason)], ['MALFORMED', true]);
  });

  it('inverts MONOCHROME1 so that brighter still means more signal', async () => {
    const px = await original();
    const d = ok(await decodeDicom(withHeader(base, (ds) => {
      ds['00280004'] = { vr: 'CS', Value: ['MONOCHROME1'] };
    })));
    let min = Infinity;
    let max = -Infinity;
    for (const v of px) {
      min = Math.min(min, v);
      max = Math.max(max, v);
    }
    const out = d.frames[0]!.pixels;
    for (let i = 0; i < px.length; i += 101) assert.equal(out[i], max + min - px[i]!);
  });

  it('sign-extends at Bits Stored when Pixel Representation is 1', async () => {
    const px = await original(); // 12-bit unsigned, some values ≥ 2048
    assert.ok(px.some((v) => v >= 2048));
    const d = ok(await decodeDicom(withHeader(base, (ds) => {
      ds['00280103'] = { vr: 'US', Value: [1] };
    })));
    const out = d.frames[0]!.pixels;
    for (let i = 0; i < px.length; i++) assert.equal(out[i], px[i]! >= 2048 ? px[i]! - 4096 : px[i]);
  });

  it('masks to Bits Stored below High Bit', async () => {
    const px = await original();
    const d = ok(await decodeDicom(withHeader(base, (ds) => {
      ds['00280101'] = { vr: 'US', Value: [8] };
      ds['00280102'] = { vr: 'US', Value: [7] };
    })));
    const out = d.frames[0]!.pixels;
    for (let i = 0; i < px.length; i += 13) assert.equal(out[i], px[i]! & 0xff);
  });

  it('refuses Pixel Data cut short, native or encapsulated, instead of zero-filling it', async () => {
    for (const name of ['siemens_mosaic_1', 'siemens_mosaic_2', 'siemens_mosaic_3', 'siemens_mosaic_4', 'siemens_mosaic_9']) {
      const bytes = fixture(`transfer-syntax/${name}.dcm`);
      const r = await decodeDicom(bytes.subarray(0, bytes.length - 1000));
      assert.equal(r.ok, false, name);
      assert.ok(!r.ok && r.code === 'MALFORMED' && /truncated/.test(r.reason), !r.ok ? `${name}: ${r.reason}` : name);
    }
  });
});

describe('colour paths', () => {
  it('maps PALETTE COLOR through the palette, then to luma', async () => {
    const gray = fixture('transfer-syntax/deflate_image_dfl.dcm'); // 8-bit MONOCHROME2
    const px = ok(await decodeDicom(gray)).frames[0]!.pixels;
    const red = Uint16Array.from({ length: 256 }, (_, i) => i);
    const green = Uint16Array.from({ length: 256 }, (_, i) => 255 - i);
    const blue = new Uint16Array(256).fill(40);
    const d = ok(await decodeDicom(withHeader(gray, (ds) => {
      ds['00280004'] = { vr: 'CS', Value: ['PALETTE COLOR'] };
      for (const [d, t, lut] of [['00281101', '00281201', red], ['00281102', '00281202', green], ['00281103', '00281203', blue]] as const) {
        ds[d] = { vr: 'US', Value: [256, 0, 16] };
        ds[t] = { vr: 'OW', Value: [lut.buffer] };
      }
    })));
    const out = d.frames[0]!.pixels;
    for (let i = 0; i < px.length; i += 101) {
      const v = px[i]!;
      assert.ok(Math.abs(out[i]! - (LUMA[0] * v + LUMA[1] * (255 - v) + LUMA[2] * 40)) < 1e-3);
    }
  });

  it('reads interleaved and planar native RGB alike, and native YBR through RGB (pixels from the real JPEG file)', async () => {
    const jpegFile = fixture('transfer-syntax/jpeg_baseline_SC_rgb_jpeg_dcmtk.dcm');
    const viaJpeg = ok(await decodeDicom(jpegFile)).frames[0]!.pixels;
    // Decode the JPEG to RGB once, then store it uncompressed both ways.
    await initCodecs();
    const dict = dcmjs.data.DicomMessage.readFile(new Uint8Array(jpegFile).buffer);
    const frame = new Uint8Array((dict.dict['7FE00010']!.Value as ArrayBuffer[])[0]!);
    const rgb = decodeEncapsulatedFrame('jpeg', frame, {
      rows: 100, cols: 100, bitsAllocated: 8, bitsStored: 8, samplesPerPixel: 3, pixelRepresentation: 0, planarConfiguration: 0, photometric: 'YBR_FULL',
    }).bytes;
    const n = 100 * 100;
    const planar = new Uint8Array(n * 3);
    for (let p = 0; p < n; p++) for (let c = 0; c < 3; c++) planar[c * n + p] = rgb[p * 3 + c]!;
    const native = (bytes: Uint8Array, planarConfiguration: number) => {
      dict.meta['00020010'] = { vr: 'UI', Value: ['1.2.840.10008.1.2.1'] };
      dict.dict['00280004'] = { vr: 'CS', Value: ['RGB'] };
      dict.dict['00280006'] = { vr: 'US', Value: [planarConfiguration] };
      dict.dict['7FE00010'] = { vr: 'OB', Value: [Uint8Array.from(bytes).buffer] };
      return new Uint8Array(dict.write());
    };
    const inter = ok(await decodeDicom(native(rgb, 0))).frames[0]!.pixels;
    const plan = ok(await decodeDicom(native(planar, 1))).frames[0]!.pixels;
    assert.deepEqual(inter, viaJpeg);
    assert.deepEqual(plan, viaJpeg);

    // Native YBR_FULL of the same image: converted to RGB, then luma (PREPROCESSING.md), so it
    // embeds like the JPEG path, within the rounding of storing it as YBR (a level at most).
    const ybr = new Uint8Array(n * 3);
    const byte = (v: number) => Math.min(255, Math.max(0, Math.round(v)));
    for (let p = 0; p < n; p++) {
      const [r, g, b] = [rgb[p * 3]!, rgb[p * 3 + 1]!, rgb[p * 3 + 2]!];
      ybr[p * 3] = byte(0.299 * r + 0.587 * g + 0.114 * b);
      ybr[p * 3 + 1] = byte(-0.168736 * r - 0.331264 * g + 0.5 * b + 128);
      ybr[p * 3 + 2] = byte(0.5 * r - 0.418688 * g - 0.081312 * b + 128);
    }
    const asYbr = (bytes: Uint8Array, photometric: string) => {
      dict.meta['00020010'] = { vr: 'UI', Value: ['1.2.840.10008.1.2.1'] };
      dict.dict['00280004'] = { vr: 'CS', Value: [photometric] };
      dict.dict['00280006'] = { vr: 'US', Value: [0] };
      dict.dict['7FE00010'] = { vr: 'OB', Value: [Uint8Array.from(bytes).buffer] };
      return new Uint8Array(dict.write());
    };
    const fromYbr = ok(await decodeDicom(asYbr(ybr, 'YBR_FULL'))).frames[0]!.pixels;
    fromYbr.forEach((v, i) => assert.ok(Math.abs(v - viaJpeg[i]!) <= 1.2, `pixel ${i}: ${v} vs ${viaJpeg[i]}`));

    // A saturated colour outside the RGB cube: Y alone (250) is far from the luma of the clipped
    // RGB it stands for (255, 159, 250 → 198.0): the old reading of Y is what this catches.
    const sat = new Uint8Array(n * 3);
    for (let p = 0; p < n; p++) sat.set([250, 128, 255], p * 3);
    const want = 0.299 * 255 + 0.587 * 159 + 0.114 * 250;
    for (const v of ok(await decodeDicom(asYbr(sat, 'YBR_FULL'))).frames[0]!.pixels) assert.ok(Math.abs(v - want) < 1e-3, `${v} vs ${want}`);
    // YBR_FULL_422: Y0 Y1 Cb Cr, both pixels of a pair take its chroma.
    const pairs = new Uint8Array(n * 2);
    for (let p = 0; p < n; p += 2) pairs.set([250, 40, 128, 255], p * 2);
    dict.dict['00280002'] = { vr: 'US', Value: [3] };
    const sub = ok(await decodeDicom(asYbr(pairs, 'YBR_FULL_422'))).frames[0]!.pixels;
    const second = 0.299 * byte(40 + 1.402 * 127) + 0.587 * byte(40 - 0.714136 * 127) + 0.114 * 40;
    for (let p = 0; p < n; p += 2) {
      assert.ok(Math.abs(sub[p]! - want) < 1e-3 && Math.abs(sub[p + 1]! - second) < 1e-3, `pair ${p}: ${sub[p]}, ${sub[p + 1]}`);
    }
  });
});

describe('syntaxes with no sample file: HTJ2K and JPEG XL', () => {
  // The same real mosaic, re-encoded by dcmjs-codecs' own Transcoder (its own Part-10
  // writer and encoders), then decoded by our path: lossless syntaxes must give the
  // original numbers back, the lossy one must stay within one grey level.
  const req = createRequire(import.meta.url);
  const lib = req('dcmjs-codecs') as typeof import('dcmjs-codecs');
  // The transcoder's own (nested) dcmjs logs every private tag it does not know: silence it.
  const nested = createRequire(req.resolve('dcmjs-codecs'))('dcmjs') as typeof import('dcmjs').default;
  nested.log.setLevel('silent');
  nested.log.getLogger('validation.dcmjs').setLevel('silent');
  const cases: [string, number][] = [
    ['1.2.840.10008.1.2.4.201', 0], // HTJ2K lossless
    ['1.2.840.10008.1.2.4.202', 0], // HTJ2K RPCL lossless
    ['1.2.840.10008.1.2.4.203', 1], // HTJ2K
    ['1.2.840.10008.1.2.4.110', 0], // JPEG XL lossless
  ];
  for (const [ts, tolerance] of cases) {
    it(`${ts} decodes within ${tolerance}`, async () => {
      await initCodecs();
      const src = wholeFrame(fixture('transfer-syntax/siemens_mosaic_1.dcm'));
      const ref = ok(await decodeDicom(src)).frames[0]!.pixels;
      const t = new lib.Transcoder(new Uint8Array(src).buffer);
      t.transcode(ts);
      const encoded = new Uint8Array(t.getDicomPart10());
      const d = ok(await decodeDicom(encoded));
      assert.equal(d.meta.transferSyntaxUid, ts);
      let worst = 0;
      d.frames[0]!.pixels.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - ref[i]!))));
      assert.ok(worst <= tolerance, `max abs diff ${worst}`);
    });
  }
});

describe('codec output that does not match the header: normalised or refused by name', () => {
  const req = createRequire(import.meta.url);
  const lib = req('dcmjs-codecs') as typeof import('dcmjs-codecs');
  const nested = createRequire(req.resolve('dcmjs-codecs'))('dcmjs') as typeof import('dcmjs').default;
  nested.log.setLevel('silent');
  nested.log.getLogger('validation.dcmjs').setLevel('silent');
  const TS_JPEG_LOSSLESS_SV1 = '1.2.840.10008.1.2.4.70';
  const TS_JPEG_LS = '1.2.840.10008.1.2.4.80';
  const TS_J2K_LOSSLESS = '1.2.840.10008.1.2.4.90';
  const us = (v: number) => ({ vr: 'US', Value: [v] });

  /** A native Part-10 file transcoded by dcmjs-codecs, then its header edited (pixels as encoded). */
  function transcoded(native: Uint8Array, ts: string, edit: (ds: DcmDataset, frame: Uint8Array) => void): Uint8Array {
    const t = new lib.Transcoder(new Uint8Array(native).buffer);
    t.transcode(ts);
    const dict = dcmjs.data.DicomMessage.readFile(t.getDicomPart10());
    edit(dict.dict, new Uint8Array((dict.dict['7FE00010']!.Value as ArrayBuffer[])[0]!));
    return new Uint8Array(dict.write());
  }

  /** The 8-bit deflated image's pixels, encoded as stored, in a dataset that says Bits Allocated 16 (Bits Stored 8, High Bit 7). */
  const eightBitIn16 = (ts: string) =>
    transcoded(withHeader(fixture('transfer-syntax/deflate_image_dfl.dcm'), () => undefined), ts, (ds) => {
      ds['00280100'] = us(16);
    });

  it('an 8-bit JPEG and an 8-bit JPEG 2000 in a 16-bit dataset decode to the 8-bit image', async () => {
    const want = ok(await decodeDicom(fixture('transfer-syntax/deflate_image_dfl.dcm'))).frames[0]!.pixels;
    for (const ts of [TS_JPEG_LOSSLESS_SV1, TS_J2K_LOSSLESS]) {
      const d = ok(await decodeDicom(eightBitIn16(ts)));
      assert.deepEqual(d.frames[0]!.pixels, want, ts);
    }
  });

  /** The RGB pixels of the colour JPEG sample, decoded once. */
  async function rgbOfJpegSample(): Promise<Uint8Array> {
    await initCodecs();
    const dict = dcmjs.data.DicomMessage.readFile(new Uint8Array(fixture('transfer-syntax/jpeg_baseline_SC_rgb_jpeg_dcmtk.dcm')).buffer);
    const frame = new Uint8Array((dict.dict['7FE00010']!.Value as ArrayBuffer[])[0]!);
    return decodeEncapsulatedFrame('jpeg', frame, {
      rows: 100, cols: 100, bitsAllocated: 8, bitsStored: 8, samplesPerPixel: 3, pixelRepresentation: 0, planarConfiguration: 0, photometric: 'YBR_FULL',
    }).bytes;
  }

  /** The colour sample with other Pixel Data (and transfer syntax, and Photometric Interpretation RGB). */
  function colourFile(ts: string, pixels: Uint8Array): Uint8Array {
    const dict = dcmjs.data.DicomMessage.readFile(new Uint8Array(fixture('transfer-syntax/jpeg_baseline_SC_rgb_jpeg_dcmtk.dcm')).buffer);
    dict.meta['00020010'] = { vr: 'UI', Value: [ts] };
    dict.dict['00280004'] = { vr: 'CS', Value: ['RGB'] };
    dict.dict['7FE00010'] = { vr: 'OB', Value: [Uint8Array.from(pixels).buffer] };
    return new Uint8Array(dict.write());
  }

  /**
   * A colour JPEG-LS frame in interleave mode "none" (one scan per component), which
   * dcmjs-codecs' encoder never writes: each plane encoded alone (a scan starts from fresh
   * contexts either way), then the three scans put behind one 3-component frame header.
   */
  function jpegLsOneScanPerComponent(rgb: Uint8Array, rows: number, cols: number): Uint8Array {
    const n = rows * cols;
    const parts: Uint8Array[] = [
      Uint8Array.of(0xff, 0xd8),
      Uint8Array.of(0xff, 0xf7, 0, 17, 8, rows >> 8, rows & 255, cols >> 8, cols & 255, 3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0),
    ];
    for (let c = 0; c < 3; c++) {
      const plane = Uint8Array.from({ length: n }, (_, p) => rgb[p * 3 + c]!);
      const ctx = new lib.Context({
        width: cols, height: rows, bitsAllocated: 8, bitsStored: 8, samplesPerPixel: 1, pixelRepresentation: 0, planarConfiguration: 0, photometricInterpretation: 'MONOCHROME2', decodedBuffer: plane,
      });
      const s = lib.NativeCodecs.encodeJpegLs(ctx).getEncodedBuffer()!;
      let i = 2; // after SOI: SOF55, then SOS (dcmjs-codecs writes no other segment)
      while (s[i + 1] !== 0xda) i += 2 + ((s[i + 2]! << 8) | s[i + 3]!);
      const sosEnd = i + 2 + ((s[i + 2]! << 8) | s[i + 3]!);
      const sos = s.slice(i, sosEnd);
      assert.equal(sos[9], 0, 'interleave mode none');
      sos[5] = c + 1; // the component this scan codes
      parts.push(sos, s.subarray(sosEnd, s.length - 2)); // scan data, without EOI
    }
    parts.push(Uint8Array.of(0xff, 0xd9));
    return Buffer.concat(parts);
  }

  it('reads a colour JPEG-LS coded one component at a time (interleave mode none) as planes', async () => {
    const rgb = await rgbOfJpegSample();
    const want = ok(await decodeDicom(colourFile('1.2.840.10008.1.2.1', rgb))).frames[0]!.pixels;
    const d = ok(await decodeDicom(colourFile(TS_JPEG_LS, jpegLsOneScanPerComponent(rgb, 100, 100))));
    assert.deepEqual(d.frames[0]!.pixels, want);
  });

  it('refuses a colour JPEG 2000 above 8 bits, a JPEG larger than Rows/Columns and an RLE frame with the wrong segment count, by name', async () => {
    const rgb = await rgbOfJpegSample();
    const j2k12 = transcoded(colourFile('1.2.840.10008.1.2.1', rgb), TS_J2K_LOSSLESS, (ds, frame) => {
      for (let c = 0; c < 3; c++) frame[4 + 38 + 3 * c] = 11; // SIZ Ssiz: 12-bit unsigned components
      Object.assign(ds, { '00280100': us(16), '00280101': us(12), '00280102': us(11), '7FE00010': { vr: 'OB', Value: [frame.buffer] } });
    });
    const r12 = await decodeDicom(j2k12);
    assert.deepEqual(r12.ok ? 'decoded' : [r12.code, r12.reason], [
      'UNSUPPORTED_PIXELS',
      'frame 1: JPEG 2000 colour at 12 bits is not supported (the codec keeps only 8 bits of each sample)',
    ]);

    const jpegIn50 = dcmjs.data.DicomMessage.readFile(new Uint8Array(fixture('transfer-syntax/jpeg_baseline_SC_rgb_jpeg_dcmtk.dcm')).buffer);
    Object.assign(jpegIn50.dict, { '00280010': us(50), '00280011': us(50) });
    const rj = await decodeDicom(new Uint8Array(jpegIn50.write()));
    assert.deepEqual(rj.ok ? 'decoded' : [rj.code, rj.reason], ['MALFORMED', 'frame 1: JPEG frame is 100×100, Rows/Columns say 50×50']);

    // RLE of 16-bit samples (two segments) in a dataset that says 8 bits (one).
    const rle = dcmjs.data.DicomMessage.readFile(new Uint8Array(fixture('transfer-syntax/siemens_mosaic_4.dcm')).buffer);
    Object.assign(rle.dict, { '00280100': us(8), '00280101': us(8), '00280102': us(7) });
    const rr = await decodeDicom(new Uint8Array(rle.write()));
    assert.deepEqual(rr.ok ? 'decoded' : [rr.code, rr.reason], ['MALFORMED', 'frame 1: RLE frame has 2 segments, Samples per Pixel and Bits Allocated need 1']);
  });

  it('refuses a JPEG with a TEM marker before its frame header, which the codec would loop on', async () => {
    const dict = dcmjs.data.DicomMessage.readFile(new Uint8Array(fixture('transfer-syntax/jpeg_baseline_SC_rgb_jpeg_dcmtk.dcm')).buffer);
    const frame = new Uint8Array((dict.dict['7FE00010']!.Value as ArrayBuffer[])[0]!);
    const withTem = Buffer.concat([frame.subarray(0, 2), Uint8Array.of(0xff, 0x01), frame.subarray(2)]);
    dict.dict['7FE00010'] = { vr: 'OB', Value: [Uint8Array.from(withTem).buffer] };
    const r = await decodeDicom(new Uint8Array(dict.write()));
    assert.deepEqual(r.ok ? 'decoded' : [r.code, r.reason], ['MALFORMED', 'frame 1: JPEG: a TEM marker (FF01) before the frame header']);
  });
});

describe('malformed input never throws', () => {
  const samples = ['transfer-syntax/siemens_mosaic_5.dcm', 'transfer-syntax/siemens_mosaic_9.dcm', 'transfer-syntax/jpeg_baseline_SC_rgb_jpeg_dcmtk.dcm', 'multi-frame/enhanced_mr_xa10_6fr.dcm', 'non-image/comprehensive_sr_test-SR.dcm'];

  it('refuses empty input, garbage, text and a PNG as NOT_DICOM', async () => {
    const png = readFileSync(path.join(dicomFixturesDir, '..', 'ixi-sample', 'images', 'IXI012_1.png'));
    let seed = 7;
    const garbage = Uint8Array.from({ length: 4096 }, () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 255);
    for (const input of [new Uint8Array(0), garbage, Buffer.from('hello, not dicom'), png]) {
      const r = await decodeDicom(input);
      assert.equal(r.ok, false);
      assert.ok(!r.ok && r.code === 'NOT_DICOM' && r.reason.length > 0);
    }
  });

  it('refuses files cut anywhere, with a reason', async () => {
    for (const name of samples) {
      const bytes = fixture(name);
      for (const frac of [0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.999]) {
        const cut = bytes.subarray(0, Math.floor(bytes.length * frac));
        const r = await decodeDicom(cut);
        assert.equal(r.ok, false, `${name} cut at ${frac} must not decode`);
        assert.ok(!r.ok && r.reason.length > 0);
      }
    }
  });

  it('refuses a deflate bomb before inflating it whole, and still decodes the real deflated file', async () => {
    const real = fixture('transfer-syntax/deflate_image_dfl.dcm');
    assert.equal((await decodeDicom(real, { maxInflatedBytes: 1 << 20 })).ok, true);
    // Its File Meta, then 4 MiB of zeros deflated (4 KiB): over a 1 MiB bound.
    const v = new DataView(real.buffer, real.byteOffset, real.byteLength);
    const metaEnd = 132 + 12 + v.getUint32(140, true);
    const bomb = Buffer.concat([Buffer.from(real.subarray(0, metaEnd)), deflateRawSync(Buffer.alloc(4 << 20))]);
    const r = await decodeDicom(bomb, { maxInflatedBytes: 1 << 20 });
    assert.equal(r.ok, false);
    assert.deepEqual(r.ok ? [] : [r.code, r.reason], ['TOO_LARGE', `too large: the deflated dataset inflates beyond ${1 << 20} bytes`]);
  });

  it('refuses a hostile element length at once, without allocating it', async () => {
    const b = new Uint8Array(fixture('transfer-syntax/siemens_mosaic_1.dcm'));
    const header = Buffer.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x57, 0, 0]); // (7FE0,0010) OW
    const at = Buffer.from(b).lastIndexOf(header);
    assert.ok(at > 0);
    new DataView(b.buffer).setUint32(at + 8, 0x7ffffff0, true); // "2 GiB of pixels follow"
    const rssBefore = process.memoryUsage().rss;
    const t = performance.now();
    const r = await decodeDicom(b);
    assert.ok(performance.now() - t < 2000);
    assert.ok(process.memoryUsage().rss - rssBefore < 256 * 2 ** 20, 'no giant zero-filled buffer');
    assert.ok(!r.ok && r.code === 'MALFORMED' && /runs past the end/.test(r.reason), !r.ok ? r.reason : 'decoded');
  });

  it('returns a typed result for files with corrupted bytes (fixed-seed flips)', async () => {
    let seed = 12345;
    const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (const name of samples) {
      const bytes = fixture(name);
      for (let trial = 0; trial < 8; trial++) {
        const b = new Uint8Array(bytes);
        for (let k = 0; k < 20; k++) b[132 + Math.floor(rand() * (b.length - 132))] = Math.floor(rand() * 256);
        const r = await decodeDicom(b);
        assert.equal(typeof r.ok, 'boolean');
        if (!r.ok) assert.ok(r.reason.length > 0);
      }
    }
    // The codecs still work after all that.
    ok(await decodeDicom(fixture('transfer-syntax/siemens_mosaic_9.dcm')));
  });
});
