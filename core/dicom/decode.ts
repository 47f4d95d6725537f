/**
 * DICOM Part-10 bytes (a file, or one part of a WADO-RS multipart answer) → the
 * grayscale frame(s) to embed, or a typed refusal saying why not. Throws only when
 * the machine fails, not the file (below).
 *
 *   parse (dcmjs) → classify (SOP class, Pixel Data present) → split frames →
 *   decode (native bytes or a codec) → samples → Modality LUT → grayscale Float32.
 *
 * Multi-frame objects (the documented choice): by default only the **middle frame**
 * (0-based index ⌊(n−1)/2⌋, reported as the 1-based frameNumber) is decoded and
 * embedded: one vector per instance, whatever its frame count. A 96-frame Enhanced MR
 * or a 30-frame cine would otherwise flood the index with near-identical neighbours
 * and cost 96 inferences; the middle of a volume or loop is the most representative
 * single frame. `frames: 'all'` decodes up to `maxFrames` evenly spaced frames for
 * callers that want more.
 *
 * Siemens mosaics (one image tiling the slices of a volume: core/dicom/mosaic.ts) are
 * embedded as their middle slice, for the same reason.
 *
 * Refusals are deterministic for the given bytes: a worker should record the reason
 * and not retry. What is not (memory exhausted, codecs that did not start) is thrown as a
 * DecoderResourceError instead (core/dicom/resources.ts): the worker retries it.
 */
import type { DcmDataset, DcmElement } from 'dcmjs';
import { codecsReady, decodeEncapsulatedFrame, FrameLayoutError, initCodecs, type FrameGeometry } from './codecs.js';
import { items, num, nums, str } from './dataset-values.js';
import { encapsulatedFrames, nativeFrames, swapBytePairs } from './frames.js';
import { readLabel, type DatasetLabel } from './label.js';
import { DEFAULT_MAX_PIXELS_PER_FRAME } from './limits.js';
import { cropTile, mosaicTile } from './mosaic.js';
import { parseDicom } from './parse.js';
import { DecoderResourceError, isResourceError, resourceFailure } from './resources.js';
import { pixelDataComplete } from './truncation.js';
import { nativeFrameBytes, nativePhotometric, toGrayscale, type LutTable, type ModalityLut, type Palette, type PixelFormat } from './pixels.js';
import { isNonImageSopClass, sopClassName } from './sop-classes.js';
import { pixelEncoding, transferSyntaxName, TS } from './transfer-syntaxes.js';

export type RefusalCode =
  | 'NOT_DICOM' // not Part-10 at all (garbage, empty, another format)
  | 'MALFORMED' // Part-10 header but unreadable / truncated / inconsistent
  | 'NOT_AN_IMAGE' // SR, presentation state, document, segmentation, …
  | 'NO_PIXEL_DATA'
  | 'UNSUPPORTED_SYNTAX'
  | 'UNSUPPORTED_PIXELS' // a pixel format we do not decode (1-bit, float, CMYK, …)
  | 'TOO_LARGE'
  | 'DECODE_FAILED'; // the codec rejected the compressed data

export interface InstanceMeta {
  readonly sopInstanceUid?: string;
  readonly seriesInstanceUid?: string;
  readonly studyInstanceUid?: string;
  readonly sopClassUid?: string;
  readonly sopClassName?: string;
  readonly modality?: string;
  readonly bodyPartExamined?: string;
  /** PHI: only ever turned into a keyed hash (core/index/patient-key.ts); never logged or stored. */
  readonly patientId?: string;
  readonly issuerOfPatientId?: string;
  readonly transferSyntaxUid?: string;
  readonly numberOfFrames?: number;
  readonly photometric?: string;
  readonly rows?: number;
  readonly cols?: number;
  /** The dataset label `cbmir load` wrote (core/dicom/label.ts), if any. */
  readonly label?: DatasetLabel;
}

export interface GrayFrame {
  /** rows × cols, row-major, after the Modality LUT; MONOCHROME1 inverted; colour → luma. */
  readonly pixels: Float32Array;
  readonly rows: number;
  readonly cols: number;
  /** 1-based, as in WADO-RS /frames/{n}. */
  readonly frameNumber: number;
  /** For a Siemens mosaic: the 1-based slice (tile) these pixels are, out of the whole frame. */
  readonly mosaicSlice?: number;
}

export interface DecodeOk {
  readonly ok: true;
  readonly frames: GrayFrame[];
  readonly meta: InstanceMeta;
}

export interface DecodeRefusal {
  readonly ok: false;
  readonly code: RefusalCode;
  readonly reason: string;
  /** Whatever could be read before refusing (UIDs let a worker record the refusal). */
  readonly meta?: InstanceMeta;
}

export type DecodeResult = DecodeOk | DecodeRefusal;

export interface DecodeOptions {
  /** Which frames of a multi-frame object: 'middle' (default), 'first', or 'all' (up to maxFrames). */
  readonly frames?: 'middle' | 'first' | 'all';
  /** Cap for frames: 'all' (evenly spaced when the object has more). Default 16. */
  readonly maxFrames?: number;
  /** Refuse frames with more pixels (Rows × Columns) than this: a memory bound (limits.ts). Default 36 Mi (6144²). */
  readonly maxPixelsPerFrame?: number;
  /** Refuse a Deflated dataset that inflates beyond this many bytes (memory bound). Default 256 MiB. */
  readonly maxInflatedBytes?: number;
}

/** Float Pixel Data (7FE0,0008) or Double Float (7FE0,0009) without (7FE0,0010); single-frame.ts refuses alike from metadata. */
export const FLOAT_PIXELS_REFUSAL = 'float pixel data is not supported';

/** Bytes in a binary value as dcmjs gives it (one buffer, or several for native Pixel Data read in parts). */
const byteLength = (value: unknown[]): number => value.reduce<number>((n, v) => n + (v instanceof ArrayBuffer || ArrayBuffer.isView(v) ? v.byteLength : 0), 0);

const refuse = (code: RefusalCode, reason: string, meta?: InstanceMeta): DecodeRefusal => ({ ok: false, code, reason, ...(meta ? { meta } : {}) });

function readMeta(ds: DcmDataset, fileMeta: DcmDataset, ts: string): InstanceMeta {
  const sopClassUid = str(ds, '00080016') ?? str(fileMeta, '00020002');
  const sopInstanceUid = str(ds, '00080018') ?? str(fileMeta, '00020003');
  const label = readLabel(ds);
  const fields: Record<string, unknown> = {
    sopInstanceUid,
    seriesInstanceUid: str(ds, '0020000E'),
    studyInstanceUid: str(ds, '0020000D'),
    sopClassUid,
    sopClassName: sopClassUid ? sopClassName(sopClassUid) : undefined,
    modality: str(ds, '00080060'),
    bodyPartExamined: str(ds, '00180015'),
    patientId: str(ds, '00100020'),
    issuerOfPatientId: str(ds, '00100021'),
    transferSyntaxUid: ts,
    numberOfFrames: num(ds, '00280008'),
    photometric: str(ds, '00280004'),
    rows: num(ds, '00280010'),
    cols: num(ds, '00280011'),
    label,
  };
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)) as InstanceMeta;
}

/** Frame indices (0-based) to decode under the chosen policy. */
export function selectFrames(count: number, policy: DecodeOptions['frames'] = 'middle', maxFrames = 16): number[] {
  if (count <= 1) return [0];
  if (policy === 'first') return [0];
  if (policy === 'middle') return [Math.floor((count - 1) / 2)];
  const k = Math.max(1, Math.min(count, maxFrames));
  if (k === count) return Array.from({ length: count }, (_, i) => i);
  // Evenly spaced, centred in k equal segments.
  return Array.from({ length: k }, (_, i) => Math.min(count - 1, Math.floor(((i + 0.5) * count) / k)));
}

/**
 * LUT Data given as numbers (US, SS). Entries of 8 bits may come packed two to a word, the first in
 * the low byte, in the retired US form of palette data (`dcmquant +pu` writes it): then there are
 * half as many numbers as the descriptor's entries.
 */
function numberEntries(values: number[], entriesCount: number, bitsPerEntry: number | undefined): ArrayLike<number> {
  if (bitsPerEntry !== 8 || values.length === entriesCount || values.length !== Math.ceil(entriesCount / 2)) return values;
  return Uint8Array.from({ length: entriesCount }, (_, i) => (values[i >> 1]! >> ((i % 2) * 8)) & 0xff);
}

/**
 * LUT Data given as bytes (OW), in the file's byte order: a 16-bit word per entry, or 8-bit entries
 * packed one per byte, which Explicit VR Big Endian stores pair-swapped (swapBytePairs), as 8-bit
 * Pixel Data in OW.
 */
function byteEntries(raw: Uint8Array, entriesCount: number, littleEndian: boolean, vr: string | undefined): ArrayLike<number> | undefined {
  if (raw.length >= entriesCount * 2) {
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    return Uint16Array.from({ length: entriesCount }, (_, i) => dv.getUint16(i * 2, littleEndian));
  }
  if (raw.length < entriesCount) return undefined;
  const inOrder = !littleEndian && vr === 'OW' ? swapBytePairs(raw) : raw;
  return inOrder.subarray(0, entriesCount);
}

/** LUT Descriptor + LUT Data (PS3.3 C.7.6.3.1.5, C.11.1.1.1). */
function lutTable(descriptor: number[] | undefined, el: DcmElement | undefined, signedFirst: boolean, littleEndian: boolean): LutTable | undefined {
  if (!descriptor || descriptor.length < 3) return undefined;
  const entriesCount = descriptor[0] === 0 ? 65536 : descriptor[0]!;
  let first = descriptor[1]!;
  if (signedFirst && first > 32767) first -= 65536;
  const values = el?.Value;
  let entries: ArrayLike<number> | undefined;
  if (Array.isArray(values) && values.length > 0 && values.every((x) => typeof x === 'number')) entries = numberEntries(values as number[], entriesCount, descriptor[2]);
  else {
    const data = values?.length === 1 ? values[0] : undefined;
    const raw = data instanceof ArrayBuffer ? new Uint8Array(data) : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : undefined;
    if (raw) entries = byteEntries(raw, entriesCount, littleEndian, el?.vr);
  }
  return entries && entries.length > 0 ? { firstMapped: first, entries } : undefined;
}

function readPalette(ds: DcmDataset, pixelRepresentation: number, littleEndian: boolean): Palette | undefined {
  const ch = (d: string, t: string) => lutTable(nums(ds, d), ds[t], pixelRepresentation === 1, littleEndian);
  const red = ch('00281101', '00281201');
  const green = ch('00281102', '00281202');
  const blue = ch('00281103', '00281203');
  return red && green && blue ? { red, green, blue } : undefined;
}

/** Rescale from the top level, else Enhanced per-frame, else shared functional groups. */
function modalityLut(ds: DcmDataset, frameIndex: number, pixelRepresentation: number, littleEndian: boolean): ModalityLut {
  const rescale = (d: DcmDataset | undefined): ModalityLut | undefined => {
    const slope = num(d, '00281053');
    const intercept = num(d, '00281052');
    if (slope === undefined && intercept === undefined) return undefined;
    return { kind: 'rescale', slope: slope ?? 1, intercept: intercept ?? 0 };
  };
  const top = rescale(ds);
  if (top) return top;
  const perFrame = items(ds, '52009230')[frameIndex];
  for (const groups of [perFrame, items(ds, '52009229')[0]]) {
    const hit = rescale(items(groups, '00289145')[0]);
    if (hit) return hit;
  }
  const seq = items(ds, '00283000')[0];
  if (seq) {
    const table = lutTable(nums(seq, '00283002'), seq['00283006'], pixelRepresentation === 1, littleEndian);
    if (table) return { kind: 'table', table };
  }
  return { kind: 'none' };
}

export async function decodeDicom(input: Uint8Array, opts: DecodeOptions = {}): Promise<DecodeResult> {
  try {
    return await decodeUnsafe(input, opts);
  } catch (err) {
    // Memory ran out somewhere (a frame's buffers, dcmjs's copies): the file may be fine.
    if (isResourceError(err)) throw resourceFailure(err);
    // Defence in depth: every known failure is a typed refusal above; this is the net.
    return refuse('MALFORMED', `unexpected decoder error: ${err instanceof Error ? err.message : String(err)}`.slice(0, 300));
  }
}

async function decodeUnsafe(input: Uint8Array, opts: DecodeOptions): Promise<DecodeResult> {
  const parsed = parseDicom(input, opts.maxInflatedBytes !== undefined ? { maxInflatedBytes: opts.maxInflatedBytes } : {});
  if (!parsed.ok) {
    const code = /^not a DICOM|^empty|^input/.test(parsed.reason) ? 'NOT_DICOM' : /^too large/.test(parsed.reason) ? 'TOO_LARGE' : 'MALFORMED';
    return refuse(code, parsed.reason);
  }
  const { dataset: ds, meta: fileMeta, transferSyntaxUid: ts } = parsed.value;
  const meta = readMeta(ds, fileMeta, ts);

  if (isNonImageSopClass(meta.sopClassUid)) return refuse('NOT_AN_IMAGE', `not an image: ${meta.sopClassName}`, meta);
  const pixelEl = ds['7FE00010'];
  if (!pixelEl || !Array.isArray(pixelEl.Value) || pixelEl.Value.length === 0) {
    if (ds['7FE00008'] || ds['7FE00009']) return refuse('UNSUPPORTED_PIXELS', FLOAT_PIXELS_REFUSAL, meta);
    return refuse('NO_PIXEL_DATA', `not an image: no Pixel Data (7FE0,0010) in ${meta.sopClassName ?? 'this object'}`, meta);
  }
  const encoding = pixelEncoding(ts);
  if (!encoding) return refuse('UNSUPPORTED_SYNTAX', `unsupported transfer syntax: ${transferSyntaxName(ts)}`, meta);
  const first = pixelEl.Value[0];
  const nativeLength = pixelEl.Value.length === 1 && first instanceof ArrayBuffer ? first.byteLength : undefined;
  if (!pixelDataComplete(input, ts, encoding.kind !== 'native', nativeLength)) {
    return refuse('MALFORMED', 'Pixel Data is truncated (the file ends inside it)', meta);
  }

  const rows = num(ds, '00280010');
  const cols = num(ds, '00280011');
  const bitsAllocated = num(ds, '00280100');
  const samplesPerPixel = num(ds, '00280002') ?? 1;
  const photometric = str(ds, '00280004') ?? (samplesPerPixel === 1 ? 'MONOCHROME2' : 'RGB');
  if (!rows || !cols || rows < 1 || cols < 1) return refuse('MALFORMED', 'Rows/Columns missing or zero', meta);
  if (!Number.isInteger(rows) || !Number.isInteger(cols)) return refuse('MALFORMED', `Rows/Columns ${rows}×${cols} are not whole numbers`, meta);
  if (bitsAllocated === undefined) return refuse('MALFORMED', 'Bits Allocated (0028,0100) missing', meta);
  if (bitsAllocated === 1) return refuse('UNSUPPORTED_PIXELS', '1-bit (bitmap) pixel data is not embedded', meta);
  if (![8, 16, 32].includes(bitsAllocated)) return refuse('UNSUPPORTED_PIXELS', `Bits Allocated ${bitsAllocated} is not supported`, meta);
  if (samplesPerPixel !== 1 && samplesPerPixel !== 3) return refuse('UNSUPPORTED_PIXELS', `Samples per Pixel ${samplesPerPixel} is not supported`, meta);
  let bitsStored = num(ds, '00280101') ?? bitsAllocated;
  if (bitsStored < 1 || bitsStored > bitsAllocated) bitsStored = bitsAllocated;
  let highBit = num(ds, '00280102') ?? bitsStored - 1;
  if (highBit < bitsStored - 1 || highBit >= bitsAllocated) highBit = bitsStored - 1;
  const pixelRepresentation = num(ds, '00280103') === 1 ? 1 : 0;
  const planarConfiguration = num(ds, '00280006') === 1 ? 1 : 0;
  // Memory grows with the pixel count alone: preprocessing pads to a square without building it (resizePadded).
  const maxPixels = opts.maxPixelsPerFrame ?? DEFAULT_MAX_PIXELS_PER_FRAME;
  if (rows * cols > maxPixels) return refuse('TOO_LARGE', `frame of ${rows}×${cols} exceeds ${maxPixels} pixels`, meta);
  const frameCount = Math.max(1, Math.floor(num(ds, '00280008') ?? 1));

  const fmt: PixelFormat = {
    rows,
    cols,
    samplesPerPixel,
    bitsAllocated,
    bitsStored,
    highBit,
    pixelRepresentation,
    planarConfiguration,
    photometric: encoding.kind === 'native' ? nativePhotometric({ rows, cols, samplesPerPixel, bitsAllocated, photometric }, frameCount, byteLength(pixelEl.Value)) : photometric,
    littleEndian: encoding.kind === 'native' ? encoding.littleEndian : true,
  };
  // Explicit VR Big Endian writes OW as 16-bit words: 8-bit samples in it come pair-swapped (OB's do not).
  const pairSwapped = ts === TS.ExplicitVRBigEndian && pixelEl.vr === 'OW' && bitsAllocated === 8;
  const split =
    encoding.kind === 'native'
      ? nativeFrames(pixelEl.Value, frameCount, nativeFrameBytes(fmt), pairSwapped)
      : encapsulatedFrames(pixelEl.Value, frameCount);
  if (!split.ok) return refuse('MALFORMED', split.reason, meta);

  const palette = photometric === 'PALETTE COLOR' ? readPalette(ds, pixelRepresentation, ts !== TS.ExplicitVRBigEndian) : undefined;
  if (encoding.kind !== 'native') {
    try {
      // Another decode's WebAssembly trap may have marked the module for a reset while this
      // one awaited: initialise again rather than refuse a valid image (bounded).
      await initCodecs();
      for (let i = 0; i < 3 && !codecsReady(); i++) await initCodecs();
      if (!codecsReady()) throw new Error('not ready after re-initialising');
    } catch (err) {
      // The WebAssembly module did not load or start (memory, a missing file): not this image's fault.
      throw new DecoderResourceError(`pixel codecs unavailable: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  const tile = mosaicTile(ds, rows, cols);
  const frames: GrayFrame[] = [];
  for (const index of selectFrames(frameCount, opts.frames, opts.maxFrames)) {
    let frameBytes = split.frames[index]!;
    let frameFmt = fmt;
    if (encoding.kind !== 'native') {
      const geometry: FrameGeometry = { rows, cols, bitsAllocated, bitsStored, samplesPerPixel, pixelRepresentation, planarConfiguration, photometric };
      try {
        const decoded = decodeEncapsulatedFrame(encoding.kind, frameBytes, geometry);
        frameBytes = decoded.bytes;
        // JPEG 2000's multi-component transform is undone by the codec: ICT/RCT come out RGB.
        const outPhotometric =
          (encoding.kind === 'jpeg2000' || encoding.kind === 'htj2k') && /^YBR_(ICT|RCT)$/.test(decoded.photometric) ? 'RGB' : decoded.photometric;
        // Samples the codec wrote at another size than Bits Allocated (an 8-bit JPEG in a
        // 16-bit dataset) hold the codestream's precision, from bit 0.
        const resized = decoded.bitsAllocated !== bitsAllocated;
        frameFmt = {
          ...fmt,
          photometric: outPhotometric,
          planarConfiguration: decoded.planarConfiguration,
          bitsAllocated: decoded.bitsAllocated,
          bitsStored: decoded.bitsStored,
          highBit: resized ? decoded.bitsStored - 1 : highBit,
        };
      } catch (err) {
        if (err instanceof FrameLayoutError) return refuse(err.code, `frame ${index + 1}: ${err.message}`, meta);
        if (isResourceError(err)) throw resourceFailure(err);
        return refuse('DECODE_FAILED', `frame ${index + 1}: ${err instanceof Error ? err.message : String(err)}`.slice(0, 300), meta);
      }
      // Anything but the exact size is a layout the reading below would get wrong.
      const expected = nativeFrameBytes(frameFmt);
      if (frameBytes.length !== expected) {
        return refuse(
          'DECODE_FAILED',
          `frame ${index + 1}: codec returned ${frameBytes.length} bytes, expected ${expected} (${rows}×${cols}, ${frameFmt.samplesPerPixel} × ${frameFmt.bitsAllocated}-bit samples per pixel)`,
          meta,
        );
      }
    }
    const gray = toGrayscale(frameBytes, frameFmt, modalityLut(ds, index, pixelRepresentation, ts !== TS.ExplicitVRBigEndian), palette);
    if (!gray.ok) return refuse('UNSUPPORTED_PIXELS', gray.reason, meta);
    if (tile)
      frames.push({ pixels: cropTile(gray.pixels, cols, tile), rows: tile.rows, cols: tile.cols, frameNumber: index + 1, mosaicSlice: tile.slice + 1 });
    else frames.push({ pixels: gray.pixels, rows, cols, frameNumber: index + 1 });
  }
  return { ok: true, frames, meta };
}

