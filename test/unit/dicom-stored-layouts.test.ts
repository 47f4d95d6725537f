/**
 * The same pixels stored in another layout decode to the same image: the repo's real samples
 * (test/fixtures/dicom-samples) re-encoded with dcmjs as DCMTK writes them. Checked by hand with
 * DCMTK 3.6.7: `dcmconv +tb` of an 8-bit file whose Pixel Data is OW, and `dcmquant +tb`, dump
 * as the files written here do (UIDs and sequence lengths aside), and DCMTK renders both alike.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import dcmjs, { type DcmDataset } from 'dcmjs';
import { decodeEncapsulatedFrame, initCodecs } from '../../core/dicom/codecs.js';
import { decodeDicom, type DecodeOk, type DecodeResult } from '../../core/dicom/decode.js';
import { dicomFixturesDir } from '../helpers/fixtures.js';

const fixture = (name: string) => readFileSync(path.join(dicomFixturesDir, name));

function ok(r: DecodeResult): DecodeOk {
  if (!r.ok) assert.fail(`expected a decoded image, got refusal ${r.code}: ${r.reason}`);
  return r;
}

const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const EXPLICIT_BE = '1.2.840.10008.1.2.2';

/** Padded to even length, then the bytes of every 16-bit word exchanged: how Explicit VR Big Endian stores OW holding 8-bit values. */
function pairSwapped(buffer: ArrayBuffer): ArrayBuffer {
  const src = new Uint8Array(buffer);
  const out = new Uint8Array(src.length + (src.length % 2));
  for (let i = 0; i < src.length; i += 2) [out[i], out[i + 1]] = [src[i + 1] ?? 0, src[i]!];
  return out.buffer;
}

/** A real sample's dataset (a deflated one inflated) to edit, and write in a syntax of its own. */
function sample(name: string): DcmDataset {
  return dcmjs.data.DicomMessage.readFile(new Uint8Array(fixture(name)).buffer).dict;
}

/**
 * The dataset as Part-10 bytes in Explicit VR Little or Big Endian. In big endian every OW
 * element holding 8-bit values (`ow8`: Pixel Data, 8-bit palette data) is pair-swapped, as a
 * writer stores 16-bit words; dcmjs writes the numbers (US, …) big endian itself.
 */
function write(ds: DcmDataset, syntax: string, ow8: readonly string[] = []): Uint8Array {
  const dict = new dcmjs.data.DicomDict({ '00020010': { vr: 'UI', Value: [syntax] } });
  dict.dict = { ...ds };
  if (syntax === EXPLICIT_BE) {
    for (const tag of ow8) {
      const el = ds[tag]!;
      assert.equal(el.vr, 'OW', tag);
      dict.dict[tag] = { vr: 'OW', Value: [pairSwapped(el.Value![0] as ArrayBuffer)] };
    }
  }
  return new Uint8Array(dict.write());
}

const pixelsOf = (r: DecodeOk) => r.frames.map((f) => f.pixels);

/** The JPEG sample (100×100 colour) decoded once: its dataset, to store the RGB samples natively. */
async function jpegSampleAsRgb(): Promise<{ ds: DcmDataset; rgb: Uint8Array }> {
  await initCodecs();
  const ds = sample('transfer-syntax/jpeg_baseline_SC_rgb_jpeg_dcmtk.dcm');
  const frame = new Uint8Array((ds['7FE00010']!.Value as ArrayBuffer[])[0]!);
  const geometry = {
    rows: 100,
    cols: 100,
    bitsAllocated: 8,
    bitsStored: 8,
    samplesPerPixel: 3,
    pixelRepresentation: 0,
    planarConfiguration: 0,
  };
  return { ds, rgb: decodeEncapsulatedFrame('jpeg', frame, { ...geometry, photometric: 'YBR_FULL' }).bytes };
}

/** deflate_image_dfl.dcm (8-bit MONOCHROME2) with its Pixel Data as OW, as a file converted from implicit VR has it. */
function grayOw(): DcmDataset {
  const ds = sample('transfer-syntax/deflate_image_dfl.dcm');
  ds['7FE00010'] = { vr: 'OW', Value: ds['7FE00010']!.Value! };
  return ds;
}

/** Per channel a different permutation of 0…255, so that an entry read from the other byte of its word shows. */
const PALETTE = [
  ['00281101', '00281201', (i: number) => i],
  ['00281102', '00281202', (i: number) => 255 - i],
  ['00281103', '00281203', (i: number) => (i * 7) % 256],
] as const;
const PALETTE_DATA = PALETTE.map(([, data]) => data);

/**
 * The real 8-bit image as the indices of PALETTE, its 8-bit entries stored as OW, one per byte, or
 * in the retired US form, two to a word, the first in the low byte (`dcmquant +pw` and `+pu`).
 */
function paletteImage(form: 'OW' | 'US'): DcmDataset {
  const ds = grayOw();
  ds['00280004'] = { vr: 'CS', Value: ['PALETTE COLOR'] };
  for (const [descriptor, data, entry] of PALETTE) {
    ds[descriptor] = { vr: 'US', Value: [256, 0, 8] };
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => entry(i));
    const words = Array.from({ length: 128 }, (_, i) => bytes[2 * i]! | (bytes[2 * i + 1]! << 8));
    ds[data] = form === 'OW' ? { vr: 'OW', Value: [bytes.buffer] } : { vr: 'US', Value: words };
  }
  return ds;
}

/** What PALETTE COLOR over the real image must decode to: the luma of each index's colour. */
async function paletteLuma(): Promise<Float32Array> {
  const gray = ok(await decodeDicom(fixture('transfer-syntax/deflate_image_dfl.dcm'))).frames[0]!.pixels;
  return Float32Array.from(gray, (v) => 0.299 * PALETTE[0][2](v) + 0.587 * PALETTE[1][2](v) + 0.114 * PALETTE[2][2](v));
}

describe('8-bit data in OW under Explicit VR Big Endian (pair-swapped words)', () => {
  it('grayscale decodes to the little-endian original, and OB (no byte order) is read as stored', async () => {
    const original = ok(await decodeDicom(fixture('transfer-syntax/deflate_image_dfl.dcm')));
    const little = ok(await decodeDicom(write(grayOw(), EXPLICIT_LE)));
    const big = ok(await decodeDicom(write(grayOw(), EXPLICIT_BE, ['7FE00010'])));
    const bigOb = ok(await decodeDicom(write(sample('transfer-syntax/deflate_image_dfl.dcm'), EXPLICIT_BE)));
    assert.equal(big.meta.transferSyntaxUid, EXPLICIT_BE);
    assert.deepEqual(pixelsOf(little), pixelsOf(original));
    assert.deepEqual(pixelsOf(big), pixelsOf(original));
    assert.deepEqual(pixelsOf(bigOb), pixelsOf(original));
  });

  it('frames of an odd number of bytes, whose words straddle two frames, decode to the little-endian frames', async () => {
    // Three 101×101 crops of the real image as a 3-frame object: frames 2 and 3 start mid-word.
    const source = ok(await decodeDicom(fixture('transfer-syntax/deflate_image_dfl.dcm'))).frames[0]!;
    const crop = (top: number, left: number) =>
      Uint8Array.from({ length: 101 * 101 }, (_, i) => source.pixels[(top + Math.floor(i / 101)) * source.cols + left + (i % 101)]!);
    const crops = new Uint8Array(3 * 101 * 101);
    [100, 201, 302].forEach((top, f) => crops.set(crop(top, 150), f * 101 * 101));
    const ds = grayOw();
    Object.assign(ds, {
      '00280008': { vr: 'IS', Value: [3] },
      '00280010': { vr: 'US', Value: [101] },
      '00280011': { vr: 'US', Value: [101] },
      '7FE00010': { vr: 'OW', Value: [crops.buffer] },
    });
    const little = ok(await decodeDicom(write(ds, EXPLICIT_LE), { frames: 'all' }));
    const big = ok(await decodeDicom(write(ds, EXPLICIT_BE, ['7FE00010']), { frames: 'all' }));
    assert.equal(big.frames.length, 3);
    assert.deepEqual(pixelsOf(big), pixelsOf(little));
    assert.deepEqual(Array.from(little.frames[2]!.pixels), Array.from(crops.subarray(2 * 101 * 101)));
  });

  it('RGB decodes to the little-endian original (the JPEG sample decoded once, stored natively)', async () => {
    const { ds, rgb } = await jpegSampleAsRgb();
    ds['00280004'] = { vr: 'CS', Value: ['RGB'] };
    ds['7FE00010'] = { vr: 'OW', Value: [Uint8Array.from(rgb).buffer] };
    const little = ok(await decodeDicom(write(ds, EXPLICIT_LE)));
    const big = ok(await decodeDicom(write(ds, EXPLICIT_BE, ['7FE00010'])));
    assert.deepEqual(pixelsOf(big), pixelsOf(little));
    assert.deepEqual(pixelsOf(little), pixelsOf(ok(await decodeDicom(fixture('transfer-syntax/jpeg_baseline_SC_rgb_jpeg_dcmtk.dcm')))));
  });

  it('PALETTE COLOR with 8-bit entries packed in OW decodes to the little-endian original, pixels and palette alike', async () => {
    const little = ok(await decodeDicom(write(paletteImage('OW'), EXPLICIT_LE)));
    const big = ok(await decodeDicom(write(paletteImage('OW'), EXPLICIT_BE, ['7FE00010', ...PALETTE_DATA])));
    assert.deepEqual(pixelsOf(big), pixelsOf(little));
    assert.deepEqual(little.frames[0]!.pixels, await paletteLuma());
  });
});

describe('8-bit palette entries in US, two to a word (the retired form)', () => {
  it('decode as the same palette stored in OW, little and big endian', async () => {
    const want = await paletteLuma();
    const little = ok(await decodeDicom(write(paletteImage('US'), EXPLICIT_LE)));
    const big = ok(await decodeDicom(write(paletteImage('US'), EXPLICIT_BE, ['7FE00010'])));
    assert.deepEqual(little.frames[0]!.pixels, want);
    assert.deepEqual(big.frames[0]!.pixels, want);
  });

  it('a word per entry (as many numbers as entries) is still read one entry per number', async () => {
    const ds = paletteImage('US');
    for (const [, data, entry] of PALETTE) ds[data] = { vr: 'US', Value: Array.from({ length: 256 }, (_, i) => entry(i)) };
    assert.deepEqual(ok(await decodeDicom(write(ds, EXPLICIT_LE))).frames[0]!.pixels, await paletteLuma());
  });
});

describe('YBR_FULL_422 over three full samples per pixel (the label a decompressor left on YBR_FULL)', () => {
  /** The JPEG sample's colours as native YBR_FULL (PS3.3 C.7.6.3.1.2), `frames` times over. */
  async function ybrFull(frames: number): Promise<DcmDataset> {
    const { ds, rgb } = await jpegSampleAsRgb();
    const byte = (v: number) => Math.min(255, Math.max(0, Math.round(v)));
    const ybr = new Uint8Array(frames * rgb.length);
    for (let p = 0; p < ybr.length; p += 3) {
      const [r, g, b] = [rgb[p % rgb.length]!, rgb[(p % rgb.length) + 1]!, rgb[(p % rgb.length) + 2]!];
      ybr[p] = byte(0.299 * r + 0.587 * g + 0.114 * b);
      ybr[p + 1] = byte(-0.168736 * r - 0.331264 * g + 0.5 * b + 128);
      ybr[p + 2] = byte(0.5 * r - 0.418688 * g - 0.081312 * b + 128);
    }
    ds['00280004'] = { vr: 'CS', Value: ['YBR_FULL'] };
    ds['00280008'] = { vr: 'IS', Value: [frames] };
    ds['7FE00010'] = { vr: 'OB', Value: [ybr.buffer] };
    return ds;
  }

  it('decodes as the same samples labelled YBR_FULL, one frame or several', async () => {
    for (const frames of [1, 3]) {
      const ds = await ybrFull(frames);
      const labelled = ok(await decodeDicom(write(ds, EXPLICIT_LE), { frames: 'all' }));
      // Only (0028,0004) changed, as `dcmodify -m "(0028,0004)=YBR_FULL_422"` changes it.
      ds['00280004'] = { vr: 'CS', Value: ['YBR_FULL_422'] };
      const mislabelled = ok(await decodeDicom(write(ds, EXPLICIT_LE), { frames: 'all' }));
      assert.equal(mislabelled.frames.length, frames);
      assert.deepEqual(pixelsOf(mislabelled), pixelsOf(labelled), `${frames} frame(s)`);
      assert.equal(mislabelled.meta.photometric, 'YBR_FULL_422', 'the metadata keeps the label as stored');
    }
  });

  it('still reads two samples per pixel as 4:2:2 when the Pixel Data has that size', async () => {
    const ds = await ybrFull(1);
    const full = new Uint8Array(ds['7FE00010']!.Value![0] as ArrayBuffer);
    // Y0 Y1 Cb Cr per pixel pair (PS3.3 C.7.6.3.1.2), the chroma of the pair's first pixel.
    const pairs = Uint8Array.from({ length: (full.length / 3) * 2 }, (_, i) => {
      const [pair, k] = [Math.floor(i / 4), i % 4];
      return k < 2 ? full[(pair * 2 + k) * 3]! : full[pair * 6 + k - 1]!;
    });
    ds['00280004'] = { vr: 'CS', Value: ['YBR_FULL_422'] };
    ds['7FE00010'] = { vr: 'OB', Value: [pairs.buffer] };
    const subsampled = ok(await decodeDicom(write(ds, EXPLICIT_LE))).frames[0]!.pixels;
    ds['00280004'] = { vr: 'CS', Value: ['YBR_FULL'] };
    ds['7FE00010'] = { vr: 'OB', Value: [full.buffer] };
    const whole = ok(await decodeDicom(write(ds, EXPLICIT_LE))).frames[0]!.pixels;
    // The first pixel of each pair has its own chroma: the same colour either way.
    for (let p = 0; p < whole.length; p += 2) assert.equal(subsampled[p], whole[p], `pixel ${p}`);
  });
});
