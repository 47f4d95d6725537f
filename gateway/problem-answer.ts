/**
 * The error answer of the routes that search or embed for a caller (/similar, /similar/heatmap,
 * a virtual root's study search): one place, so that what is logged and which headers go with
 * the problem cannot drift apart between them.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpProblem } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { JobUnavailable } from '../core/queue/job-requester.js';
import { settleUnreadBody } from './body-limit.js';
import { sendProblem, toProblem } from './problem.js';
import { wwwAuthenticate } from './similar-access.js';

export interface ProblemAnswerOptions {
  readonly log: Logger;
  /** Logged with an error of ours (500): what failed. */
  readonly failed: string;
  /** Logged at warn with a JobUnavailable's reason: what the client did not get. */
  readonly unavailable: string;
  /**
   * A request whose body was not (all) read: it must not be taken for the next request on this
   * connection. It is read and dropped (then the socket closed, bounded), not cut: closing under
   * an upload makes the client see a reset instead of this answer.
   */
  readonly unreadBody?: IncomingMessage | undefined;
}

/** Answers `err` as a problem (cut the connection instead when the answer is under way); returns it. */
export function answerProblem(res: ServerResponse, err: unknown, o: ProblemAnswerOptions): HttpProblem {
  const problem = toProblem(err);
  if (problem.status >= 500 && !(err instanceof HttpProblem)) o.log.error({ err: (err as Error)?.message }, o.failed);
  // The client is told only that the job failed (no internal address reaches it): the reason
  // must be somewhere, and docs/api.md says it is in the log.
  if (err instanceof JobUnavailable) o.log.warn({ reason: err.reason }, o.unavailable);
  const headers: Record<string, string> = {};
  const retryAfter = problem.extra.retryAfter;
  if (typeof retryAfter === 'number') headers['retry-after'] = String(retryAfter);
  const challenge = wwwAuthenticate(problem);
  if (challenge) headers['www-authenticate'] = challenge;
  if (o.unreadBody) settleUnreadBody(o.unreadBody, headers);
  sendProblem(res, problem, headers);
  return problem;
}
