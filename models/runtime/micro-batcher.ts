/**
 * Micro-batching: calls that arrive together share one inference call. A batch
 * is flushed when it reaches `maxBatch` items or `maxWaitMs` after its first
 * item, whichever comes first. One batch runs at a time (a CPU runs one
 * inference best; concurrent sessions just fight over the same cores).
 */
export type BatchFn<I, O> = (items: I[]) => Promise<O[]>;

interface Pending<I, O> {
  item: I;
  resolve: (o: O) => void;
  reject: (e: unknown) => void;
}

export class MicroBatcher<I, O> {
  private queue: Pending<I, O>[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private closed = false;

  constructor(
    private readonly fn: BatchFn<I, O>,
    private readonly maxBatch: number,
    private readonly maxWaitMs: number,
  ) {
    if (maxBatch < 1) throw new Error('maxBatch must be ≥ 1');
  }

  submit(item: I): Promise<O> {
    if (this.closed) return Promise.reject(new Error('micro-batcher closed'));
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (this.queue.length >= this.maxBatch) this.kick();
      else this.timer ??= setTimeout(() => this.kick(), this.maxWaitMs);
    });
  }

  get pending(): number {
    return this.queue.length;
  }

  private kick(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.running || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.maxBatch);
    this.running = true;
    this.fn(batch.map((p) => p.item))
      .then((outs) => {
        if (outs.length !== batch.length) throw new Error(`batch function returned ${outs.length} results for ${batch.length} items`);
        batch.forEach((p, i) => p.resolve(outs[i] as O));
      })
      .catch((err: unknown) => batch.forEach((p) => p.reject(err)))
      .finally(() => {
        this.running = false;
        // Items that arrived while we ran form the next batch straight away.
        if (this.queue.length >= this.maxBatch || this.queue.length > 0) this.kick();
      });
  }

  /** Flush what is queued and refuse new work. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.queue.length > 0 || this.running) {
      this.kick();
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}
