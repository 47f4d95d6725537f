/**
 * STOW-RS (PS3.18 §10.5): POST /studies[/{study}], multipart/related body.
 * The body streams to the PACS as it arrives (never buffered), read from the
 * client only once the PACS takes it: on its `100 Continue`, or after a bounded
 * wait for one (upstream.ts, passthrough.ts); its size is checked up front
 * from Content-Length and counted while streaming otherwise (→ 413). The PACS's
 * answer streams back URL-mapped; its raw bytes are then handed to the STOW
 * hooks (stow-hooks.ts) for indexing — also when the client has left, or had a
 * 504 because the PACS took longer than CBMIR_PACS_STOW_TIMEOUT_MS.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpProblem } from '../core/errors.js';
import { forward, type ForwardSpec, type ProxyContext } from './passthrough.js';
import type { StowHooks } from './stow-hooks.js';

export function serveStow(
  ctx: ProxyContext,
  hooks: StowHooks,
  req: IncomingMessage,
  res: ServerResponse,
  spec: Omit<ForwardSpec, 'withBody' | 'onAnswered'>,
  meta: { readonly studyUid: string | undefined; readonly reqId: string },
): void {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > ctx.maxBodyBytes) {
    // Answer now and close: the body is not read, so the connection cannot be reused.
    throw new HttpProblem('PAYLOAD_TOO_LARGE', `request body exceeds ${ctx.maxBodyBytes} bytes`);
  }
  forward(ctx, req, res, {
    ...spec,
    withBody: true,
    onAnswered:
      hooks.size > 0
        ? (status, contentType, body) => hooks.emit({ status, contentType, body, studyUid: meta.studyUid, reqId: meta.reqId })
        : undefined,
  });
}
