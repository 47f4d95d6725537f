/**
 * Requests that hold a worker or memory while they wait, bounded per pool. Uploaded query images
 * searched at once, across POST /similar and POST /similar/heatmap: each
 * holds its body and a base64 copy (in memory and in a Redis job) until a worker has used it.
 * Also, in a pool of their own, GET /similar/heatmap requests in flight: each holds a worker
 * for two embeddings and the heatmap graph, on the embed queue every /similar query uses.
 *
 * One caller (callerKey, gateway/caller.ts: the same identity headers; callers that send none
 * are one caller) holds at most half of a pool's slots, rounded up, so that one client — a script
 * looping, or slow uploads held open — cannot take every slot. The key is what the client
 * sends, so a client that varies its headers counts as several: the share spreads slots among
 * well-behaved clients; what bounds how long anyone holds one is the upload deadline
 * (similar-upload.ts UPLOAD_PACE) and the embed timeout.
 */
import { HttpProblem } from '../core/errors.js';

export class RequestSlots {
  private inFlight = 0;
  private readonly byCaller = new Map<string, number>();
  /** Slots one caller may hold. */
  readonly perCaller: number;

  /** `what`: the requests the pool bounds, as its 503 names them. */
  constructor(
    readonly max: number,
    private readonly what = 'uploaded images being searched',
  ) {
    this.perCaller = Math.ceil(max / 2);
  }

  /** A release function, or a 503 problem (with Retry-After) when every slot, or this caller's share, is taken. */
  acquire(callerKey: string): () => void {
    if (this.inFlight >= this.max) {
      throw new HttpProblem('EMBED_UNAVAILABLE', `there are ${this.max} ${this.what} already; try again`, { retryAfter: 2 });
    }
    const mine = this.byCaller.get(callerKey) ?? 0;
    if (mine >= this.perCaller) {
      throw new HttpProblem(
        'EMBED_UNAVAILABLE',
        `this caller has ${mine} ${this.what} already, its share of the ${this.max} slots; try again`,
        {
          retryAfter: 2,
        },
      );
    }
    this.inFlight++;
    this.byCaller.set(callerKey, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inFlight--;
      const left = (this.byCaller.get(callerKey) ?? 1) - 1;
      if (left > 0) this.byCaller.set(callerKey, left);
      else this.byCaller.delete(callerKey);
    };
  }
}
