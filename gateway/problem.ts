/** The one place that turns errors into RFC 9457 problem responses. */
import type { ServerResponse } from 'node:http';
import { HttpProblem, type ProblemCode } from '../core/errors.js';

export function toProblem(err: unknown): HttpProblem {
  if (err instanceof HttpProblem) return err;
  return new HttpProblem('INTERNAL');
}

/** 405 with the methods the resource does serve: RFC 9110 §15.5.6 requires `Allow` on every 405. */
export class MethodNotAllowed extends HttpProblem {
  constructor(
    readonly allow: readonly string[],
    detail?: string,
  ) {
    super('METHOD_NOT_ALLOWED', detail);
  }
}

const CLIENT_ERROR_CODES: Readonly<Record<number, ProblemCode>> = {
  401: 'UNAUTHORIZED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
};

/**
 * An error met while serving a request. Express and its router mark the client's faults with a
 * 4xx `status` (a route parameter that does not percent-decode is 400): those are the client's
 * answer, not a 500 of ours. Their messages can quote the URL, so the detail is generic. A 4xx
 * the catalogue has no code for is answered 400.
 */
export function requestProblem(err: unknown): HttpProblem {
  if (err instanceof HttpProblem) return err;
  const e = err as { status?: unknown; statusCode?: unknown } | null;
  const status = typeof e?.status === 'number' ? e.status : e?.statusCode;
  if (typeof status !== 'number' || status < 400 || status > 499) return toProblem(err);
  return new HttpProblem(CLIENT_ERROR_CODES[status] ?? 'BAD_PARAM', 'the request could not be processed as sent');
}

/** Send `problem` unless a response is already under way (then cut the connection: the client must not take a truncated body for whole). */
export function sendProblem(res: ServerResponse, problem: HttpProblem, extraHeaders: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(problem.toBody());
  res.writeHead(problem.status, {
    'content-type': 'application/problem+json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...(problem instanceof MethodNotAllowed ? { allow: problem.allow.join(', ') } : {}),
    ...extraHeaders,
  });
  res.end(body);
}
