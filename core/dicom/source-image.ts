/**
 * Decodes a dataset image file (JPEG or PNG) to grayscale samples exactly as stored,
 * for `cbmir load`. No windowing, no scaling (except pngjs's standard expansion of
 * 1/2/4-bit gray to 8-bit): the DICOM written from it must decode back to the same
 * numbers the Python pipeline reads with PIL.
 *
 * JPEG goes through the same libjpeg-turbo (dcmjs-codecs) as DICOM JPEG, which is
 * bit-exact with PIL's decoder (checked on figshare-cheng); pure-JS jpeg-js differs by
 * ±1 grey level on the same files, so it is not used.
 * Colour images are refused: datasets for `cbmir load` are grayscale MR.
 */
import { PNG } from 'pngjs';
import { decodeJpegFile, initCodecs } from './codecs.js';

export interface SourceImage {
  readonly pixels: Uint8Array | Uint16Array;
  readonly rows: number;
  readonly cols: number;
  /** 8 for 8-bit images, else the stored precision (12 or 16). */
  readonly bitsStored: number;
  readonly format: 'jpeg' | 'png';
  /** True for lossy formats (baseline/extended JPEG). */
  readonly lossy: boolean;
}

export class SourceImageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SourceImageError';
  }
}

interface JpegFrameHeader {
  precision: number;
  rows: number;
  cols: number;
  components: number;
  lossless: boolean;
}

/** Read the SOFn marker (ITU T.81 B.2.2) for geometry; throws SourceImageError if absent. */
export function readJpegHeader(b: Uint8Array): JpegFrameHeader {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) throw new SourceImageError('not a JPEG file (no SOI marker)');
  let i = 2;
  while (i + 4 <= b.length) {
    if (b[i] !== 0xff) throw new SourceImageError(`corrupt JPEG: expected a marker at byte ${i}`);
    const marker = b[i + 1]!;
    if (marker === 0xff) {
      i += 1; // fill byte
      continue;
    }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      i += 2;
      continue;
    }
    const len = (b[i + 2]! << 8) | b[i + 3]!;
    if (len < 2 || i + 2 + len > b.length) throw new SourceImageError('corrupt JPEG: segment runs past the end');
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof) {
      if (len < 8) throw new SourceImageError('corrupt JPEG: short SOF segment');
      return {
        precision: b[i + 4]!,
        rows: (b[i + 5]! << 8) | b[i + 6]!,
        cols: (b[i + 7]! << 8) | b[i + 8]!,
        components: b[i + 9]!,
        lossless: marker === 0xc3 || marker === 0xc7 || marker === 0xcb || marker === 0xcf,
      };
    }
    if (marker === 0xda || marker === 0xd9) break; // SOS / EOI before any SOF
    i += 2 + len;
  }
  throw new SourceImageError('corrupt JPEG: no frame header (SOF)');
}

/**
 * Whether the data reaches an EOI marker after the scans (ITU T.81 B.2.1): segments are
 * skipped by their length (an EXIF thumbnail's own EOI does not count), entropy-coded data
 * byte by byte, where FF is followed by 00 (stuffing) or RSTn, never D9.
 */
export function hasJpegEoi(b: Uint8Array): boolean {
  let i = 2;
  while (i < b.length) {
    if (b[i] !== 0xff) {
      i++; // entropy-coded data (or bytes libjpeg would skip with a warning)
      continue;
    }
    let j = i + 1;
    while (j < b.length && b[j] === 0xff) j++; // fill bytes
    if (j >= b.length) return false;
    const marker = b[j]!;
    if (marker === 0xd9) return true;
    if (marker === 0x00 || marker === 0x01 || marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7)) {
      i = j + 1;
      continue;
    }
    if (j + 2 >= b.length) return false;
    i = j + 1 + ((b[j + 1]! << 8) | b[j + 2]!);
  }
  return false;
}

async function decodeJpeg(b: Uint8Array): Promise<SourceImage> {
  const h = readJpegHeader(b);
  // libjpeg-turbo only warns on a premature end of data and fills the missing rows with grey:
  // a file cut short in a copy would be stored as a plausible image.
  if (!hasJpegEoi(b)) throw new SourceImageError('truncated JPEG (no EOI marker)');
  if (h.components !== 1) throw new SourceImageError(`colour JPEG (${h.components} components): expected grayscale`);
  if (h.rows === 0 || h.cols === 0) throw new SourceImageError('JPEG with zero height/width (DNL) is not supported');
  await initCodecs();
  let bytes: Uint8Array;
  try {
    bytes = decodeJpegFile(b, h);
  } catch (err) {
    throw new SourceImageError(`JPEG decode failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  const n = h.rows * h.cols;
  if (h.precision <= 8) {
    if (bytes.length < n) throw new SourceImageError('JPEG decoder returned too few pixels');
    return { pixels: Uint8Array.from(bytes.subarray(0, n)), rows: h.rows, cols: h.cols, bitsStored: 8, format: 'jpeg', lossy: !h.lossless };
  }
  if (bytes.length < n * 2) throw new SourceImageError('JPEG decoder returned too few pixels');
  const px = new Uint16Array(n);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let k = 0; k < n; k++) px[k] = dv.getUint16(k * 2, true);
  return { pixels: px, rows: h.rows, cols: h.cols, bitsStored: h.precision, format: 'jpeg', lossy: !h.lossless };
}

function decodePng(b: Uint8Array): SourceImage {
  let png: ReturnType<typeof PNG.sync.read>;
  try {
    // skipRescale keeps 16-bit samples as they are (Uint16Array); lower depths expand to 8-bit.
    const probe = PNG.sync.read(Buffer.from(b.buffer, b.byteOffset, b.byteLength), { skipRescale: true });
    png = probe.depth === 16 || probe.depth === 8 ? probe : PNG.sync.read(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  } catch (err) {
    throw new SourceImageError(`PNG decode failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  // colorType: 0 gray, 4 gray+alpha are grayscale; 2/6 RGB(A) and 3 palette are colour.
  if (png.colorType !== 0 && png.colorType !== 4) throw new SourceImageError(`colour PNG (colour type ${png.colorType}): expected grayscale`);
  const n = png.width * png.height;
  const data = png.data as unknown as ArrayLike<number>; // RGBA-expanded: gray in R
  const sixteen = png.depth === 16;
  const px = sixteen ? new Uint16Array(n) : new Uint8Array(n);
  for (let k = 0; k < n; k++) px[k] = data[k * 4]!;
  return { pixels: px, rows: png.height, cols: png.width, bitsStored: sixteen ? 16 : 8, format: 'png', lossy: false };
}

/** Decode by content (magic bytes), not by file name. Throws SourceImageError with the reason. */
export async function decodeSourceImage(b: Uint8Array): Promise<SourceImage> {
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return decodeJpeg(b);
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return decodePng(b);
  throw new SourceImageError('unsupported image format (expected JPEG or PNG)');
}
