/**
 * The similarity score shown beside the Euclidean distance (docs/api.md, and
 * models/manifest.json "similarity"): the model's embeddings are unit vectors,
 * so their Euclidean distance d lies in [0, 2] and d² = 2 − 2·cos θ. The score
 *
 *     score = 1 − d² / 4 = (1 + cos θ) / 2
 *
 * is the cosine similarity mapped onto [0, 1]: 1 = identical, 0.5 = orthogonal,
 * 0 = opposite. It is monotone in d, so ranking by score is ranking by distance.
 * Clamped: float rounding can put d a hair outside [0, 2].
 */
export function scoreFromDistance(d: number): number {
  if (!Number.isFinite(d)) return 0;
  return Math.min(1, Math.max(0, 1 - (d * d) / 4));
}

/** Round for display (JSON and DICOM DS, which allows 16 characters). */
export function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

/** The score of a cosine similarity s = e_q · e_r (what a heatmap job reports): (1 + s)/2, clamped as above. */
export function scoreFromCosine(s: number): number {
  if (!Number.isFinite(s)) return 0;
  return Math.min(1, Math.max(0, (1 + s) / 2));
}

/** A cosine similarity inside [−1, 1]: the float32 dot product of unit vectors can pass ±1 by a hair. */
export function clampCosine(s: number): number {
  return Math.min(1, Math.max(-1, s));
}
