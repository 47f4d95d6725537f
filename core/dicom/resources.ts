/**
 * Failures of the machine, not of the file: memory exhausted while a file is read or a frame
 * decoded (under load, with many instances in flight), or pixel codecs that did not start. A
 * refusal (decode.ts) is deterministic for the bytes and recorded for good; these are not, so the
 * decoder throws them instead of refusing, and the worker's job is retried with backoff
 * (docs/indexing.md, failure policy).
 */

/**
 * What V8, Node's zlib and the WebAssembly codecs say when memory runs out: "Array buffer allocation
 * failed" (an ArrayBuffer), "WebAssembly.instantiate(): Out of memory", "Maximum memory size
 * exceeded" (a WebAssembly memory that cannot grow), "std::bad_alloc" (a codec's own allocation, as
 * dcmjs-codecs reports it). Not "Invalid array length": V8 throws it for a length out of range
 * (`new Array(2 ** 32)` on an idle machine), which a file's own numbers can cause every time.
 */
const OUT_OF_MEMORY = /Array buffer allocation failed|out of memory|Maximum memory size exceeded|bad_alloc/i;

/** The decoder could not run (out of memory, codecs unavailable): retry later; says nothing about the file. */
export class DecoderResourceError extends Error {
  /** What failed, without what the worker does about it ("(retried)"): for a caller that does not retry. */
  readonly reason: string;
  constructor(message: string, options?: { cause?: unknown; reason?: string }) {
    super(message, options);
    this.name = 'DecoderResourceError';
    this.reason = options?.reason ?? message;
  }
}

export function isResourceError(err: unknown): boolean {
  if (err instanceof DecoderResourceError) return true;
  if (!(err instanceof Error)) return false;
  // Codec errors arrive re-wrapped ("rle codec: std::bad_alloc"): the message is what is left of them.
  return OUT_OF_MEMORY.test(err.message) || (err as NodeJS.ErrnoException).code === 'Z_MEM_ERROR';
}

/**
 * The error to throw for a resource failure, its reason first. Its message must not begin
 * "decode: ", which `cbmir failed` reads as a permanent refusal (workers/failed-jobs.ts).
 */
export function resourceFailure(err: unknown): DecoderResourceError {
  if (err instanceof DecoderResourceError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new DecoderResourceError(`out of memory while decoding (retried): ${message}`.slice(0, 300), {
    cause: err,
    reason: `out of memory while decoding: ${message}`.slice(0, 300),
  });
}
