/**
 * Uploaded query images searched at once, across POST /similar and POST /similar/heatmap: each
 * holds its body and a base64 copy (in memory and in a Redis job) until a worker has used it.
 */
import { HttpProblem } from '../core/errors.js';

export class UploadSlots {
  private inFlight = 0;

  constructor(readonly max: number) {}

  /** A release function, or a 503 problem (with Retry-After) when every slot is taken. */
  acquire(): () => void {
    if (this.inFlight >= this.max) {
      throw new HttpProblem('EMBED_UNAVAILABLE', `${this.max} uploaded images are being searched already; try again`, { retryAfter: 2 });
    }
    this.inFlight++;
    let released = false;
    return () => {
      if (!released) this.inFlight--;
      released = true;
    };
  }
}
