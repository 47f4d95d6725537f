/**
 * core/dicom/single-frame: one frame of a multi-frame instance, from its DICOM JSON metadata and
 * the frame as stored, made into an object decodeDicom reads as that frame alone. Synthetic
 * 3-frame datasets whose frames differ, so that taking the wrong frame's attributes shows in the
 * pixels; the real samples in every transfer syntax are in pacs-frame-fallback.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import dcmjs from 'dcmjs';
import { decodeDicom, type DecodeOk, type DecodeResult } from '../../core/dicom/decode.js';
import { parseDicom } from '../../core/dicom/parse.js';
import { frameCount, singleFrameInstance, SingleFrameError, type JsonDataset, wordAlignedFrame } from '../../core/dicom/single-frame.js';

function ok(r: DecodeResult): DecodeOk {
  if (!r.ok) assert.fail(`expected a decoded image, got refusal ${r.code}: ${r.reason}`);
  return r;
}

/** Three frames of 2 × 2 unsigned 16-bit samples; frame k (1-based) holds k·10 + 0…3. */
const FRAMES = [1, 2, 3].map((k) => Uint16Array.from([0, 1, 2, 3], (v) => k * 10 + v));
const le = (samples: Uint16Array) => new Uint8Array(samples.buffer.slice(0));
const be = (samples: Uint16Array) => {
  const out = new Uint8Array(samples.length * 2);
  const dv = new DataView(out.buffer);
  samples.forEach((v, i) => dv.setUint16(i * 2, v, false));
  return out;
};

/** An Enhanced MR's metadata as a PACS sends it: Pixel Data by BulkDataURI, frame k rescaled by slope k. */
function metadata(extra: JsonDataset = {}): JsonDataset {
  const perFrame = [1, 2, 3].map((k) => ({
    '00289145': { vr: 'SQ', Value: [{ '00281052': { vr: 'DS', Value: [-k] }, '00281053': { vr: 'DS', Value: [k] } }] },
  }));
  return {
    '00080005': { vr: 'CS', Value: ['ISO_IR 100'] },
    '00080016': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.4.1'] },
    '00080018': { vr: 'UI', Value: ['1.2.3.4.5'] },
    '00080060': { vr: 'CS', Value: ['MR'] },
    '00100020': { vr: 'LO', Value: ['Jörg-Ω'] },
    '0020000D': { vr: 'UI', Value: ['1.2.3'] },
    '0020000E': { vr: 'UI', Value: ['1.2.3.4'] },
    '00280002': { vr: 'US', Value: [1] },
    '00280004': { vr: 'CS', Value: ['MONOCHROME2'] },
    '00280008': { vr: 'IS', Value: [3] },
    '00280010': { vr: 'US', Value: [2] },
    '00280011': { vr: 'US', Value: [2] },
    '00280100': { vr: 'US', Value: [16] },
    '00280101': { vr: 'US', Value: [16] },
    '00280102': { vr: 'US', Value: [15] },
    '00280103': { vr: 'US', Value: [0] },
    '52009230': { vr: 'SQ', Value: perFrame },
    '7FE00010': { vr: 'OW', BulkDataURI: 'http://pacs/dicom-web/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5/bulk/7fe00010' },
    ...extra,
  };
}

const native = (bytes: Uint8Array, transferSyntaxUid = '1.2.840.10008.1.2.1') => ({ bytes, transferSyntaxUid });

/** A whole 3-frame 2 × 2 object whose pixels are `pixels` in element `tag` (Float or Double Float Pixel Data), written by dcmjs. */
function wholeFile(tag: string, vr: string, bitsAllocated: number, pixels: Uint8Array): Uint8Array {
  const dict = new dcmjs.data.DicomDict({ '00020010': { vr: 'UI', Value: ['1.2.840.10008.1.2.1'] } });
  dict.dict = {
    '00080016': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.4.1'] },
    '00080018': { vr: 'UI', Value: ['1.2.3.4.5'] },
    '00280002': { vr: 'US', Value: [1] },
    '00280004': { vr: 'CS', Value: ['MONOCHROME2'] },
    '00280008': { vr: 'IS', Value: [3] },
    '00280010': { vr: 'US', Value: [2] },
    '00280011': { vr: 'US', Value: [2] },
    '00280100': { vr: 'US', Value: [bitsAllocated] },
    [tag]: { vr, Value: [new Uint8Array(pixels).buffer] },
  };
  return new Uint8Array(dict.write());
}
const pixels = (r: DecodeOk) => Array.from(r.frames[0]!.pixels);

describe('singleFrameInstance', () => {
  it('keeps the chosen frame’s Per-Frame Functional Groups item, as item 1 of a one-frame object', async () => {
    for (const k of [1, 2, 3]) {
      const r = ok(await decodeDicom(await singleFrameInstance(metadata(), k, native(le(FRAMES[k - 1]!)))));
      assert.deepEqual(
        pixels(r),
        Array.from(FRAMES[k - 1]!, (v) => v * k - k),
        `frame ${k}: its own slope ${k} and intercept ${-k}`,
      );
      assert.equal(r.meta.numberOfFrames, 1);
      assert.equal(r.frames[0]!.frameNumber, 1);
    }
  });

  it('reads the same whether the PACS sends the frame big or little endian', async () => {
    const little = ok(await decodeDicom(await singleFrameInstance(metadata(), 2, native(le(FRAMES[1]!)))));
    const big = ok(await decodeDicom(await singleFrameInstance(metadata(), 2, native(be(FRAMES[1]!), '1.2.840.10008.1.2.2'))));
    assert.deepEqual(pixels(big), pixels(little));
    assert.equal(big.meta.transferSyntaxUid, '1.2.840.10008.1.2.1');
  });

  it('reads 8-bit samples sent big endian in OW, two to a pair-swapped word, as sent little endian; in OB as they come', async () => {
    const eightBit = (vr: string) =>
      metadata({
        '00280100': { vr: 'US', Value: [8] },
        '00280101': { vr: 'US', Value: [8] },
        '00280102': { vr: 'US', Value: [7] },
        '7FE00010': { vr, BulkDataURI: 'http://pacs/bulk/7fe00010' },
      });
    const samples = Uint8Array.from([20, 21, 22, 23]); // frame 2
    const little = ok(await decodeDicom(await singleFrameInstance(eightBit('OW'), 2, native(samples))));
    assert.deepEqual(pixels(little), [38, 40, 42, 44], 'its slope 2 and intercept -2');
    const swapped = Uint8Array.from([21, 20, 23, 22]);
    const bigOw = ok(await decodeDicom(await singleFrameInstance(eightBit('OW'), 2, native(swapped, '1.2.840.10008.1.2.2'))));
    const bigOb = ok(await decodeDicom(await singleFrameInstance(eightBit('OB'), 2, native(samples, '1.2.840.10008.1.2.2'))));
    assert.deepEqual(pixels(bigOw), pixels(little));
    assert.deepEqual(pixels(bigOb), pixels(little));
  });

  it('fetches a frame that starts on a 16-bit word: with odd-sized 8-bit frames, the one before an even-numbered one', () => {
    const dims = (bits: number, rows: number, cols: number, spp: number): JsonDataset => ({
      '00280100': { vr: 'US', Value: [bits] },
      '00280010': { vr: 'US', Value: [rows] },
      '00280011': { vr: 'US', Value: [cols] },
      '00280002': { vr: 'US', Value: [spp] },
    });
    const oddRgb = dims(8, 255, 255, 3); // 195,075 bytes a frame: frame 2 starts at an odd offset
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((n) => wordAlignedFrame(oddRgb, n)),
      [1, 1, 3, 3, 5],
    );
    assert.equal(wordAlignedFrame(dims(8, 256, 255, 1), 2), 2, 'even-sized frames all start on a word');
    assert.equal(wordAlignedFrame(dims(16, 255, 255, 1), 2), 2, '16-bit frames are whole words');
    assert.equal(wordAlignedFrame({}, 2), 2, 'no dimensions: as asked');
  });

  it('keeps Unicode text as the metadata gave it, whatever character set the instance was stored in', async () => {
    const r = ok(await decodeDicom(await singleFrameInstance(metadata(), 1, native(le(FRAMES[0]!)))));
    assert.deepEqual(
      [r.meta.patientId, r.meta.sopInstanceUid, r.meta.studyInstanceUid, r.meta.modality],
      ['Jörg-Ω', '1.2.3.4.5', '1.2.3', 'MR'],
    );
  });

  it('writes AT values, which DICOM JSON gives as hex strings, as tags', async () => {
    const bytes = await singleFrameInstance(
      metadata({ '00280009': { vr: 'AT', Value: ['00181063', '52009230'] } }),
      1,
      native(le(FRAMES[0]!)),
    );
    const parsed = parseDicom(bytes);
    assert.ok(parsed.ok);
    assert.deepEqual(parsed.value.dataset['00280009']?.Value, [0x00181063, 0x52009230]);
  });

  /** The metadata with a Modality LUT Sequence instead of the rescale: LUT Data maps v → 100 + 2v over 0…63. */
  function withLut(lutData: Record<string, unknown>): JsonDataset {
    const md = { ...metadata(), '52009230': undefined };
    return {
      ...md,
      '00283000': {
        vr: 'SQ',
        Value: [{ '00283002': { vr: 'US', Value: [64, 0, 16] }, '00283006': { vr: 'OW', ...lutData } }],
      },
      '60003000': { vr: 'OW', BulkDataURI: 'http://pacs/bulk/60003000' },
    };
  }
  const lutBytes = Buffer.from(Uint16Array.from({ length: 64 }, (_, v) => 100 + 2 * v).buffer);
  const mapped = Array.from(FRAMES[2]!, (v) => 100 + 2 * v);

  it('applies LUT Data given inline', async () => {
    const md = withLut({ InlineBinary: lutBytes.toString('base64') });
    assert.deepEqual(pixels(ok(await decodeDicom(await singleFrameInstance(md, 3, native(le(FRAMES[2]!)))))), mapped);
  });

  it('fetches the bulk data the decoder reads (LUT Data), and no other', async () => {
    const fetched: string[] = [];
    const md = withLut({ BulkDataURI: 'http://pacs/bulk/00283000/1/00283006' });
    const bytes = await singleFrameInstance(md, 3, native(le(FRAMES[2]!)), async (uri) => {
      fetched.push(uri);
      return new Uint8Array(lutBytes);
    });
    assert.deepEqual(pixels(ok(await decodeDicom(bytes))), mapped);
    assert.deepEqual(fetched, ['http://pacs/bulk/00283000/1/00283006'], 'the overlay is not fetched');
    const parsed = parseDicom(bytes);
    assert.ok(parsed.ok && !parsed.value.dataset['60003000'], 'and is left out');
  });

  it('refuses Float and Double Float Pixel Data as the whole file is refused, rather than pass the frame off as integers', async () => {
    for (const [tag, vr, bits, samples] of [
      ['7FE00008', 'OF', 32, new Float32Array([0.5, 1.25, -2, 3.75])],
      ['7FE00009', 'OD', 64, new Float64Array([0.5, 1.25, -2, 3.75])],
    ] as const) {
      const md = {
        ...metadata({ '00280100': { vr: 'US', Value: [bits] } }),
        '7FE00010': undefined,
        [tag]: { vr, BulkDataURI: `http://pacs/bulk/${tag.toLowerCase()}` },
      };
      const frame = native(new Uint8Array(samples.buffer));
      const err = await singleFrameInstance(md, 2, frame).then(
        () => assert.fail(`${tag}: made a one-frame object`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof SingleFrameError, String(err));
      // The same three frames in a whole file: the decoder's refusal, word for word.
      const r = await decodeDicom(wholeFile(tag, vr, bits, Buffer.concat([frame.bytes, frame.bytes, frame.bytes])));
      assert.deepEqual([err.code, err.message], r.ok ? [] : [r.code, r.reason], tag);
    }
  });

  it('refuses a frame the instance does not have', async () => {
    await assert.rejects(singleFrameInstance(metadata(), 4, native(le(FRAMES[0]!))), SingleFrameError);
    await assert.rejects(singleFrameInstance(metadata(), 0, native(le(FRAMES[0]!))), /frame 0 is not one of the instance's 3/);
  });
});

describe('frameCount', () => {
  it('counts Number of Frames as the decoder does: 1 when absent, zero or unreadable', () => {
    assert.equal(frameCount(metadata()), 3);
    assert.equal(frameCount({ '00280008': { vr: 'IS', Value: ['96'] } }), 96);
    assert.equal(frameCount({}), 1);
    assert.equal(frameCount({ '00280008': { vr: 'IS', Value: [0] } }), 1);
    assert.equal(frameCount({ '00280008': { vr: 'IS', Value: ['x'] } }), 1);
  });
});
