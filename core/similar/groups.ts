/**
 * Collapsing ranked instance hits into results (groupBy=instance|series|study).
 *
 * Hits arrive in ascending distance, round after round (search.ts). A group is
 * ranked by its best (first-seen, nearest) instance and lists the instances of
 * it that matched, nearest first, up to MAX_MATCHES. Because later rounds
 * exclude the groups already found, every group a later round adds is farther
 * than all groups before it, so insertion order is rank order.
 */
import type { KnnHit } from '../index/types.js';
import type { GroupBy } from './params.js';

/** Matched instances listed per series/study result (the rest are counted, not listed). */
export const MAX_MATCHES = 20;

export interface ResultGroup {
  readonly key: string;
  readonly best: KnnHit;
  /** Nearest first; best is matches[0]. */
  readonly matches: KnnHit[];
  /** All matched instances seen, including those not listed. */
  matchedCount: number;
}

export function groupKey(groupBy: GroupBy, hit: KnnHit): string {
  const d = hit.doc;
  return groupBy === 'study' ? d.studyInstanceUid : groupBy === 'series' ? d.seriesInstanceUid : d.sopInstanceUid;
}

export class Grouper {
  private readonly groups = new Map<string, ResultGroup>();
  private readonly seenSops = new Set<string>();

  constructor(readonly groupBy: GroupBy) {}

  add(hit: KnnHit): void {
    // The same instance can come back in a later round (approximate kNN); count it once.
    if (this.seenSops.has(hit.doc.sopInstanceUid)) return;
    this.seenSops.add(hit.doc.sopInstanceUid);
    const key = groupKey(this.groupBy, hit);
    const g = this.groups.get(key);
    if (!g) {
      this.groups.set(key, { key, best: hit, matches: [hit], matchedCount: 1 });
      return;
    }
    g.matchedCount++;
    if (g.matches.length < MAX_MATCHES) g.matches.push(hit);
  }

  get size(): number {
    return this.groups.size;
  }

  keys(): string[] {
    return [...this.groups.keys()];
  }

  /** The first `limit` groups by best distance (ties: by key, so answers are deterministic). */
  top(limit: number): ResultGroup[] {
    return [...this.groups.values()]
      .sort((a, b) => a.best.distance - b.best.distance || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      .slice(0, limit);
  }
}
