/**
 * STOW hook point: after the PACS has answered a STOW-RS request and the
 * answer has been sent to the client, every listener receives the PACS's own
 * response (status + body bytes as the PACS sent them, before URL rewriting).
 * The indexing side parses ReferencedSOPSequence (0008,1199) from it and
 * enqueues jobs. Listeners run after the client's response is finished and
 * their failures are logged, never surfaced: a STOW never fails because of
 * indexing (the PACS is the source of truth).
 */
import type { Logger } from '../core/log.js';

export interface StowResponseEvent {
  /** HTTP status the PACS answered with (200, 202, 409, 400 for partial failure on Orthanc …). */
  readonly status: number;
  /** Content-Type of the PACS's answer, if any (Orthanc omits it on partial failure). */
  readonly contentType: string | undefined;
  /** The PACS's response body, unmodified (bounded by the gateway's STOW answer limit). */
  readonly body: Buffer;
  /** Study Instance UID from the request path (POST /studies/{study}), if given. */
  readonly studyUid: string | undefined;
  /** Request id, for correlating logs. */
  readonly reqId: string;
}

export type StowResponseListener = (event: StowResponseEvent) => void | Promise<void>;

export class StowHooks {
  private readonly listeners: StowResponseListener[] = [];
  /** Listener promises still running (an enqueue of index jobs): shutdown waits for them. */
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly log: Logger) {}

  add(listener: StowResponseListener): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i !== -1) this.listeners.splice(i, 1);
    };
  }

  get size(): number {
    return this.listeners.length;
  }

  /** Fire-and-forget; never throws. */
  emit(event: StowResponseEvent): void {
    for (const l of this.listeners) {
      let p: void | Promise<void>;
      try {
        p = l(event);
      } catch (err) {
        this.log.warn({ reqId: event.reqId, err: (err as Error).message }, 'STOW response listener failed');
        continue;
      }
      if (p && typeof (p as Promise<void>).catch === 'function') {
        const settled = (p as Promise<void>)
          .catch((err: unknown) => {
            this.log.warn({ reqId: event.reqId, err: (err as Error).message }, 'STOW response listener failed');
          })
          .finally(() => this.pending.delete(settled));
        this.pending.add(settled);
      }
    }
  }

  /**
   * Resolves once the listeners of every STOW answered so far have finished (or after
   * timeoutMs): shutdown waits here before closing the queue, so the index jobs of a STOW
   * that finished just before a SIGTERM are enqueued, not dropped with the connection.
   */
  async settle(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((r) => (timer = setTimeout(() => r(false), timeoutMs)));
    try {
      for (;;) {
        if (this.pending.size === 0) return true;
        const r = await Promise.race([Promise.allSettled([...this.pending]).then(() => true as const), timedOut]);
        if (!r) return false;
      }
    } finally {
      clearTimeout(timer);
    }
  }
}
