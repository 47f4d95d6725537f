/**
 * Detects Pixel Data cut short by a truncated file. dcmjs does not report it: when an
 * element's declared length runs past the end of the input it zero-fills the rest, so a
 * cut file would "decode" into an image with a black tail. We find the Pixel Data
 * element header in the raw bytes (its declared length is known from what dcmjs
 * allocated, which makes the pattern unambiguous) and check that its value fits; for
 * encapsulated data we require the Sequence Delimitation Item after it.
 *
 * Returns false only on positive evidence of truncation; deflated data (compressed as a
 * whole) and headers we cannot find are not judged here.
 */
import { TS } from './transfer-syntaxes.js';

const SEQ_DELIMITER = Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);

function u32(v: number, le: boolean): Buffer {
  const b = Buffer.alloc(4);
  if (le) b.writeUInt32LE(v >>> 0);
  else b.writeUInt32BE(v >>> 0);
  return b;
}

export function pixelDataComplete(input: Uint8Array, transferSyntaxUid: string, encapsulated: boolean, nativeLength: number | undefined): boolean {
  if (transferSyntaxUid === TS.DeflatedExplicitVRLittleEndian) return true;
  const buf = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const le = transferSyntaxUid !== TS.ExplicitVRBigEndian;
  const tag = le ? Buffer.from([0xe0, 0x7f, 0x10, 0x00]) : Buffer.from([0x7f, 0xe0, 0x00, 0x10]);
  if (encapsulated) {
    const header = Buffer.concat([tag, Buffer.from('OB\0\0', 'latin1'), u32(0xffffffff, true)]);
    const at = buf.lastIndexOf(header);
    if (at < 0) return true;
    return buf.indexOf(SEQ_DELIMITER, at + header.length) >= 0;
  }
  if (nativeLength === undefined) return true;
  const candidates =
    transferSyntaxUid === TS.ImplicitVRLittleEndian
      ? [Buffer.concat([tag, u32(nativeLength, true)])]
      : ['OW', 'OB', 'UN'].map((vr) => Buffer.concat([tag, Buffer.from(`${vr}\0\0`, 'latin1'), u32(nativeLength, le)]));
  for (const header of candidates) {
    const at = buf.lastIndexOf(header);
    if (at >= 0) return at + header.length + nativeLength <= buf.length;
  }
  return true;
}
