/**
 * Decoded frame bytes → one Float32 grayscale image (rows × cols, row-major), per
 * PS3.3 C.7.6.3 (Image Pixel module) and C.11.1 (Modality LUT):
 *
 *  - samples: 8/16/32 bits allocated, little or big endian; Bits Stored / High Bit
 *    masking; two's-complement sign extension when Pixel Representation = 1;
 *  - MONOCHROME2 as is, MONOCHROME1 inverted after the Modality LUT (x → max + min − x
 *    over the frame: brighter always means more signal, as models/PREPROCESSING.md expects);
 *  - Modality LUT: Rescale Slope/Intercept (top level or Enhanced functional groups,
 *    resolved by the caller) or a Modality LUT Sequence; never applied to colour;
 *  - colour → luma Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601, the coefficients of
 *    models/train/preprocess.py): RGB (interleaved or planar), PALETTE COLOR (via the
 *    palette), YBR_FULL and YBR_FULL_422/PARTIAL_422 (their Y component *is* that luma).
 *
 * Pixel Padding Value is not masked out (the Python reference does not either).
 */
export const LUMA = [0.299, 0.587, 0.114] as const;

/**
 * YBR → RGB (PS3.3 C.7.6.3.1.2; full range, or BT.601 studio range for PARTIAL), each channel
 * rounded and clipped to the stored range as a decoder would write it, then luma.
 */
function ybrLuma(full: boolean, bitsStored: number): (y: number, cb: number, cr: number) => number {
  const max = 2 ** Math.min(bitsStored, 16) - 1;
  const mid = (max + 1) / 2;
  const scale = (max + 1) / 256; // PARTIAL's 16/235/240 are 8-bit levels
  const clip = (v: number) => Math.min(max, Math.max(0, Math.round(v)));
  return (y, cb, cr) => {
    const b = cb - mid;
    const r = cr - mid;
    let R: number;
    let G: number;
    let B: number;
    if (full) {
      R = y + 1.402 * r;
      G = y - 0.344136 * b - 0.714136 * r;
      B = y + 1.772 * b;
    } else {
      const yy = 1.164383 * (y - 16 * scale);
      R = yy + 1.596027 * r;
      G = yy - 0.391762 * b - 0.812968 * r;
      B = yy + 2.017232 * b;
    }
    return LUMA[0] * clip(R) + LUMA[1] * clip(G) + LUMA[2] * clip(B);
  };
}

export interface PixelFormat {
  readonly rows: number;
  readonly cols: number;
  readonly samplesPerPixel: number;
  readonly bitsAllocated: number;
  readonly bitsStored: number;
  readonly highBit: number;
  readonly pixelRepresentation: number;
  readonly planarConfiguration: number;
  readonly photometric: string;
  readonly littleEndian: boolean;
}

export interface Palette {
  /** Per channel: first mapped input value and the entries (8- or 16-bit values). */
  readonly red: LutTable;
  readonly green: LutTable;
  readonly blue: LutTable;
}

export interface LutTable {
  readonly firstMapped: number;
  readonly entries: ArrayLike<number>;
}

export type ModalityLut = { kind: 'rescale'; slope: number; intercept: number } | { kind: 'table'; table: LutTable } | { kind: 'none' };

export type PixelResult = { ok: true; pixels: Float32Array } | { ok: false; reason: string };

/** Bytes one frame occupies in native (uncompressed) encoding. */
export function nativeFrameBytes(f: Pick<PixelFormat, 'rows' | 'cols' | 'samplesPerPixel' | 'bitsAllocated' | 'photometric'>): number {
  const px = f.rows * f.cols;
  // YBR_*_422 stores two chroma samples per two pixels: 2 samples per pixel, not 3.
  const samples = /^YBR_(FULL|PARTIAL)_422$/.test(f.photometric) ? px * 2 : px * f.samplesPerPixel;
  return (samples * f.bitsAllocated) / 8;
}

/**
 * The photometric interpretation to read native Pixel Data of `storedBytes` bytes as. YBR_FULL_422
 * over three full samples for every pixel (the exact size, with its padding byte if odd), not two
 * samples per pixel, is what a decompressor leaves when it writes the YBR_FULL it decoded and keeps
 * the compressed image's label: it is read as YBR_FULL, where the sample positions of 4:2:2 would
 * mix neighbouring pixels' Y, Cb and Cr over two thirds of the data. (pydicom 2 warns and reads it
 * as 4:2:2 all the same; pydicom 3 refuses it, naming RGB or YBR_FULL as what it may be.)
 */
export function nativePhotometric(
  f: Pick<PixelFormat, 'rows' | 'cols' | 'samplesPerPixel' | 'bitsAllocated' | 'photometric'>,
  frameCount: number,
  storedBytes: number,
): string {
  if (f.photometric !== 'YBR_FULL_422' || f.samplesPerPixel !== 3) return f.photometric;
  const full = frameCount * nativeFrameBytes({ ...f, photometric: 'YBR_FULL' });
  return storedBytes === full || storedBytes === full + (full % 2) ? 'YBR_FULL' : f.photometric;
}

/**
 * Every stored sample as a number (masked at Bits Stored, sign-extended). Fast paths
 * (typed-array views, no per-sample DataView) for the common layouts: 8-bit, and 16-bit
 * little endian at an even offset; the general path handles the rest.
 */
function readSamples(bytes: Uint8Array, f: PixelFormat, count: number): ArrayLike<number> | string {
  const bytesPer = f.bitsAllocated / 8;
  if (bytes.length < count * bytesPer) return `frame has ${bytes.length} bytes, needs ${count * bytesPer}`;
  const bs = f.bitsStored;
  const shift = Math.max(0, f.highBit + 1 - bs);
  const signed = f.pixelRepresentation === 1;
  const le = f.littleEndian;
  const plain = shift === 0 && bs === f.bitsAllocated; // no masking needed
  if (f.bitsAllocated === 8 && plain) {
    return signed ? new Int8Array(bytes.buffer, bytes.byteOffset, count) : bytes.subarray(0, count);
  }
  if (f.bitsAllocated === 16 && le && bytes.byteOffset % 2 === 0) {
    if (plain) return signed ? new Int16Array(bytes.buffer, bytes.byteOffset, count) : new Uint16Array(bytes.buffer, bytes.byteOffset, count);
    const src = new Uint16Array(bytes.buffer, bytes.byteOffset, count);
    const out = new Int32Array(count);
    const mask = (1 << bs) - 1;
    const signBit = 1 << (bs - 1);
    const full = 1 << bs;
    if (signed) {
      for (let i = 0; i < count; i++) {
        const v = (src[i]! >> shift) & mask;
        out[i] = v & signBit ? v - full : v;
      }
    } else {
      for (let i = 0; i < count; i++) out[i] = (src[i]! >> shift) & mask;
    }
    return out;
  }
  const out = new Float64Array(count);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (f.bitsAllocated === 32) {
    for (let i = 0; i < count; i++) {
      let v = dv.getUint32(i * 4, le);
      if (bs < 32) {
        v = Math.floor(v / 2 ** shift) % 2 ** bs;
        if (signed && v >= 2 ** (bs - 1)) v -= 2 ** bs;
      } else if (signed) v = dv.getInt32(i * 4, le);
      out[i] = v;
    }
    return out;
  }
  const mask = (1 << bs) - 1;
  const signBit = 1 << (bs - 1);
  const full = 1 << bs;
  for (let i = 0; i < count; i++) {
    let v = ((f.bitsAllocated === 8 ? bytes[i]! : dv.getUint16(i * 2, le)) >> shift) & mask;
    if (signed && v & signBit) v -= full;
    out[i] = v;
  }
  return out;
}

function lookup(t: LutTable, v: number): number {
  const n = t.entries.length;
  const i = Math.round(v) - t.firstMapped;
  return t.entries[i < 0 ? 0 : i >= n ? n - 1 : i]!;
}

export function toGrayscale(bytes: Uint8Array, f: PixelFormat, lut: ModalityLut, palette?: Palette): PixelResult {
  const n = f.rows * f.cols;
  const photometric = f.photometric;
  const out = new Float32Array(n);

  if (photometric === 'MONOCHROME1' || photometric === 'MONOCHROME2') {
    if (f.samplesPerPixel !== 1) return { ok: false, reason: `${photometric} with ${f.samplesPerPixel} samples per pixel` };
    const s = readSamples(bytes, f, n);
    if (typeof s === 'string') return { ok: false, reason: s };
    // One loop per Modality LUT kind: this runs for every pixel of every indexed image.
    if (lut.kind === 'rescale') {
      const { slope, intercept } = lut;
      for (let i = 0; i < n; i++) out[i] = s[i]! * slope + intercept;
      // A slope such as 1e308 overflows float32, and an image of Infinity embeds as NaN. Samples
      // are at most 32 bits, so only a rescale that could leave float range is scanned for it.
      if (!(Math.abs(slope) * 2 ** 32 + Math.abs(intercept) < 3.4e38)) {
        for (let i = 0; i < n; i++) if (!Number.isFinite(out[i]!)) return { ok: false, reason: 'the Modality LUT (rescale) gives values beyond float range' };
      }
    } else if (lut.kind === 'table') {
      for (let i = 0; i < n; i++) out[i] = lookup(lut.table, s[i]!);
    } else {
      for (let i = 0; i < n; i++) out[i] = s[i]!;
    }
    if (photometric === 'MONOCHROME1') {
      let min = Infinity;
      let max = -Infinity;
      for (let i = 0; i < n; i++) {
        const v = out[i]!;
        if (v < min) min = v;
        if (v > max) max = v;
      }
      const sum = min + max;
      for (let i = 0; i < n; i++) out[i] = sum - out[i]!;
    }
    return { ok: true, pixels: out };
  }

  if (photometric === 'PALETTE COLOR') {
    if (!palette) return { ok: false, reason: 'PALETTE COLOR without a usable palette (segmented palettes are not supported)' };
    if (f.samplesPerPixel !== 1) return { ok: false, reason: `PALETTE COLOR with ${f.samplesPerPixel} samples per pixel` };
    const s = readSamples(bytes, f, n);
    if (typeof s === 'string') return { ok: false, reason: s };
    for (let i = 0; i < n; i++) {
      const v = s[i]!;
      out[i] = LUMA[0] * lookup(palette.red, v) + LUMA[1] * lookup(palette.green, v) + LUMA[2] * lookup(palette.blue, v);
    }
    return { ok: true, pixels: out };
  }

  if (/^YBR_(FULL|PARTIAL)_422$/.test(photometric)) {
    // Y0 Y1 Cb Cr per pixel pair (PS3.3 C.7.6.3.1.2): both pixels share the pair's chroma.
    const s = readSamples(bytes, { ...f, pixelRepresentation: 0 }, n * 2);
    if (typeof s === 'string') return { ok: false, reason: s };
    const toLuma = ybrLuma(photometric === 'YBR_FULL_422', f.bitsStored);
    for (let p = 0; p < n; p += 2) {
      const cb = s[p * 2 + 2]!;
      const cr = s[p * 2 + 3]!;
      out[p] = toLuma(s[p * 2]!, cb, cr);
      if (p + 1 < n) out[p + 1] = toLuma(s[p * 2 + 1]!, cb, cr);
    }
    return { ok: true, pixels: out };
  }

  if (photometric === 'RGB' || photometric === 'YBR_FULL' || photometric === 'YBR_ICT' || photometric === 'YBR_RCT') {
    if (f.samplesPerPixel !== 3) return { ok: false, reason: `${photometric} with ${f.samplesPerPixel} samples per pixel` };
    const s = readSamples(bytes, { ...f, pixelRepresentation: 0 }, n * 3);
    if (typeof s === 'string') return { ok: false, reason: s };
    const planar = f.planarConfiguration === 1;
    const at = (p: number, c: number) => (planar ? s[c * n + p]! : s[p * 3 + c]!);
    if (photometric === 'RGB') {
      for (let p = 0; p < n; p++) out[p] = LUMA[0] * at(p, 0) + LUMA[1] * at(p, 1) + LUMA[2] * at(p, 2);
    } else if (photometric === 'YBR_FULL') {
      // Converted to RGB first (models/PREPROCESSING.md): Y alone differs from the luma of that
      // RGB wherever a colour falls outside the RGB cube and is clipped (a JPEG of the same
      // image goes through RGB in its codec, so both paths embed it alike).
      const toLuma = ybrLuma(true, f.bitsStored);
      for (let p = 0; p < n; p++) out[p] = toLuma(at(p, 0), at(p, 1), at(p, 2));
    } else {
      // YBR_ICT/RCT reach here only uncompressed, which the standard forbids; read Y.
      for (let p = 0; p < n; p++) out[p] = at(p, 0);
    }
    return { ok: true, pixels: out };
  }

  return { ok: false, reason: `unsupported photometric interpretation ${photometric}` };
}
