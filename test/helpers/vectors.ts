/** Seeded test data shared by the index test suite and bench/index-knn.ts. */

/** mulberry32: a small seeded PRNG, so test and benchmark data are reproducible. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Unit vectors with Gaussian components (Box–Muller), like L2-normalised embeddings. */
export function unitVectors(n: number, dims: number, seed: number): Float32Array[] {
  const r = prng(seed);
  const out: Float32Array[] = [];
  for (let i = 0; i < n; i++) {
    const v = new Float32Array(dims);
    let norm = 0;
    for (let j = 0; j < dims; j++) {
      const g = Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
      v[j] = g;
      norm += g * g;
    }
    norm = Math.sqrt(norm);
    for (let j = 0; j < dims; j++) v[j] = v[j]! / norm;
    out.push(v);
  }
  return out;
}
