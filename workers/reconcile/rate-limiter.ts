/**
 * At most `perSecond` PACS requests per second, spaced evenly (no bursts): the
 * reconciler shares the PACS with viewers and modalities and must never be the
 * reason a radiologist waits. `take()` resolves when the caller may send.
 */
export class RateLimiter {
  private next = 0;
  private readonly intervalMs: number;

  constructor(perSecond: number) {
    if (!(perSecond > 0) || !Number.isFinite(perSecond))
      throw new Error(`rate must be a positive number of requests per second, got ${perSecond}`);
    this.intervalMs = 1000 / perSecond;
  }

  async take(signal?: AbortSignal): Promise<void> {
    const now = performance.now();
    // Reserve a slot first (synchronously), so concurrent callers queue up in order.
    const at = Math.max(now, this.next);
    this.next = at + this.intervalMs;
    const wait = at - now;
    if (wait <= 0) return;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, wait);
      const onAbort = () => {
        clearTimeout(t);
        reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
