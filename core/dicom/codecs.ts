/**
 * Pixel codecs for encapsulated transfer syntaxes: dcmjs-codecs' WebAssembly build
 * (libjpeg-turbo 3 with 8/12/16-bit and lossless JPEG, CharLS, OpenJPEG, OpenJPH,
 * libjxl, RLE) behind one typed, synchronous call once initialised.
 *
 * Why dcmjs-codecs and not the @cornerstonejs/codec-* packages: the cornerstone
 * libjpeg-turbo build is 8-bit only, so JPEG Extended 12-bit (…4.51) and JPEG
 * Lossless (…4.57/.70) would need two more JS decoders (jpeg-lossless-decoder-js and a
 * 12-bit DCT decoder that no package exports for Node); dcmjs-codecs decodes every
 * syntax in ../shared/dicom-samples from one MIT-licensed module with typings, and
 * its libjpeg-turbo decodes 8-bit JPEG bit-exactly like PIL (tested), which the
 * preprocessing parity with the Python pipeline relies on.
 *
 * Codec errors are thrown as exceptions (e.g. "JPEG datastream contains no image");
 * a WebAssembly trap ("unreachable") may leave the module's stack/heap inconsistent,
 * so after a trap the module is re-initialised before the next decode.
 */
import { createRequire } from 'node:module';
import type { PixelEncoding } from './transfer-syntaxes.js';

type CodecsLib = typeof import('dcmjs-codecs');
const require = createRequire(import.meta.url);
// CommonJS webpack bundle: its named exports are invisible to ESM static analysis.
const lib = require('dcmjs-codecs') as CodecsLib;

export interface FrameGeometry {
  readonly rows: number;
  readonly cols: number;
  readonly bitsAllocated: number;
  readonly bitsStored: number;
  readonly samplesPerPixel: number;
  readonly pixelRepresentation: number;
  readonly planarConfiguration: number;
  readonly photometric: string;
}

export interface DecodedFrame {
  readonly bytes: Uint8Array;
  /** What the bytes are now (a JPEG decoder turns YBR into RGB). */
  readonly photometric: string;
  readonly planarConfiguration: number;
  /** The samples as the codec wrote them: 8 or 16 bits each, whatever Bits Allocated says. */
  readonly bitsAllocated: number;
  readonly bitsStored: number;
}

/**
 * A frame the codec cannot turn into the layout the dataset describes (its codestream says
 * another size, sample count or precision): refused by name rather than read as garbage.
 */
export class FrameLayoutError extends Error {
  constructor(
    readonly code: 'MALFORMED' | 'UNSUPPORTED_PIXELS',
    message: string,
  ) {
    super(message);
    this.name = 'FrameLayoutError';
  }
}

/** What a frame's own codestream header says about it (JPEG SOF, JPEG-LS SOF55 + SOS, JPEG 2000 SIZ). */
export interface CodestreamHeader {
  readonly rows: number;
  readonly cols: number;
  readonly components: number;
  /** Bits per sample (the largest over the components). */
  readonly precision: number;
  /** JPEG-LS interleave mode of the first scan: 0 = one component after another. */
  readonly interleave?: number;
  /** JPEG 2000: some component is subsampled (XRsiz or YRsiz ≠ 1). */
  readonly subsampled?: boolean;
}

let ready: Promise<void> | undefined;
let needsReset = false;

/** Load the WebAssembly module once (≈ 4 MB); safe to call repeatedly. */
export function initCodecs(): Promise<void> {
  if (needsReset) {
    needsReset = false;
    try {
      lib.NativeCodecs.release();
    } catch {
      /* already released */
    }
    ready = undefined;
  }
  ready ??= lib.NativeCodecs.initializeAsync({ logCodecsInfo: false, logCodecsTrace: false }).catch((err: unknown) => {
    ready = undefined; // let a later call retry
    throw err;
  });
  return ready;
}

/** After a WebAssembly trap: the module is re-initialised by the next initCodecs(). */
export function markCodecsForReset(): void {
  needsReset = true;
}

export function codecsReady(): boolean {
  return !needsReset && lib.NativeCodecs.isInitialized();
}

const u16 = (b: Uint8Array, i: number): number => (b[i]! << 8) | b[i + 1]!;
const u32 = (b: Uint8Array, i: number): number => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(i);

/** JPEG start-of-frame markers (SOF0–3, 5–7, 9–11, 13–15); JPEG-LS has its own, SOF55. */
const JPEG_SOF = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);
const JPEG_LS_SOF = new Set([0xf7]);

/**
 * The frame header of a JPEG or JPEG-LS stream, and for JPEG-LS the interleave mode of its
 * first scan (the codec lays components out by it, yet reports the dataset's planar configuration).
 */
function jpegHeader(b: Uint8Array, sof: ReadonlySet<number>): CodestreamHeader | undefined {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) return undefined;
  let header: { -readonly [K in keyof CodestreamHeader]: CodestreamHeader[K] } | undefined;
  for (let i = 2; i + 4 <= b.length && b[i] === 0xff; ) {
    const m = b[i + 1]!;
    if (m === 0xff) {
      i++; // fill byte
      continue;
    }
    if (m === 0x01 || (m >= 0xd0 && m <= 0xd7)) {
      i += 2; // TEM and RSTn have no length
      continue;
    }
    const at = i + 4;
    if (!header && sof.has(m)) {
      if (at + 6 > b.length) return undefined;
      header = { precision: b[at]!, rows: u16(b, at + 1), cols: u16(b, at + 3), components: b[at + 5]! };
      if (sof === JPEG_SOF) return header;
    } else if (m === 0xda || m === 0xd9) {
      const ns = b[at];
      // SOS: Ns, Ns × (Ci, Tmi), NEAR, ILV.
      if (header && ns !== undefined && at + 2 + 2 * ns < b.length) header.interleave = b[at + 2 + 2 * ns]!;
      return header;
    }
    i += 2 + u16(b, i + 2);
  }
  return header;
}

/**
 * Whether dcmjs-codecs' own scan for the JPEG bit depth (ScanJpegDataForBitDepth in
 * wasm/src/Decoders/JpegDecoder.cpp, walked here step for step) would meet a TEM marker (FF01)
 * before a frame header: it does not move past one, so the decode would never return.
 */
function jpegDepthScanStalls(b: Uint8Array): boolean {
  for (let i = 0; i + 4 < b.length; ) {
    const m = b[i + 1]!;
    if (b[i] !== 0xff) return false;
    if (JPEG_SOF.has(m)) return false;
    if (m === 0x01) return true;
    if (m === 0xff) i += 1;
    else if ((m >= 0xd0 && m <= 0xd9) || (m > 0x02 && m <= 0xbf)) i += 2;
    else if (m >= 0xc4) i += 2 + u16(b, i + 2); // DHT, JPG, DAC, SOS, DQT … APPn, JPGn, COM
    else return false;
  }
  return false;
}

/** Where the JPEG 2000 codestream starts: at once, or inside a JP2 file's jp2c box. */
function j2kCodestreamStart(b: Uint8Array): number | undefined {
  if (b.length >= 4 && u16(b, 0) === 0xff4f) return 0;
  for (let i = 0; i + 8 <= b.length; ) {
    const len = u32(b, i);
    const head = len === 1 ? 16 : 8;
    if (String.fromCharCode(b[i + 4]!, b[i + 5]!, b[i + 6]!, b[i + 7]!) === 'jp2c') return i + head;
    const size = len === 1 && i + 16 <= b.length ? u32(b, i + 8) * 2 ** 32 + u32(b, i + 12) : len;
    if (size < head) return undefined; // 0: the last box, and not the codestream
    i += size;
  }
  return undefined;
}

/** JPEG 2000 / HTJ2K: the SIZ segment that follows SOC (ISO/IEC 15444-1 A.5.1). */
function j2kHeader(b: Uint8Array): CodestreamHeader | undefined {
  const start = j2kCodestreamStart(b);
  if (start === undefined || start + 46 > b.length || u16(b, start) !== 0xff4f || u16(b, start + 2) !== 0xff51) return undefined;
  const s = start + 4; // Lsiz
  const components = u16(b, s + 36);
  if (components === 0 || s + 38 + 3 * components > b.length) return undefined;
  let precision = 0;
  let subsampled = false;
  for (let c = 0; c < components; c++) {
    const at = s + 38 + 3 * c;
    precision = Math.max(precision, (b[at]! & 0x7f) + 1);
    subsampled ||= b[at + 1] !== 1 || b[at + 2] !== 1;
  }
  return { cols: u32(b, s + 4) - u32(b, s + 12), rows: u32(b, s + 8) - u32(b, s + 16), components, precision, subsampled };
}

/** The frame's own header, where its codec lays the output out by it; undefined when absent or unreadable. */
export function readCodestreamHeader(kind: Exclude<PixelEncoding['kind'], 'native'>, encoded: Uint8Array): CodestreamHeader | undefined {
  switch (kind) {
    case 'jpeg':
      return jpegHeader(encoded, JPEG_SOF);
    case 'jpegls':
      return jpegHeader(encoded, JPEG_LS_SOF);
    case 'jpeg2000':
    case 'htj2k':
      return j2kHeader(encoded);
    default:
      return undefined;
  }
}

const CODEC_NAME: Record<Exclude<PixelEncoding['kind'], 'native'>, string> = {
  rle: 'RLE',
  jpeg: 'JPEG',
  jpegls: 'JPEG-LS',
  jpeg2000: 'JPEG 2000',
  htj2k: 'HTJ2K',
  jpegxl: 'JPEG XL',
};

/** What to tell the codec, and how the samples it writes are laid out. */
interface FramePlan {
  readonly codec: FrameGeometry;
  readonly bitsAllocated: number;
  readonly bitsStored: number;
  /** Where the codec's layout does not follow the dataset's Planar Configuration. */
  readonly planarConfiguration?: number;
}

/**
 * Reconcile the dataset's description of a frame with the frame's own header (dcmjs-codecs,
 * wasm/src/Decoders*.cpp, sizes some outputs by one and fills them by the other):
 * - JPEG: libjpeg writes 8-bit samples up to precision 8 and 16-bit ones above, whatever Bits
 *   Allocated says; the codec is told the codestream's size, and the samples read as such.
 * - JPEG-LS: CharLS writes ⌈P/8⌉ bytes per sample, and with interleave mode "none" one
 *   component plane after another, while the codec reports the dataset's planar configuration.
 * - JPEG 2000: OpenJPEG's output is read over Rows × Columns pixels and cast to 8 bits for
 *   colour, so another size or a colour precision over 8 cannot be decoded correctly.
 * - HTJ2K: samples are clamped to Bits Allocated; 16 bits keep any precision up to 16, and the
 *   sign of an 8-bit signed sample.
 * - RLE: one segment per sample byte (PS3.5 G.2); any other count leaves part of the frame unwritten.
 * Whatever cannot be reconciled is refused by name.
 */
export function planFrame(kind: Exclude<PixelEncoding['kind'], 'native'>, g: FrameGeometry, encoded: Uint8Array): FramePlan {
  const asDataset: FramePlan = { codec: g, bitsAllocated: g.bitsAllocated, bitsStored: g.bitsStored };
  if (kind === 'rle') {
    const segments = encoded.length >= 4 ? new DataView(encoded.buffer, encoded.byteOffset, 4).getUint32(0, true) : undefined;
    const want = g.samplesPerPixel * Math.ceil(g.bitsAllocated / 8);
    if (segments !== undefined && segments !== want)
      throw new FrameLayoutError('MALFORMED', `RLE frame has ${segments} segments, Samples per Pixel and Bits Allocated need ${want}`);
    return asDataset;
  }
  if (kind === 'jpeg' && jpegDepthScanStalls(encoded)) throw new FrameLayoutError('MALFORMED', 'JPEG: a TEM marker (FF01) before the frame header');
  const h = readCodestreamHeader(kind, encoded);
  if (!h) return asDataset; // JPEG XL checks the dataset itself; an unreadable header is the codec's to refuse
  const name = CODEC_NAME[kind];
  // JPEG allows a frame header of 0 lines (the count comes later, in a DNL segment).
  if ((h.rows !== g.rows && !(kind === 'jpeg' && h.rows === 0)) || h.cols !== g.cols)
    throw new FrameLayoutError('MALFORMED', `${name} frame is ${h.rows}×${h.cols}, Rows/Columns say ${g.rows}×${g.cols}`);
  if (h.components !== g.samplesPerPixel)
    throw new FrameLayoutError('MALFORMED', `${name} frame has ${h.components} components, Samples per Pixel is ${g.samplesPerPixel}`);
  if (h.precision < 1 || h.precision > 16) throw new FrameLayoutError('UNSUPPORTED_PIXELS', `${name} precision ${h.precision} is not supported`);
  if (h.subsampled) throw new FrameLayoutError('UNSUPPORTED_PIXELS', `${name} with subsampled components is not supported`);
  if (kind === 'jpeg2000' && h.components > 1 && h.precision > 8)
    throw new FrameLayoutError('UNSUPPORTED_PIXELS', `JPEG 2000 colour at ${h.precision} bits is not supported (the codec keeps only 8 bits of each sample)`);
  const written = (bits: number): FramePlan => {
    const bitsStored = bits === g.bitsAllocated ? g.bitsStored : h.precision;
    return { codec: { ...g, bitsAllocated: bits, bitsStored }, bitsAllocated: bits, bitsStored };
  };
  const sampleBits = h.precision <= 8 ? 8 : 16;
  switch (kind) {
    case 'jpeg':
      return written(sampleBits);
    case 'jpegls':
      return { ...written(sampleBits), planarConfiguration: h.components > 1 && h.interleave === 0 ? 1 : 0 };
    case 'jpeg2000':
      return { ...written(sampleBits), planarConfiguration: 0 };
    case 'htj2k':
      return { ...written(sampleBits === 8 && g.bitsAllocated === 8 && g.pixelRepresentation === 0 ? 8 : 16), planarConfiguration: 0 };
    default:
      return asDataset;
  }
}

/**
 * Decode one encapsulated frame; throws FrameLayoutError for a frame its codec cannot lay
 * out as described, Error with the codec's message otherwise. Call initCodecs() first.
 */
export function decodeEncapsulatedFrame(kind: Exclude<PixelEncoding['kind'], 'native'>, encoded: Uint8Array, g: FrameGeometry): DecodedFrame {
  if (!codecsReady()) throw new Error('pixel codecs not initialised');
  const plan = planFrame(kind, g, encoded);
  const c = plan.codec;
  const ctx = new lib.Context({
    width: c.cols,
    height: c.rows,
    bitsAllocated: c.bitsAllocated,
    bitsStored: c.bitsStored,
    samplesPerPixel: c.samplesPerPixel,
    pixelRepresentation: c.pixelRepresentation,
    planarConfiguration: c.planarConfiguration,
    photometricInterpretation: c.photometric,
    encodedBuffer: encoded,
  });
  const nc = lib.NativeCodecs;
  let out;
  try {
    switch (kind) {
      case 'rle':
        out = nc.decodeRle(ctx);
        break;
      case 'jpeg':
        out = nc.decodeJpeg(ctx, { convertColorspaceToRgb: true });
        break;
      case 'jpegls':
        out = nc.decodeJpegLs(ctx);
        break;
      case 'jpeg2000':
        out = nc.decodeJpeg2000(ctx);
        break;
      case 'htj2k':
        out = nc.decodeHtJpeg2000(ctx);
        break;
      case 'jpegxl':
        out = nc.decodeJpegXl(ctx);
        break;
    }
  } catch (err) {
    if (err instanceof WebAssembly.RuntimeError) markCodecsForReset();
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(`${kind} codec: ${msg.replace(/^[A-Za-z0-9_:]*::/, '')}`);
  }
  const bytes = out.getDecodedBuffer();
  if (!bytes || bytes.length === 0) throw new Error(`${kind} codec returned no pixels`);
  return {
    bytes,
    photometric: out.getPhotometricInterpretation() ?? g.photometric,
    planarConfiguration: plan.planarConfiguration ?? out.getPlanarConfiguration() ?? g.planarConfiguration,
    bitsAllocated: plan.bitsAllocated,
    bitsStored: plan.bitsStored,
  };
}

/**
 * Decode a standalone JPEG file (8/12-bit, gray or colour) with the same libjpeg-turbo
 * the DICOM path uses. Geometry comes from the caller (read from the SOF marker).
 */
export function decodeJpegFile(encoded: Uint8Array, g: { rows: number; cols: number; precision: number; components: number }): Uint8Array {
  const bitsAllocated = g.precision > 8 ? 16 : 8;
  return decodeEncapsulatedFrame('jpeg', encoded, {
    rows: g.rows,
    cols: g.cols,
    bitsAllocated,
    bitsStored: g.precision,
    samplesPerPixel: g.components,
    pixelRepresentation: 0,
    planarConfiguration: 0,
    photometric: g.components === 1 ? 'MONOCHROME2' : 'YBR_FULL',
  }).bytes;
}
