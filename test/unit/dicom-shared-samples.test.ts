/**
 * core/dicom/decode over ALL of ../shared/dicom-samples (304 files) when that folder
 * exists (CBMIR_SHARED_DIR overrides); skipped with a message otherwise — the repo's
 * own 12-file subset is tested in dicom-decode.test.ts either way.
 * Expected values come from the shared manifest and from pydicom's published pixel
 * reference values (pydicom tests/pixels/pixels_reference.py) for the same files.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { decodeDicom, type DecodeOk, type DecodeResult } from '../../core/dicom/decode.js';
import { listDicom, readManifest, sharedDir } from '../helpers/fixtures.js';

const shared = sharedDir();
const samplesDir = shared ? path.join(shared, 'dicom-samples') : undefined;
const skip = samplesDir ? false : 'no ../shared/dicom-samples here (set CBMIR_SHARED_DIR to run these)';

function ok(r: DecodeResult, what: string): DecodeOk {
  if (!r.ok) assert.fail(`${what}: expected a decoded image, got ${r.code}: ${r.reason}`);
  return r;
}

describe('decodeDicom over all of ../shared/dicom-samples', { skip }, () => {
  const dir = samplesDir!;
  const read = (f: string) => readFileSync(path.join(dir, f));
  const at = (r: DecodeOk, row: number, col: number) => r.frames[0]!.pixels[row * r.frames[0]!.cols + col]!;

  it('decodes every image and refuses every non-image with a reason', async () => {
    const manifest = readManifest(dir);
    const files = listDicom(dir);
    assert.equal(files.length, manifest.size, 'every file is in the manifest');
    let decoded = 0;
    const refused: string[] = [];
    const mosaics: string[] = [];
    for (const f of files) {
      const m = manifest.get(f);
      assert.ok(m, `${f} missing from manifest`);
      const r = await decodeDicom(read(f));
      const isSeg = m.sop_class === '1.2.840.10008.5.1.4.1.1.66.4';
      if (!m.frames || isSeg) {
        assert.equal(r.ok, false, `${f} must be refused`);
        assert.ok(!r.ok && r.code === 'NOT_AN_IMAGE' && /^not an image: /.test(r.reason), `${f}: ${!r.ok ? r.reason : ''}`);
        refused.push(`${f}: ${!r.ok ? r.reason : ''}`);
        continue;
      }
      const d = ok(r, f);
      const fr = d.frames[0]!;
      if (fr.mosaicSlice === undefined) {
        assert.equal(fr.rows, Number(m.rows), f);
        assert.equal(fr.cols, Number(m.columns), f);
      } else {
        // A Siemens mosaic: one tile of its grid (its middle slice).
        assert.ok(fr.rows < Number(m.rows) && Number(m.rows) % fr.rows === 0, f);
        assert.ok(fr.cols < Number(m.columns) && Number(m.columns) % fr.cols === 0, f);
        mosaics.push(f);
      }
      assert.ok(fr.pixels.every(Number.isFinite), f);
      decoded++;
    }
    assert.equal(decoded + refused.length, files.length);
    assert.deepEqual(mosaics.filter((f) => !f.includes('siemens_mosaic_')), [], 'only the Siemens mosaics are tiled');
    assert.equal(mosaics.length, 9);
    assert.equal(refused.length, 6, refused.join('\n')); // 5 non-image + the SEG
  });

  it('decodes the nine siemens_mosaic encodings to identical pixels', async () => {
    const ref = ok(await decodeDicom(read('transfer-syntax/siemens_mosaic_1.dcm')), 'mosaic 1').frames[0]!.pixels;
    for (let n = 2; n <= 9; n++) {
      const px = ok(await decodeDicom(read(`transfer-syntax/siemens_mosaic_${n}.dcm`)), `mosaic ${n}`).frames[0]!.pixels;
      assert.deepEqual(px, ref, `siemens_mosaic_${n}`);
    }
  });

  it('matches pydicom reference values: JPEG Extended 12-bit (JPGExtended.dcm)', async () => {
    const d = ok(await decodeDicom(read('transfer-syntax/jpeg_extended_12bit_JPGExtended.dcm')), 'JPGExtended');
    assert.equal(at(d, 420, 140), 244);
    assert.equal(at(d, 230, 120), 95);
  });

  it('matches pydicom reference values: JPEG-LS near-lossless 16-bit', async () => {
    const d = ok(await decodeDicom(read('transfer-syntax/jpegls_near_lossless_16bit.dcm')), 'JPEGLSNearLossless_16');
    const expected = [65535, 32765, 16385, 4095, 1025, 255, 65, 15, 5];
    expected.forEach((v, k) => assert.equal(at(d, k * 5, 0), v, `row ${k * 5}`));
  });

  it('matches pydicom reference values: JPEG 2000 signed CT with Rescale Intercept (693_J2KI.dcm)', async () => {
    const d = ok(await decodeDicom(read('transfer-syntax/jpeg2000_lossy_693_J2KI.dcm')), '693_J2KI');
    // pydicom's stored value at [0,0] is -2016; Rescale Intercept is -1024, slope 1.
    assert.equal(at(d, 0, 0), -2016 - 1024);
  });

  it('matches pydicom reference values: implicit VR MR (MR_small_implicit.dcm)', async () => {
    const d = ok(await decodeDicom(read('transfer-syntax/mr_small_implicit.dcm')), 'MR_small_implicit');
    assert.deepEqual([at(d, 0, 31), at(d, 0, 32), at(d, 0, 33)], [422, 319, 361]);
    assert.deepEqual([at(d, 31, 0), at(d, 31, 1), at(d, 31, 2)], [366, 363, 322]);
    assert.deepEqual([at(d, 63, 61), at(d, 63, 62), at(d, 63, 63)], [1369, 1129, 862]);
  });

  it('reads the RT Structure Set without File Meta and refuses it by name', async () => {
    const r = await decodeDicom(read('non-image/rtstruct.dcm'));
    assert.deepEqual([r.ok, !r.ok && r.reason], [false, 'not an image: RT Structure Set']);
  });

  it('takes the middle frame of the 96-frame Enhanced MR and the 30-frame ultrasound', async () => {
    const mr = ok(await decodeDicom(read('multi-frame/enhanced_mr_t1w_brain_96fr.dcm')), 'enhanced MR');
    assert.equal(mr.frames[0]!.frameNumber, 48);
    const us = ok(await decodeDicom(read('multi-frame/us_multiframe_jpeg_ybr_30fr.dcm'), { frames: 'all', maxFrames: 30 }), 'US');
    assert.equal(us.frames.length, 30);
    const usMid = ok(await decodeDicom(read('multi-frame/us_multiframe_jpeg_ybr_30fr.dcm')), 'US');
    assert.equal(usMid.frames[0]!.frameNumber, 15);
    assert.deepEqual(usMid.frames[0]!.pixels, us.frames[14]!.pixels);
  });
});
