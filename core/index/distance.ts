/**
 * Euclidean distance and the conversions both backends share.
 *
 * Elasticsearch's l2_norm similarity scores a hit as 1 / (1 + d²) (so that higher is
 * better and scores are positive); distance = sqrt(1/score − 1) undoes it. Scores are
 * float32, so a distance read back this way is exact to ≈ 1e-3 relative near d = 1 and
 * to ≈ 3e-4 absolute near d = 0; good enough for ranking and display.
 */

/** Squared L2 distance between row `row` of a row-major matrix and a query, 4-way unrolled. */
export function l2sqRow(matrix: Float32Array, row: number, dims: number, q: Float32Array): number {
  let off = row * dims;
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let i = 0;
  const end4 = dims - (dims % 4);
  for (; i < end4; i += 4, off += 4) {
    const d0 = matrix[off]! - q[i]!;
    const d1 = matrix[off + 1]! - q[i + 1]!;
    const d2 = matrix[off + 2]! - q[i + 2]!;
    const d3 = matrix[off + 3]! - q[i + 3]!;
    s0 += d0 * d0;
    s1 += d1 * d1;
    s2 += d2 * d2;
    s3 += d3 * d3;
  }
  for (; i < dims; i++, off++) {
    const d = matrix[off]! - q[i]!;
    s0 += d * d;
  }
  return s0 + s1 + s2 + s3;
}

export function l2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    s += d * d;
  }
  return Math.sqrt(s);
}

/** Elasticsearch l2_norm score → Euclidean distance. */
export function esScoreToDistance(score: number): number {
  if (!(score > 0)) return Number.POSITIVE_INFINITY;
  const d2 = 1 / score - 1;
  return d2 > 0 ? Math.sqrt(d2) : 0;
}

/** Euclidean distance → Elasticsearch l2_norm score (for similarity thresholds). */
export function distanceToEsScore(distance: number): number {
  return 1 / (1 + distance * distance);
}

/**
 * Bounded max-heap of (distance², row) keeping the k smallest: O(n log k) selection
 * without sorting all n distances. Ties on distance are broken by `after(r1, r2)`
 * ("r1 ranks after r2"), by default the row number. A caller whose rows move (a
 * reindex writes them in another order) passes a key of its own, so that which of
 * two equal hits makes the k-th place does not depend on insertion order.
 */
export class TopK {
  private readonly d: Float64Array;
  private readonly r: Int32Array;
  private n = 0;

  constructor(
    readonly k: number,
    private readonly after: (r1: number, r2: number) => boolean = (r1, r2) => r1 > r2,
  ) {
    this.d = new Float64Array(k);
    this.r = new Int32Array(k);
  }

  /** Current admission threshold: a candidate must be at or below it to enter (at it: if it wins the tie). */
  get worst(): number {
    return this.n < this.k ? Number.POSITIVE_INFINITY : this.d[0]!;
  }

  push(dist: number, row: number): void {
    if (this.n < this.k) {
      let i = this.n++;
      // sift up
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!this.greater(dist, row, this.d[p]!, this.r[p]!)) break;
        this.d[i] = this.d[p]!;
        this.r[i] = this.r[p]!;
        i = p;
      }
      this.d[i] = dist;
      this.r[i] = row;
      return;
    }
    if (!this.greater(this.d[0]!, this.r[0]!, dist, row)) return;
    // replace root, sift down
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= this.n) break;
      const rr = l + 1;
      let c = l;
      if (rr < this.n && this.greater(this.d[rr]!, this.r[rr]!, this.d[l]!, this.r[l]!)) c = rr;
      if (!this.greater(this.d[c]!, this.r[c]!, dist, row)) break;
      this.d[i] = this.d[c]!;
      this.r[i] = this.r[c]!;
      i = c;
    }
    this.d[i] = dist;
    this.r[i] = row;
  }

  /** (distance², row) pairs, nearest first. */
  sorted(): Array<{ d2: number; row: number }> {
    const out: Array<{ d2: number; row: number }> = [];
    for (let i = 0; i < this.n; i++) out.push({ d2: this.d[i]!, row: this.r[i]! });
    return out.sort((a, b) => a.d2 - b.d2 || (this.after(a.row, b.row) ? 1 : this.after(b.row, a.row) ? -1 : 0));
  }

  private greater(d1: number, r1: number, d2: number, r2: number): boolean {
    return d1 > d2 || (d1 === d2 && this.after(r1, r2));
  }
}
