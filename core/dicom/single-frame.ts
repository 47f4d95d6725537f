/**
 * One frame of a multi-frame instance as a Part-10 object of its own, for instances too large to
 * fetch whole (CBMIR_WORKER_MAX_INSTANCE_BYTES): the attributes come from WADO-RS Retrieve
 * Metadata (DICOM JSON, PS3.18 F.2), the pixels from Retrieve Frames, as stored. decodeDicom reads
 * the object like any stored instance, so every photometric, LUT and codec rule applies unchanged.
 * Only what a one-frame object has to say differs:
 *
 *   - Number of Frames is 1 and Pixel Data is the frame: native (big-endian samples swapped, so the
 *     object is Explicit VR Little Endian), or one encapsulated fragment in the stored syntax;
 *   - Per-Frame Functional Groups keep the frame's own item only, which is item 1 as the frame is
 *     frame 1 (Enhanced objects keep the frame's Pixel Value Transformation there);
 *   - Specific Character Set is ISO_IR 192: DICOM JSON strings are Unicode whatever the stored set.
 *
 * Pixels the decoder refuses whatever the frame (Float or Double Float Pixel Data, which a frame
 * written as Pixel Data would pass off as integers) are refused from the metadata, before the
 * frame is fetched, with the whole file's refusal.
 *
 * Binary attributes arrive as InlineBinary or as a BulkDataURI. Of the latter only those the decoder
 * reads (palette and Modality LUT data) are fetched; the rest (overlays, ICC profiles, private
 * blobs) are left out, as each fetch makes the PACS read the whole instance again.
 */
import dcmjs, { type DcmDataset, type DcmElement } from 'dcmjs';
import { FLOAT_PIXELS_REFUSAL } from './decode.js';
import { swapBytePairs } from './frames.js';
import { IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME } from './mr-writer.js';
import { pixelEncoding, TS } from './transfer-syntaxes.js';

interface JsonElement {
  readonly vr?: string;
  readonly Value?: unknown[];
  readonly InlineBinary?: string;
  readonly BulkDataURI?: string;
}

/** A DICOM JSON dataset (PS3.18 F.2.2), keyed by tag "GGGGEEEE". */
export type JsonDataset = Readonly<Record<string, JsonElement | undefined>>;

/** One frame as the PACS stores it (WADO-RS Retrieve Frames with transfer-syntax=*). */
export interface StoredFrame {
  readonly bytes: Uint8Array;
  readonly transferSyntaxUid: string;
}

export type FetchBulkData = (uri: string) => Promise<Uint8Array>;

/**
 * The metadata cannot make a one-frame object: an absent frame, values dcmjs cannot write
 * (MALFORMED), or pixels the decoder would refuse in the whole file (UNSUPPORTED_PIXELS, its reason).
 */
export class SingleFrameError extends Error {
  constructor(
    message: string,
    readonly code: 'MALFORMED' | 'UNSUPPORTED_PIXELS' = 'MALFORMED',
  ) {
    super(message);
    this.name = 'SingleFrameError';
  }
}

const NUMBER_OF_FRAMES = '00280008';
const PER_FRAME_GROUPS = '52009230';
const PIXEL_DATA = '7FE00010';
/** Pixel Data and its float variants (Float, Double Float): replaced by the one frame. */
const PIXEL_DATA_TAGS = new Set(['7FE00008', '7FE00009', PIXEL_DATA]);
const BINARY_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'UN']);
/** Red/Green/Blue Palette Color LUT Data and LUT Data (Modality LUT Sequence): what decode.ts reads as bytes. */
const BULK_DATA_READ = new Set(['00281201', '00281202', '00281203', '00283006']);

const element = (metadata: JsonDataset, tag: string): JsonElement | undefined =>
  Object.entries(metadata).find(([key, el]) => key.toUpperCase() === tag && el !== undefined)?.[1];
const present = (metadata: JsonDataset, tag: string): boolean => element(metadata, tag) !== undefined;

/**
 * Throws SingleFrameError (UNSUPPORTED_PIXELS) for metadata whose pixels decodeDicom refuses in
 * the whole file whatever the frame: Float or Double Float Pixel Data and no Pixel Data.
 */
export function checkPixelsSupported(metadata: JsonDataset): void {
  if (!present(metadata, PIXEL_DATA) && (present(metadata, '7FE00008') || present(metadata, '7FE00009')))
    throw new SingleFrameError(FLOAT_PIXELS_REFUSAL, 'UNSUPPORTED_PIXELS');
}

/** Number of Frames as the decoder counts it: 1 when absent or unreadable. */
export function frameCount(metadata: JsonDataset): number {
  const v = metadata[NUMBER_OF_FRAMES]?.Value?.[0];
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isFinite(n) ? Math.max(1, Math.floor(n)) : 1;
}

const numberOf = (metadata: JsonDataset, tag: string): number => {
  const v = element(metadata, tag)?.Value?.[0];
  return typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
};

/**
 * The frame to fetch alone in place of `wanted`: the one before it when 8-bit frames have an odd
 * number of bytes and `wanted` starts mid-word. Big endian stores such data as 16-bit words
 * (OW), so a frame fetched alone is pair-swapped from its first byte (toLittleEndian), which is
 * right only for a frame that starts on a word: frame n starts at (n − 1) × its size. Whatever
 * the transfer syntax, the frame before is as good a frame to index.
 */
export function wordAlignedFrame(metadata: JsonDataset, wanted: number): number {
  const frameBytes = numberOf(metadata, '00280010') * numberOf(metadata, '00280011') * (numberOf(metadata, '00280002') || 1);
  const startsMidWord = numberOf(metadata, '00280100') === 8 && frameBytes % 2 === 1 && (wanted - 1) % 2 === 1;
  return startsMidWord ? wanted - 1 : wanted;
}

/** An ArrayBuffer of exactly these bytes, one byte longer when odd (PS3.5 §7.1.1: values have even length). */
function evenBuffer(bytes: Uint8Array): ArrayBuffer {
  const out = new Uint8Array(bytes.length + (bytes.length % 2));
  out.set(bytes);
  return out.buffer;
}

/**
 * Big-endian native samples in little-endian order. 8-bit samples have no order of their own, but
 * in OW (the stored Pixel Data's VR) they come two to a 16-bit word, pair-swapped (swapBytePairs).
 * Pairs are counted from the frame's first byte, right for a frame that starts on a word: the
 * worker fetches only such frames (wordAlignedFrame). When frames have an odd number of bytes,
 * the last byte's partner lies in the next frame, so that one sample is off.
 */
function toLittleEndian(bytes: Uint8Array, bitsAllocated: number, vr: string | undefined): Uint8Array {
  const width = bitsAllocated / 8;
  if (width === 1 && vr === 'OW') return swapBytePairs(bytes);
  if (!Number.isInteger(width) || width <= 1) return bytes;
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i + width <= bytes.length; i += width) for (let k = 0; k < width; k++) out[i + k] = bytes[i + width - 1 - k]!;
  return out;
}

/** The frame as Pixel Data (stored with VR `storedVr`), and the transfer syntax the object is written in. */
function pixelData(
  frame: StoredFrame,
  bitsAllocated: number,
  storedVr: string | undefined,
): { transferSyntaxUid: string; element: DcmElement } {
  const encoding = pixelEncoding(frame.transferSyntaxUid);
  if (encoding?.kind !== 'native')
    return { transferSyntaxUid: frame.transferSyntaxUid, element: { vr: 'OB', Value: [evenBuffer(frame.bytes)] } };
  const bytes = encoding.littleEndian ? frame.bytes : toLittleEndian(frame.bytes, bitsAllocated, storedVr);
  return { transferSyntaxUid: TS.ExplicitVRLittleEndian, element: { vr: bitsAllocated > 8 ? 'OW' : 'OB', Value: [evenBuffer(bytes)] } };
}

/** Bytes of a binary value; a non-binary VR sent as bulk data (US LUT Data) is kept as the 16-bit words it is. */
const binary = (vr: string, bytes: Uint8Array): DcmElement => ({ vr: BINARY_VRS.has(vr) ? vr : 'OW', Value: [evenBuffer(bytes)] });

/** A DICOM JSON element as dcmjs writes it (its in-memory form is DICOM JSON but for binary and AT values). */
async function toElement(tag: string, el: JsonElement, fetchBulk: FetchBulkData | undefined): Promise<DcmElement | undefined> {
  const vr = el.vr;
  if (!vr) return undefined;
  if (vr === 'SQ') return { vr, Value: await Promise.all((el.Value ?? []).map((item) => toDataset(item as JsonDataset, fetchBulk))) };
  if (el.InlineBinary !== undefined) return binary(vr, Buffer.from(el.InlineBinary, 'base64'));
  if (el.BulkDataURI !== undefined) return BULK_DATA_READ.has(tag) && fetchBulk ? binary(vr, await fetchBulk(el.BulkDataURI)) : undefined;
  if (BINARY_VRS.has(vr)) return undefined;
  if (vr === 'AT') return { vr, Value: (el.Value ?? []).map((v) => (typeof v === 'string' ? parseInt(v, 16) : v)) };
  return { vr, Value: el.Value ?? [] };
}

async function toDataset(json: JsonDataset, fetchBulk: FetchBulkData | undefined): Promise<DcmDataset> {
  const out: DcmDataset = {};
  for (const [key, el] of Object.entries(json)) {
    const tag = key.toUpperCase();
    const element = el && typeof el === 'object' ? await toElement(tag, el, fetchBulk) : undefined;
    if (element) out[tag] = element;
  }
  return out;
}

/** The metadata without Pixel Data, and with only the frame's item of the Per-Frame Functional Groups. */
function attributesOfFrame(metadata: JsonDataset, frameNumber: number): JsonDataset {
  const kept: Record<string, JsonElement> = {};
  for (const [key, el] of Object.entries(metadata)) {
    const tag = key.toUpperCase();
    if (el && !PIXEL_DATA_TAGS.has(tag) && tag !== PER_FRAME_GROUPS) kept[tag] = el;
  }
  // An item missing here is missing for the whole object too: the decoder falls back to the shared groups either way.
  const item = metadata[PER_FRAME_GROUPS]?.Value?.[frameNumber - 1];
  if (item) kept[PER_FRAME_GROUPS] = { vr: 'SQ', Value: [item] };
  return kept;
}

const uid = (ds: DcmDataset, tag: string): string | undefined => {
  const v = ds[tag]?.Value?.[0];
  return typeof v === 'string' && v ? v : undefined;
};

/**
 * Frame `frameNumber` (1-based) of the instance `metadata` describes, as Part-10 bytes that
 * decodeDicom reads as that frame alone. Throws SingleFrameError for metadata that cannot make one;
 * errors of `fetchBulk` are passed through.
 */
export async function singleFrameInstance(
  metadata: JsonDataset,
  frameNumber: number,
  frame: StoredFrame,
  fetchBulk?: FetchBulkData,
): Promise<Uint8Array> {
  checkPixelsSupported(metadata);
  const frames = frameCount(metadata);
  if (!Number.isInteger(frameNumber) || frameNumber < 1 || frameNumber > frames) {
    throw new SingleFrameError(`frame ${frameNumber} is not one of the instance's ${frames}`);
  }
  const ds = await toDataset(attributesOfFrame(metadata, frameNumber), fetchBulk);
  const bitsAllocated = Number(ds['00280100']?.Value?.[0] ?? 8);
  const pixels = pixelData(frame, bitsAllocated, element(metadata, PIXEL_DATA)?.vr);
  ds[NUMBER_OF_FRAMES] = { vr: 'IS', Value: [1] };
  ds['00080005'] = { vr: 'CS', Value: ['ISO_IR 192'] };
  ds[PIXEL_DATA] = pixels.element;

  const meta: DcmDataset = {
    '00020001': { vr: 'OB', Value: [new Uint8Array([0, 1]).buffer] },
    '00020010': { vr: 'UI', Value: [pixels.transferSyntaxUid] },
    '00020012': { vr: 'UI', Value: [IMPLEMENTATION_CLASS_UID] },
    '00020013': { vr: 'SH', Value: [IMPLEMENTATION_VERSION_NAME] },
  };
  const sopClass = uid(ds, '00080016');
  const sopInstance = uid(ds, '00080018');
  if (sopClass) meta['00020002'] = { vr: 'UI', Value: [sopClass] };
  if (sopInstance) meta['00020003'] = { vr: 'UI', Value: [sopInstance] };

  const dict = new dcmjs.data.DicomDict(meta);
  dict.dict = ds;
  try {
    return new Uint8Array(dict.write({ allowInvalidVRLength: true }));
  } catch (err) {
    throw new SingleFrameError(
      `the metadata cannot be written as a dataset: ${err instanceof Error ? err.message : String(err)}`.slice(0, 300),
    );
  }
}
