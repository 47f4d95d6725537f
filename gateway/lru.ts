/**
 * Bounded least-recently-used map (insertion order of a Map is the recency order), by entry
 * count and, where values vary in size (thumbnails), by their total bytes as well.
 */
export class LruCache<K, V> {
  private readonly map = new Map<K, V>();
  private bytes = 0;

  constructor(
    readonly maxEntries: number,
    private readonly budget?: { readonly maxBytes: number; readonly sizeOf: (v: V) => number },
  ) {}

  get(key: K): V | undefined {
    const v = this.map.get(key);
    if (v === undefined) return undefined;
    this.map.delete(key);
    this.map.set(key, v);
    return v;
  }

  set(key: K, value: V): void {
    if (this.maxEntries <= 0) return;
    const bytes = this.budget?.sizeOf(value) ?? 0;
    if (this.budget && bytes > this.budget.maxBytes) return;
    this.remove(key);
    this.map.set(key, value);
    this.bytes += bytes;
    while (this.map.size > this.maxEntries || (this.budget !== undefined && this.bytes > this.budget.maxBytes)) {
      const oldest = this.map.keys().next();
      if (oldest.done) break;
      this.remove(oldest.value);
    }
  }

  private remove(key: K): void {
    const old = this.map.get(key);
    if (old === undefined) return;
    this.map.delete(key);
    if (this.budget) this.bytes -= this.budget.sizeOf(old);
  }

  get size(): number {
    return this.map.size;
  }

  /** Total bytes held (0 without a byte budget). */
  get sizeBytes(): number {
    return this.bytes;
  }

  clear(): void {
    this.map.clear();
    this.bytes = 0;
  }
}
