/**
 * Checking a benchmark's options and environment settings. A wrong value must stop the
 * run before anything starts, naming the setting: Number('abc') is NaN, and a NaN query
 * count or port would otherwise surface minutes later as an empty loop, a NaN in the
 * JSON or a crash deep inside a client.
 */
import { parseArgs } from 'node:util';

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

/** One command-line option of a benchmark, with what its --help says about it. */
export interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly default?: string;
  /** Placeholder of a string option's value in the usage ("N", "DIR"). */
  readonly value?: string;
  readonly help: string;
}

type OptionValues<T extends Record<string, OptionSpec>> = {
  readonly [K in keyof T]: T[K]['type'] extends 'boolean' ? boolean : T[K] extends { default: string } ? string : string | undefined;
};

export type CliOutcome<V> =
  | { readonly kind: 'run'; readonly values: V }
  | { readonly kind: 'help'; readonly text: string }
  | { readonly kind: 'error'; readonly message: string };

/** The --help text: `synopsis`, then each option with its default. */
export function usageText(synopsis: string, options: Readonly<Record<string, OptionSpec>>): string {
  const lines = Object.entries(options).map(([name, o]) => {
    const flag = `--${name}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`;
    return `  ${flag.padEnd(26)} ${o.help}${o.default !== undefined ? ` [${o.default}]` : ''}`;
  });
  return `${synopsis.trim()}\n\nOptions:\n${[...lines, `  ${'--help, -h'.padEnd(26)} this text; runs nothing`].join('\n')}\n`;
}

/**
 * Parse `argv` against `options` without exiting: --help
 * wins over everything else, so `--help` never starts a run, whatever else it is given
 * with; a wrong option becomes one line instead of parseArgs's stack trace.
 */
export function parseCli<const T extends Record<string, OptionSpec>>(
  argv: readonly string[],
  synopsis: string,
  options: T,
): CliOutcome<OptionValues<T>> {
  if (argv.includes('--help') || argv.includes('-h')) return { kind: 'help', text: usageText(synopsis, options) };
  const config = Object.fromEntries(
    Object.entries(options).map(([name, o]) => [
      name,
      o.type === 'boolean'
        ? { type: 'boolean' as const, default: false }
        : { type: 'string' as const, ...(o.default !== undefined ? { default: o.default } : {}) },
    ]),
  );
  try {
    const { values } = parseArgs({ args: [...argv], options: config, strict: true, allowPositionals: false });
    return { kind: 'run', values: { ...values } as OptionValues<T> };
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    if (!code.startsWith('ERR_PARSE_ARGS_')) throw err;
    const first = ((err as Error).message.split('\n')[0] ?? '').split('. ')[0]!.replace(/\.$/, '');
    return { kind: 'error', message: `${first} (--help lists the options)` };
  }
}

/** parseCli on process.argv: --help prints the usage and exits 0; a wrong option exits 2 with one line on stderr. */
export function benchCli<const T extends Record<string, OptionSpec>>(prog: string, synopsis: string, options: T): OptionValues<T> {
  const r = parseCli(process.argv.slice(2), synopsis, options);
  if (r.kind === 'help') {
    process.stdout.write(r.text);
    process.exit(0);
  }
  if (r.kind === 'error') return usageExit(prog, r.message);
  return r.values;
}
