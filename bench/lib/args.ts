/**
 * Checking a benchmark's options and environment settings. A wrong value must stop the
 * run before anything starts, naming the setting: Number('abc') is NaN, and a NaN query
 * count or port would otherwise surface minutes later as an empty loop, a NaN in the
 * JSON or a crash deep inside a client.
 */

/** A wrong option or setting; orUsageExit turns it into exit status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** An integer in [min, max]; `name` as the user wrote it (`--k`, `CBMIR_EVAL_GATEWAY_PORT`). */
export function intSetting(name: string, raw: string | undefined, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const s = raw?.trim() ?? '';
  const n = s === '' ? Number.NaN : Number(s);
  if (!Number.isInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `in ${min}…${max}`;
    throw new UsageError(`${name} must be an integer ${range}, got ${JSON.stringify(raw ?? '')}`);
  }
  return n;
}

/** A non-empty comma-separated list of integers in [min, max]. */
export function intListSetting(name: string, raw: string | undefined, min = 1, max = Number.MAX_SAFE_INTEGER): number[] {
  const parts = (raw ?? '').split(',').map((s) => s.trim());
  if (parts.every((p) => p === '')) throw new UsageError(`${name} must list at least one integer, got ${JSON.stringify(raw ?? '')}`);
  return parts.map((p) => intSetting(name, p, min, max));
}

/** A TCP port from the environment, or `dflt` when unset or empty. */
export function portFromEnv(name: string, dflt: number, env: NodeJS.ProcessEnv = process.env): number {
  const v = env[name];
  return v === undefined || v.trim() === '' ? dflt : intSetting(name, v, 1, 65_535);
}

/** Run `f`; a UsageError prints `<prog>: <message>` and exits 2 (any other error is rethrown). */
export function orUsageExit<T>(prog: string, f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    return usageExit(prog, err.message);
  }
}

export function usageExit(prog: string, message: string): never {
  process.stderr.write(`${prog}: ${message}\n`);
  process.exit(2);
}
