/**
 * Liveness and readiness.
 *   GET /healthz  200 while the process serves requests (no dependencies checked).
 *   GET /readyz   200 when every named check passes within its time limit, else
 *                 503 with a problem body listing each check; 503 while draining.
 * Checks are pluggable: the PACS check is built in, later code adds Redis and
 * the vector index through GatewayDeps.readinessChecks or addReadinessCheck().
 */
import { HttpProblem } from '../core/errors.js';

export interface ReadinessCheck {
  readonly name: string;
  /** Resolve when healthy; reject (with a short, PHI-free message) when not. */
  readonly check: (signal: AbortSignal) => Promise<void>;
}

export interface CheckOutcome {
  readonly ok: boolean;
  readonly ms: number;
  readonly error?: string;
}

export async function runChecks(checks: readonly ReadinessCheck[], timeoutMs: number): Promise<Record<string, CheckOutcome>> {
  const entries = await Promise.all(
    checks.map(async (c): Promise<[string, CheckOutcome]> => {
      const ac = new AbortController();
      const t0 = performance.now();
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          c.check(ac.signal),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => {
              ac.abort();
              reject(new Error(`no answer within ${timeoutMs} ms`));
            }, timeoutMs);
          }),
        ]);
        return [c.name, { ok: true, ms: Math.round(performance.now() - t0) }];
      } catch (err) {
        return [c.name, { ok: false, ms: Math.round(performance.now() - t0), error: (err as Error).message }];
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return Object.fromEntries(entries);
}

export function notReady(checks: Record<string, CheckOutcome>, detail: string): HttpProblem {
  return new HttpProblem('NOT_READY', detail, { checks });
}
