/**
 * Model input preprocessing, a port of models/train/preprocess.py (the spec; explained
 * in models/PREPROCESSING.md, version 1). Must match the numpy reference to ≤ 1e-3 per
 * pixel: test/unit/preprocess-golden.test.ts checks it against models/train/golden/.
 *
 *   gray (2-D, after Modality LUT / MONOCHROME1 inversion / colour → luma by the decoder)
 *   → percentile normalisation: clip to [v[⌊0.005(n−1)⌋], v[⌊0.995(n−1)⌋]] of the sorted
 *     values, scale to [0,1] (all zeros when p_hi ≤ p_lo)
 *   → zero-pad to S×S, S = max(H,W), image at (⌊(S−H)/2⌋, ⌊(S−W)/2⌋)
 *   → separable antialiased triangle resize S×S → out×out (PIL BILINEAR family:
 *     half-pixel centres, support max(S/out, 1), rows renormalised)
 *   → clip to [0,1], float32, row-major [out][out]
 *
 * Arithmetic is float64 throughout, as in the reference; only the result is float32.
 * Percentiles use a histogram for integer data, else quickselect (both give the values of a
 * full sort, in O(n)); the resize uses only
 * the non-zero taps of each weight row (identical values, S/224 × fewer multiplies), and
 * skips the padding's zeros rather than build the padded S×S image (identical values too:
 * resizePadded), so the padding costs no memory (the padded image was 8·S² bytes).
 */
export const OUT_SIZE = 224;
export const Q_LO = 0.005;
export const Q_HI = 0.995;
/** ITU-R BT.601 luma, as models/train/preprocess.py LUMA. */
export const LUMA = [0.299, 0.587, 0.114] as const;

/** RGB(A) interleaved → luma (float64). */
export function rgbToGray(data: ArrayLike<number>, rows: number, cols: number, channels: 3 | 4): Float64Array {
  const n = rows * cols;
  if (data.length < n * channels) throw new RangeError(`expected ${n * channels} samples, got ${data.length}`);
  const out = new Float64Array(n);
  for (let p = 0; p < n; p++) {
    const k = p * channels;
    out[p] = LUMA[0] * data[k]! + LUMA[1] * data[k + 1]! + LUMA[2] * data[k + 2]!;
  }
  return out;
}

/** Index into the ascending-sorted values: ⌊q·(n−1)⌋ in IEEE double, as the reference. */
export function percentileIndex(q: number, n: number): number {
  return Math.floor(q * (n - 1));
}

/** Rearranges a[lo..hi] so a[k] is the k-th smallest (Hoare quickselect, median-of-three). */
function select(a: Float64Array, k: number, lo: number, hi: number): void {
  while (hi > lo) {
    const mid = (lo + hi) >>> 1;
    // median of three as pivot, to stay linear on sorted/constant images
    let x = a[lo]!;
    let y = a[mid]!;
    let z = a[hi]!;
    if (x > y) [x, y] = [y, x];
    if (y > z) [y, z] = [z, y];
    if (x > y) [x, y] = [y, x];
    const pivot = y;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return;
  }
}

/** Value of rank k (0-based, ascending) from a histogram of integers offset by min. */
function rankFromHistogram(hist: Int32Array, min: number, k: number): number {
  let seen = 0;
  for (let b = 0; b < hist.length; b++) {
    seen += hist[b]!;
    if (seen > k) return b + min;
  }
  return hist.length - 1 + min;
}

/** Largest value range counted with a histogram (bins of 4 bytes: 4 MiB at most). */
const MAX_HISTOGRAM_RANGE = 1 << 20;

/**
 * [p_lo, p_hi] of the definition above. Integer-valued images (8/16-bit data, the usual
 * case) are ranked with a histogram in two linear passes; anything else by quickselect.
 * Both give exactly the values of a full sort.
 */
export function percentiles(x: ArrayLike<number>): [number, number] {
  const n = x.length;
  if (n === 0) throw new RangeError('empty image');
  const iLo = percentileIndex(Q_LO, n);
  const iHi = percentileIndex(Q_HI, n);
  let min = Infinity;
  let max = -Infinity;
  let integral = true;
  for (let i = 0; i < n; i++) {
    const v = x[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
    if (integral && !Number.isInteger(v)) integral = false;
  }
  if (integral && max - min < MAX_HISTOGRAM_RANGE) {
    const hist = new Int32Array(max - min + 1);
    for (let i = 0; i < n; i++) hist[x[i]! - min]!++;
    return [rankFromHistogram(hist, min, iLo), rankFromHistogram(hist, min, iHi)];
  }
  const a = Float64Array.from(x);
  select(a, iHi, 0, n - 1);
  const hi = a[iHi]!;
  // Everything left of iHi is ≤ a[iHi]: the low percentile lies there.
  select(a, iLo, 0, iHi);
  return [a[iLo]!, hi];
}

/** Percentile clip and scale to [0,1] (new array, float64). */
export function normalise(x: ArrayLike<number>): Float64Array {
  const [lo, hi] = percentiles(x);
  const out = new Float64Array(x.length);
  if (!(hi > lo)) return out;
  const span = hi - lo;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    out[i] = ((v < lo ? lo : v > hi ? hi : v) - lo) / span;
  }
  return out;
}

/** Zero-pad to S×S with the image centred (extra row/column at the bottom/right). */
export function padSquare(x: Float64Array, rows: number, cols: number): { data: Float64Array; size: number } {
  const s = Math.max(rows, cols);
  if (rows === cols) return { data: x, size: s };
  const out = new Float64Array(s * s);
  const top = Math.floor((s - rows) / 2);
  const left = Math.floor((s - cols) / 2);
  for (let r = 0; r < rows; r++) out.set(x.subarray(r * cols, (r + 1) * cols), (top + r) * s + left);
  return { data: out, size: s };
}

export interface ResizeWeights {
  /** First input index with a non-zero weight, per output index. */
  readonly start: Int32Array;
  /** The non-zero weights (row-normalised), per output index. */
  readonly weights: Float64Array[];
}

const weightCache = new Map<string, ResizeWeights>();

/** Row-normalised triangle-filter taps for in → out (see models/PREPROCESSING.md §4). */
export function resizeWeights(inSize: number, outSize: number = OUT_SIZE): ResizeWeights {
  const key = `${inSize}:${outSize}`;
  const hit = weightCache.get(key);
  if (hit) return hit;
  const scale = inSize / outSize;
  const fs = Math.max(scale, 1);
  const start = new Int32Array(outSize);
  const weights: Float64Array[] = [];
  for (let i = 0; i < outSize; i++) {
    const c = (i + 0.5) * scale;
    const j0 = Math.max(0, Math.ceil(c - fs - 0.5));
    const j1 = Math.min(inSize - 1, Math.floor(c + fs - 0.5));
    const w = new Float64Array(Math.max(0, j1 - j0 + 1));
    let sum = 0;
    for (let j = j0; j <= j1; j++) {
      const v = Math.max(0, 1 - Math.abs((j + 0.5 - c) / fs));
      w[j - j0] = v;
      sum += v;
    }
    for (let k = 0; k < w.length; k++) w[k] = w[k]! / sum;
    start[i] = j0;
    weights.push(w);
  }
  const rw = { start, weights };
  if (weightCache.size > 64) weightCache.clear(); // bounded: a handful of sizes in practice
  weightCache.set(key, rw);
  return rw;
}

/** out = W · img · Wᵀ for a square S×S image (float64): resizePadded with no padding to skip. */
export function resizeSquare(img: Float64Array, size: number, outSize: number = OUT_SIZE): Float64Array {
  return resizePadded(img, size, size, outSize);
}

/**
 * resizeSquare(padSquare(img)) without the padded S×S image. The padding is zeros, and every
 * other term is ≥ 0 (weights and normalised values), so the terms left out would have added +0
 * to each sum: the result is the same to the last bit, in the same order of additions, while the
 * memory is 8·out·cols bytes instead of 8·S².
 */
export function resizePadded(img: Float64Array, rows: number, cols: number, outSize: number = OUT_SIZE): Float64Array {
  const size = Math.max(rows, cols);
  const top = Math.floor((size - rows) / 2);
  const left = Math.floor((size - cols) / 2);
  const { start, weights } = resizeWeights(size, outSize);
  // Vertical pass over the image's own columns, padding rows left out: [outSize][cols]
  const tmp = new Float64Array(outSize * cols);
  for (let i = 0; i < outSize; i++) {
    const w = weights[i]!;
    const row = i * cols;
    const k0 = Math.max(0, top - start[i]!);
    const k1 = Math.min(w.length, top + rows - start[i]!);
    for (let k = k0; k < k1; k++) {
      const wk = w[k]!;
      const src = (start[i]! + k - top) * cols;
      for (let x = 0; x < cols; x++) tmp[row + x] = tmp[row + x]! + wk * img[src + x]!;
    }
  }
  // Horizontal pass, padding columns left out: [outSize][outSize]
  const out = new Float64Array(outSize * outSize);
  for (let r = 0; r < outSize; r++) {
    const row = r * cols;
    for (let i = 0; i < outSize; i++) {
      const w = weights[i]!;
      const k0 = Math.max(0, left - start[i]!);
      const k1 = Math.min(w.length, left + cols - start[i]!);
      const at = row + start[i]! - left;
      let acc = 0;
      for (let k = k0; k < k1; k++) acc += w[k]! * tmp[at + k]!;
      out[r * outSize + i] = acc;
    }
  }
  return out;
}

/**
 * Grayscale pixels (rows × cols, row-major, any numeric array) → model input
 * float32 [outSize × outSize] in [0,1].
 */
export function preprocess(pixels: ArrayLike<number>, rows: number, cols: number, outSize: number = OUT_SIZE): Float32Array {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1) throw new RangeError(`invalid size ${rows}×${cols}`);
  if (pixels.length !== rows * cols) throw new RangeError(`expected ${rows * cols} pixels, got ${pixels.length}`);
  const r = resizePadded(normalise(pixels), rows, cols, outSize);
  const out = new Float32Array(r.length);
  for (let i = 0; i < r.length; i++) {
    const v = r[i]!;
    out[i] = v < 0 ? 0 : v > 1 ? 1 : v;
  }
  return out;
}
