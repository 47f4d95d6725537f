/**
 * Reading Part-10 bytes (core/dicom/parse.ts) where dcmjs alone would fail the file, checked on
 * the repo's real samples (test/fixtures/dicom-samples) with one header element edited in the
 * bytes, as `dcmodify` would: nothing else in the file changes.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { decodeDicom, type DecodeOk, type DecodeResult } from '../../core/dicom/decode.js';
import { dicomFixturesDir } from '../helpers/fixtures.js';

const fixture = (name: string) => readFileSync(path.join(dicomFixturesDir, name));

function ok(r: DecodeResult): DecodeOk {
  if (!r.ok) assert.fail(`expected a decoded image, got refusal ${r.code}: ${r.reason}`);
  return r;
}

/** Where the dataset starts: after the preamble, "DICM" and the File Meta its group length (0002,0000) measures. */
const datasetStart = (b: Buffer) => 132 + 12 + b.readUInt32LE(140);

/**
 * The file with its Specific Character Set (0008,0005), the dataset's first element, set to
 * `value` (padded with a space to even length, as PS3.5 §6.2 says for CS).
 */
function withCharset(file: Buffer, value: string, explicitVr: boolean): Buffer {
  const at = datasetStart(file);
  assert.deepEqual([file.readUInt16LE(at), file.readUInt16LE(at + 2)], [0x0008, 0x0005], 'the sample starts its dataset with (0008,0005)');
  const oldLength = explicitVr ? file.readUInt16LE(at + 6) : file.readUInt32LE(at + 4);
  const padded = Buffer.from(value.length % 2 ? `${value} ` : value, 'latin1');
  const header = Buffer.from(file.subarray(at, at + 8));
  if (explicitVr) header.writeUInt16LE(padded.length, 6);
  else header.writeUInt32LE(padded.length, 4);
  return Buffer.concat([file.subarray(0, at), header, padded, file.subarray(at + 8 + oldLength)]);
}

describe('Specific Character Set that dcmjs 0.51 throws on', () => {
  // Multi-valued (ISO 2022 code extensions: Japanese, Korean, Chinese sites) and misspelled terms.
  const sets = [
    'ISO 2022 IR 6\\ISO 2022 IR 87',
    '\\ISO 2022 IR 149',
    'ISO 2022 IR 6\\ISO 2022 IR 58',
    'ISO_IR 100\\ISO_IR 192',
    'ISO_IR100',
    'UTF-8',
  ];
  const samples = [
    { file: 'transfer-syntax/siemens_mosaic_1.dcm', explicitVr: true },
    { file: 'transfer-syntax/siemens_mosaic_2.dcm', explicitVr: false },
  ];
  for (const { file, explicitVr } of samples) {
    for (const set of sets) {
      it(`${path.basename(file)} (${explicitVr ? 'explicit' : 'implicit'} VR) with (0008,0005) "${set}" decodes to the same pixels`, async () => {
        const o = ok(await decodeDicom(fixture(file)));
        const d = ok(await decodeDicom(withCharset(fixture(file), set, explicitVr)));
        assert.equal(d.frames.length, o.frames.length);
        assert.deepEqual(d.frames[0]!.pixels, o.frames[0]!.pixels);
        // The (ASCII) text the index keeps reads as before.
        assert.deepEqual(d.meta, o.meta);
      });
    }
  }

  it('a file with such a set is still refused for what else is wrong with it (Pixel Data cut short)', async () => {
    const edited = withCharset(fixture('transfer-syntax/siemens_mosaic_1.dcm'), 'ISO 2022 IR 6\\ISO 2022 IR 87', true);
    const r = await decodeDicom(edited.subarray(0, edited.length - 1000));
    assert.deepEqual(r.ok ? [] : [r.code, /truncated|runs past the end/.test(r.reason)], ['MALFORMED', true], r.ok ? 'decoded' : r.reason);
  });

  it('a file with such a set cut short inside its header is refused, not read in part', async () => {
    const edited = withCharset(fixture('transfer-syntax/siemens_mosaic_1.dcm'), 'UTF-8', true);
    const r = await decodeDicom(edited.subarray(0, datasetStart(edited) + 600));
    assert.equal(r.ok, false);
    if (!r.ok) assert.equal(r.code, 'MALFORMED', r.reason);
  });
});

/** An explicit VR element of a 4-byte-length VR (UR, UC, OL, …): tag, VR, 2 reserved bytes, length, value. */
function longElement(group: number, element: number, vr: string, value: string): Buffer {
  const v = Buffer.from(value.length % 2 ? `${value} ` : value, 'latin1');
  const header = Buffer.alloc(12);
  header.writeUInt16LE(group, 0);
  header.writeUInt16LE(element, 2);
  header.write(vr, 4, 'latin1');
  header.writeUInt32LE(v.length, 8);
  return Buffer.concat([header, v]);
}

/** The file with `element` appended to its File Meta, and the group length (0002,0000) grown to match. */
function withMetaElement(file: Buffer, element: Buffer): Buffer {
  const at = datasetStart(file);
  const out = Buffer.concat([file.subarray(0, at), element, file.subarray(at)]);
  out.writeUInt32LE(file.readUInt32LE(140) + element.length, 140);
  return out;
}

describe('Deflated datasets: inflated once, within the bound', () => {
  const deflated = () => fixture('transfer-syntax/deflate_image_dfl.dcm');
  // (0002,0026) Source Presentation Address, UR: a 4-byte-length VR a File Meta may hold.
  const withUr = () => withMetaElement(deflated(), longElement(0x0002, 0x0026, 'UR', 'http://example.org/dicom-web'));

  it('the unmodified sample is refused TOO_LARGE under a small maxInflatedBytes', async () => {
    const r = await decodeDicom(deflated(), { maxInflatedBytes: 100_000 });
    assert.deepEqual(r.ok ? [] : [r.code, r.reason], ['TOO_LARGE', 'too large: the deflated dataset inflates beyond 100000 bytes']);
  });

  it('with a UR element in its File Meta it is refused alike, not inflated past the bound', async () => {
    const r = await decodeDicom(withUr(), { maxInflatedBytes: 100_000 });
    assert.deepEqual(r.ok ? [] : [r.code, r.reason], ['TOO_LARGE', 'too large: the deflated dataset inflates beyond 100000 bytes']);
  });

  it('with a UR element in its File Meta it decodes, within the default bound, to the same pixels', async () => {
    const o = ok(await decodeDicom(deflated()));
    const d = ok(await decodeDicom(withUr()));
    assert.deepEqual(d.frames[0]!.pixels, o.frames[0]!.pixels);
    assert.equal(d.meta.transferSyntaxUid, '1.2.840.10008.1.2.1.99');
  });

  it('a deflated stream that does not inflate is refused MALFORMED, naming it, without another inflate', async () => {
    const file = deflated();
    const r = await decodeDicom(file.subarray(0, datasetStart(file) + 2000));
    assert.deepEqual(r.ok ? [] : [r.code, /^corrupt deflated dataset: /.test(r.reason)], ['MALFORMED', true], r.ok ? 'decoded' : r.reason);
  });
});
