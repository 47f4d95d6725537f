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

/** Decode one encapsulated frame; throws Error with the codec's message. Call initCodecs() first. */
export function decodeEncapsulatedFrame(kind: Exclude<PixelEncoding['kind'], 'native'>, encoded: Uint8Array, g: FrameGeometry): DecodedFrame {
  if (!codecsReady()) throw new Error('pixel codecs not initialised');
  const ctx = new lib.Context({
    width: g.cols,
    height: g.rows,
    bitsAllocated: g.bitsAllocated,
    bitsStored: g.bitsStored,
    samplesPerPixel: g.samplesPerPixel,
    pixelRepresentation: g.pixelRepresentation,
    planarConfiguration: g.planarConfiguration,
    photometricInterpretation: g.photometric,
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
    planarConfiguration: out.getPlanarConfiguration() ?? g.planarConfiguration,
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
