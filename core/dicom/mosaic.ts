/**
 * Siemens mosaics: an fMRI/DTI volume stored as one image, its N slices tiled row-major in a
 * ⌈√N⌉ × ⌈√N⌉ grid (ImageType contains MOSAIC; N in the private element (0019,xx0A),
 * NumberOfImagesInMosaic, of the "SIEMENS MR HEADER" block). The model was trained on single
 * slices: embedded whole, a mosaic of 35 slices scores 0.47 against its own middle slice, below
 * "orthogonal". So the middle slice, tile ⌊(N−1)/2⌋, is what gets embedded, as the middle frame
 * of a multi-frame object is.
 */
import type { DcmDataset } from 'dcmjs';
import { bytes, num, str } from './dataset-values.js';

export interface MosaicTile {
  /** 0-based slice embedded. */
  readonly slice: number;
  readonly rows: number;
  readonly cols: number;
  /** Top-left corner of the tile in the whole frame. */
  readonly top: number;
  readonly left: number;
}

const SIEMENS_CREATOR = 'SIEMENS MR HEADER';

/** The Siemens private block (0019,00xx) reserved by SIEMENS MR HEADER, as its element high byte. */
function siemensBlock(ds: DcmDataset): number | undefined {
  for (let b = 0x10; b <= 0xff; b++) {
    const creator = str(ds, `0019${b.toString(16).padStart(4, '0').toUpperCase()}`);
    if (creator === SIEMENS_CREATOR) return b;
  }
  return undefined;
}

function slicesInMosaic(ds: DcmDataset): number | undefined {
  const block = siemensBlock(ds);
  if (block === undefined) return undefined;
  const tag = `0019${block.toString(16).toUpperCase().padStart(2, '0')}0A`;
  const n = num(ds, tag);
  if (n !== undefined) return n;
  // Implicit VR: a private element arrives as UN bytes (US, little endian).
  const raw = bytes(ds, tag);
  return raw && raw.length >= 2 ? raw[0]! | (raw[1]! << 8) : undefined;
}

/** The tile to embed, or undefined when the image is not a mosaic whose grid fits its frame. */
export function mosaicTile(ds: DcmDataset, rows: number, cols: number): MosaicTile | undefined {
  const imageType = ds['00080008']?.Value;
  if (!Array.isArray(imageType) || !imageType.some((v) => typeof v === 'string' && v.trim().toUpperCase() === 'MOSAIC')) return undefined;
  const n = slicesInMosaic(ds);
  if (n === undefined || !Number.isInteger(n) || n < 2) return undefined;
  const side = Math.ceil(Math.sqrt(n));
  if (rows % side !== 0 || cols % side !== 0) return undefined;
  const tileRows = rows / side;
  const tileCols = cols / side;
  const slice = Math.floor((n - 1) / 2);
  return { slice, rows: tileRows, cols: tileCols, top: Math.floor(slice / side) * tileRows, left: (slice % side) * tileCols };
}

/** The tile's pixels out of the whole row-major frame. */
export function cropTile(pixels: Float32Array, cols: number, t: MosaicTile): Float32Array {
  const out = new Float32Array(t.rows * t.cols);
  for (let r = 0; r < t.rows; r++) out.set(pixels.subarray((t.top + r) * cols + t.left, (t.top + r) * cols + t.left + t.cols), r * t.cols);
  return out;
}
