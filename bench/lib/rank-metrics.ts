/**
 * Retrieval metrics of one ranking, as models/train/metrics.py defines them (so
 * eval:live and eval:model can agree to the last digit): relevant = same class;
 * AP = (1/R) Σ P@k over the ranks k that hold a relevant item, R = relevant items in
 * the database (counted from the labels, so an item the ranking lacks is a miss);
 * P@k = relevant among the first k / k (a ranking shorter than k counts the missing
 * slots as misses, as metrics.py's hits/k does).
 */
export interface RankMetrics {
  readonly ap: number;
  readonly p1: number;
  readonly p5: number;
  readonly p10: number;
}

/** `relevant[i]`: whether rank i + 1 holds a relevant item; `totalRelevant`: R. */
export function rankMetrics(relevant: readonly boolean[], totalRelevant: number): RankMetrics {
  let hits = 0;
  let sum = 0;
  const pAt = new Map<number, number>();
  relevant.forEach((r, i) => {
    if (r) {
      hits++;
      sum += hits / (i + 1);
    }
    if (i + 1 === 1 || i + 1 === 5 || i + 1 === 10) pAt.set(i + 1, hits / (i + 1));
  });
  const at = (k: number): number => pAt.get(k) ?? hits / k;
  return { ap: totalRelevant > 0 ? sum / totalRelevant : Number.NaN, p1: at(1), p5: at(5), p10: at(10) };
}
