/** The one place that turns errors into RFC 9457 problem responses. */
import type { ServerResponse } from 'node:http';
import { HttpProblem } from '../core/errors.js';

export function toProblem(err: unknown): HttpProblem {
  if (err instanceof HttpProblem) return err;
  return new HttpProblem('INTERNAL');
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
    ...extraHeaders,
  });
  res.end(body);
}
