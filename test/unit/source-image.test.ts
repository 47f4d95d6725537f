/** core/dicom/source-image.ts: what `cbmir load` refuses to convert, and that real files still decode. */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { decodeSourceImage, hasJpegEoi, SourceImageError } from '../../core/dicom/source-image.js';
import { figshareSampleDir } from '../helpers/fixtures.js';

const jpeg = readFileSync(path.join(figshareSampleDir, 'images/1.jpg'));

describe('truncated JPEG', () => {
  it('is refused, not stored with its missing rows grey', async () => {
    await assert.rejects(
      decodeSourceImage(jpeg.subarray(0, 3000)),
      (e: unknown) => e instanceof SourceImageError && /truncated/.test(e.message),
    );
    // Cut in the middle of the EOI marker, or padded with zeros after the cut.
    await assert.rejects(decodeSourceImage(jpeg.subarray(0, jpeg.length - 1)), /truncated/);
    await assert.rejects(decodeSourceImage(Buffer.concat([jpeg.subarray(0, 3000), Buffer.alloc(4096)])), /truncated/);
  });

  it('an EOI followed by zero bytes or trailing data still decodes', async () => {
    const whole = await decodeSourceImage(jpeg);
    for (const tail of [Buffer.alloc(16), Buffer.from('trailing text')]) {
      const img = await decodeSourceImage(Buffer.concat([jpeg, tail]));
      assert.deepEqual(img.pixels, whole.pixels);
    }
  });

  it('an EOI inside an APP segment (an EXIF thumbnail) does not count', () => {
    const soi = jpeg.subarray(0, 2);
    const app1 = Buffer.from([0xff, 0xe1, 0x00, 0x06, 0xff, 0xd9, 0x00, 0x00]);
    assert.equal(hasJpegEoi(Buffer.concat([soi, app1, jpeg.subarray(2, 3000)])), false);
    assert.equal(hasJpegEoi(Buffer.concat([soi, app1, jpeg.subarray(2)])), true);
  });

  it('every JPEG of the repo samples has one', () => {
    const dir = path.join(figshareSampleDir, 'images');
    const files = readdirSync(dir).filter((f) => /\.jpe?g$/i.test(f));
    assert.ok(files.length > 0);
    for (const f of files) assert.ok(hasJpegEoi(readFileSync(path.join(dir, f))), f);
  });
});
