/**
 * Coalesces lookups that many concurrent requests make into few backend calls.
 *
 * Why: a QIDO costs Orthanc ≈ 8 ms of CPU whether it names 1 study or 10
 * (docs/benchmarks.md), an Elasticsearch GET costs about twice an `_mget` entry.
 * Under load, hundreds of /similar requests each need a few lookups at once.
 *
 * How (adaptive, no timers): a key asked for is queued; the queue is flushed
 * (up to `maxBatch` keys per call) as soon as fewer than `maxInFlight` calls are
 * running. With one user nothing waits — the call starts in the same tick — and
 * under load the queue fills while earlier calls run, so batches grow exactly
 * when the backend is busy. A key already queued or in flight is not asked again.
 */

/** A failure of one key inside an answered batch: only that key's askers see it. */
export class KeyFailure {
  constructor(readonly cause: unknown) {}
}

export interface BatcherOptions<K, V, P> {
  /**
   * Answers a batch: one entry per key it knows about; a missing key gets `missing`.
   * Each key comes with the payload of its first asker (e.g. the credentials to ask with:
   * equal keys must imply interchangeable payloads). A KeyFailure value rejects that key's
   * askers only; a thrown error rejects the whole batch's.
   */
  readonly load: (batch: ReadonlyArray<{ readonly key: K; readonly payload: P }>) => Promise<ReadonlyMap<K, V | KeyFailure>>;
  /** What a key absent from load()'s answer resolves to. */
  readonly missing: V;
  readonly maxBatch: number;
  readonly maxInFlight: number;
}

interface Waiter<V> {
  resolve(v: V): void;
  reject(err: unknown): void;
}

interface Entry<V, P> {
  readonly payload: P;
  readonly waiters: Waiter<V>[];
}

export class Batcher<K, V, P = undefined> {
  private readonly queued = new Map<K, Entry<V, P>>();
  private readonly running = new Map<K, Entry<V, P>>();
  private inFlight = 0;
  private flushScheduled = false;
  /** Backend calls made (tests and metrics read it). */
  calls = 0;

  constructor(private readonly o: BatcherOptions<K, V, P>) {
    if (o.maxBatch < 1 || o.maxInFlight < 1) throw new RangeError('maxBatch and maxInFlight must be ≥ 1');
  }

  get(key: K, payload: P): Promise<V> {
    return new Promise<V>((resolve, reject) => {
      const w = { resolve, reject };
      const joined = this.running.get(key) ?? this.queued.get(key);
      if (joined) {
        joined.waiters.push(w);
        return;
      }
      this.queued.set(key, { payload, waiters: [w] });
      // Keys asked for in the same tick (one request's page of results) go out together.
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        queueMicrotask(() => {
          this.flushScheduled = false;
          this.flush();
        });
      }
    });
  }

  private flush(): void {
    while (this.inFlight < this.o.maxInFlight && this.queued.size > 0) {
      const batch: Array<{ key: K; payload: P }> = [];
      for (const [key, entry] of this.queued) {
        this.queued.delete(key);
        this.running.set(key, entry);
        batch.push({ key, payload: entry.payload });
        if (batch.length >= this.o.maxBatch) break;
      }
      this.inFlight++;
      this.calls++;
      void this.run(batch);
    }
  }

  private async run(batch: ReadonlyArray<{ key: K; payload: P }>): Promise<void> {
    let answer: ReadonlyMap<K, V | KeyFailure> | undefined;
    let failure: unknown;
    try {
      answer = await this.o.load(batch);
    } catch (err) {
      failure = err;
    }
    this.inFlight--;
    for (const { key } of batch) {
      const waiters = this.running.get(key)?.waiters ?? [];
      this.running.delete(key);
      for (const w of waiters) {
        const v = answer?.get(key);
        if (!answer) w.reject(failure);
        else if (v instanceof KeyFailure) w.reject(v.cause);
        else w.resolve(answer.has(key) ? (v as V) : this.o.missing);
      }
    }
    this.flush();
  }
}
