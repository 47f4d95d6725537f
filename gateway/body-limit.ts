/**
 * Counts request-body bytes as they stream to the PACS (chunked uploads have
 * no Content-Length to check up front) and fails once the limit is passed.
 */
import { Transform, type TransformCallback } from 'node:stream';

export class BodyTooLarge extends Error {
  constructor(readonly limitBytes: number) {
    super(`request body exceeds ${limitBytes} bytes`);
    this.name = 'BodyTooLarge';
  }
}

export class ByteLimit extends Transform {
  private seen = 0;

  constructor(private readonly limitBytes: number) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.limitBytes) {
      cb(new BodyTooLarge(this.limitBytes));
      return;
    }
    cb(null, chunk);
  }
}
