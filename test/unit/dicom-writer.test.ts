/**
 * The `cbmir load` conversion on real dataset images: JPEG/PNG → MR instance →
 * core/dicom/decode gives back exactly the stored pixel values and the label; the
 * instance carries the MR attributes, deterministic UIDs and the CBMIR label block.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import dcmjs from 'dcmjs';
import { decodeDicom } from '../../core/dicom/decode.js';
import { readLabel } from '../../core/dicom/label.js';
import { MR_IMAGE_STORAGE, writeMrInstance } from '../../core/dicom/mr-writer.js';
import { decodeSourceImage, readJpegHeader, SourceImageError } from '../../core/dicom/source-image.js';
import { CBMIR_UUID_NAMESPACE, deterministicUid, uuidV5Bytes } from '../../core/dicom/uids.js';
import { isValidUid } from '../../core/errors.js';
import { figshareSampleDir, ixiSampleDir } from '../helpers/fixtures.js';

const label = { className: 'meningioma', code: 1, dataset: 'figshare-cheng', sourceFile: 'images/1.jpg', fold: 5 };

function instanceFor(img: Awaited<ReturnType<typeof decodeSourceImage>>, name: string) {
  return writeMrInstance({
    pixels: img.pixels,
    rows: img.rows,
    cols: img.cols,
    bitsStored: img.bitsStored,
    studyInstanceUid: deterministicUid('study', 'test', name),
    seriesInstanceUid: deterministicUid('series', 'test', name),
    sopInstanceUid: deterministicUid('instance', 'test', name),
    patientId: 'P-1',
    patientName: 'figshare-cheng^P-1',
    studyDescription: 'figshare-cheng',
    seriesDescription: 'figshare-cheng meningioma',
    seriesNumber: 2,
    instanceNumber: 7,
    studyDate: '20240229',
    createdAt: new Date('2026-01-02T03:04:05Z'),
    ...(img.lossy ? { lossySource: { method: 'ISO_10918_1' } } : {}),
    label,
  });
}

describe('dataset image → DICOM MR → decode round trip', () => {
  for (const [dir, file] of [
    [figshareSampleDir, 'images/1.jpg'],
    [figshareSampleDir, 'images/1310.jpg'],
    [ixiSampleDir, 'images/IXI012_1.png'], // 197×233: odd pixel count, padded Pixel Data
  ] as const) {
    it(`${path.basename(dir)}/${file}: same pixels and label back`, async () => {
      const img = await decodeSourceImage(readFileSync(path.join(dir, file)));
      assert.equal(img.bitsStored, 8);
      const bytes = instanceFor(img, file);
      const r = await decodeDicom(bytes);
      assert.ok(r.ok, !r.ok ? r.reason : '');
      if (!r.ok) return;
      const f = r.frames[0]!;
      assert.deepEqual([f.rows, f.cols], [img.rows, img.cols]);
      assert.deepEqual(Array.from(f.pixels), Array.from(img.pixels), 'pixel values exactly as stored in the image file');
      assert.deepEqual(r.meta.label, label);
      assert.equal(r.meta.sopClassUid, MR_IMAGE_STORAGE);
      assert.equal(r.meta.modality, 'MR');
      assert.equal(r.meta.bodyPartExamined, 'BRAIN');
      assert.equal(r.meta.transferSyntaxUid, '1.2.840.10008.1.2.1');
    });
  }

  it('writes a proper MR image header (pixel module, identifiers, lossy flag, label block)', async () => {
    const img = await decodeSourceImage(readFileSync(path.join(figshareSampleDir, 'images/1.jpg')));
    const bytes = instanceFor(img, 'header');
    assert.equal(Buffer.from(bytes.subarray(128, 132)).toString('latin1'), 'DICM');
    const { dict: ds, meta } = dcmjs.data.DicomMessage.readFile(new Uint8Array(bytes).buffer);
    const v = (t: string) => ds[t]?.Value?.[0];
    assert.equal(meta['00020010']?.Value?.[0], '1.2.840.10008.1.2.1');
    assert.equal(meta['00020002']?.Value?.[0], MR_IMAGE_STORAGE);
    assert.equal(meta['00020003']?.Value?.[0], v('00080018'));
    assert.equal(v('00080016'), MR_IMAGE_STORAGE);
    assert.equal(v('00080060'), 'MR');
    assert.equal(v('00280004'), 'MONOCHROME2');
    assert.deepEqual([v('00280002'), v('00280100'), v('00280101'), v('00280102'), v('00280103')], [1, 8, 8, 7, 0]);
    assert.deepEqual([v('00280010'), v('00280011')], [512, 512]);
    assert.equal(v('00100020'), 'P-1');
    assert.deepEqual(v('00100010'), { Alphabetic: 'figshare-cheng^P-1' });
    assert.equal(v('00080020'), '20240229');
    assert.equal(v('00080012'), '20260102');
    assert.equal(v('00200011'), 2);
    assert.equal(v('00200013'), 7);
    assert.equal(v('00282110'), '01', 'JPEG source → Lossy Image Compression 01');
    assert.equal(v('00282114'), 'ISO_10918_1');
    assert.deepEqual(ds['00080008']?.Value, ['DERIVED', 'SECONDARY']);
    assert.equal(v('00090010'), 'CBMIR');
    assert.equal(v('00091001'), 'meningioma');
    assert.equal(v('00204000'), 'label=meningioma');
  });

  it('reads the label from ImageComments when private tags were stripped', async () => {
    const img = await decodeSourceImage(readFileSync(path.join(ixiSampleDir, 'images/IXI013_1.png')));
    const dict = dcmjs.data.DicomMessage.readFile(new Uint8Array(instanceFor(img, 'strip')).buffer);
    for (const t of Object.keys(dict.dict)) if (t.startsWith('0009')) delete dict.dict[t];
    assert.deepEqual(readLabel(dict.dict), { className: 'meningioma' });
    const r = await decodeDicom(new Uint8Array(dict.write()));
    assert.ok(r.ok && r.meta.label?.className === 'meningioma');
  });

  it('finds the CBMIR block wherever the private creator was placed', async () => {
    const img = await decodeSourceImage(readFileSync(path.join(ixiSampleDir, 'images/IXI013_1.png')));
    const dict = dcmjs.data.DicomMessage.readFile(new Uint8Array(instanceFor(img, 'move')).buffer);
    for (const t of Object.keys(dict.dict)) {
      if (!t.startsWith('0009')) continue;
      const el = dict.dict[t]!;
      delete dict.dict[t];
      // (0009,0010) → (0009,0042); (0009,10xx) → (0009,42xx)
      dict.dict[t === '00090010' ? '00090042' : `000942${t.slice(6)}`] = el;
    }
    assert.deepEqual(readLabel(dict.dict), label);
  });

  it('keeps 16-bit values (Bits Stored 12) exactly', async () => {
    // Real pixels: the 8-bit image scaled into 12 bits, as a 12-bit scanner would store it.
    const img = await decodeSourceImage(readFileSync(path.join(figshareSampleDir, 'images/722.jpg')));
    const px16 = Uint16Array.from(img.pixels, (v) => v * 16 + 3);
    const bytes = writeMrInstance({ ...{ pixels: px16, rows: img.rows, cols: img.cols, bitsStored: 12 }, studyInstanceUid: '2.25.1', seriesInstanceUid: '2.25.2', sopInstanceUid: '2.25.3', patientId: 'x', patientName: 'x', seriesNumber: 1, instanceNumber: 1, studyDate: '20260101' });
    const r = await decodeDicom(bytes);
    assert.ok(r.ok);
    if (r.ok) assert.deepEqual(Array.from(r.frames[0]!.pixels), Array.from(px16));
  });

  it('refuses bad input to the writer with a clear error', () => {
    const base = { rows: 2, cols: 2, studyInstanceUid: '2.25.1', seriesInstanceUid: '2.25.2', sopInstanceUid: '2.25.3', patientId: 'x', patientName: 'x', seriesNumber: 1, instanceNumber: 1, studyDate: '20260101' };
    assert.throws(() => writeMrInstance({ ...base, pixels: new Uint8Array(3) }), /pixel count/);
    assert.throws(() => writeMrInstance({ ...base, pixels: new Uint8Array(4), studyDate: '2026-01-01' }), /YYYYMMDD/);
    assert.throws(() => writeMrInstance({ ...base, pixels: new Uint8Array(4), sopInstanceUid: '1.2.abc' }), /valid UID/);
  });
});

describe('source image decoding', () => {
  it('reads JPEG geometry from the SOF marker', () => {
    const h = readJpegHeader(readFileSync(path.join(figshareSampleDir, 'images/1.jpg')));
    assert.deepEqual(h, { precision: 8, rows: 512, cols: 512, components: 1, lossless: false });
  });

  it('refuses what is not a grayscale JPEG/PNG, with the reason', async () => {
    await assert.rejects(decodeSourceImage(Buffer.from('GIF89a....')), (e: unknown) => e instanceof SourceImageError && /unsupported image format/.test(e.message));
    const jpeg = readFileSync(path.join(figshareSampleDir, 'images/1.jpg'));
    await assert.rejects(decodeSourceImage(jpeg.subarray(0, 300)), SourceImageError);
    const png = readFileSync(path.join(ixiSampleDir, 'images/IXI012_1.png'));
    await assert.rejects(decodeSourceImage(png.subarray(0, png.length / 2)), /PNG decode failed/);
  });
});

describe('deterministic UIDs', () => {
  it('are stable 2.25 UUIDv5 UIDs of at most 64 characters', () => {
    assert.equal(CBMIR_UUID_NAMESPACE, '6f1c3a52-9d0e-4b8a-a3f1-5c2e7d90b4e1', 'changing the namespace changes every loaded UID');
    const uid = deterministicUid('instance', 'figshare-cheng', 'images/1.jpg');
    assert.equal(uid, deterministicUid('instance', 'figshare-cheng', 'images/1.jpg'));
    assert.notEqual(uid, deterministicUid('instance', 'figshare-cheng', 'images/2.jpg'));
    assert.notEqual(deterministicUid('a|b', 'c'), deterministicUid('a', 'b|c'), 'parts are joined unambiguously');
    assert.ok(isValidUid(uid) && uid.startsWith('2.25.') && uid.length <= 44);
    const b = uuidV5Bytes('x');
    assert.equal(b[6]! >> 4, 5, 'version 5');
    assert.equal(b[8]! >> 6, 2, 'RFC variant');
  });
});
