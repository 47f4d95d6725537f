/** Configuration for a CLI command: parsed once; a bad setting exits 2 with every problem named. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Queue } from 'bullmq';
import { InvalidArgumentError } from 'commander';
import { ConfigError, loadConfig, withoutCredentials, type Config } from '../core/config.js';
import { embeddedIndexPath } from '../core/index/factory.js';
import { IndexError } from '../core/index/errors.js';
import { isRedisNotThere, producerConnection, quiet } from '../core/queue/redis.js';
import { loadModelManifest, type ModelManifest } from '../core/model-manifest.js';
import { Embedder } from '../models/runtime/embedder.js';
import { isCalendarDate } from './load.js';

/** The configuration configOrExit parsed last: the top-level error handler names settings with it. */
let parsedConfig: Config | undefined;

/** A command's configuration (it serves no HTTP: see LoadConfigOptions.serves). */
export function configOrExit(env: NodeJS.ProcessEnv = process.env): Config {
  try {
    parsedConfig = loadConfig(env, { serves: false });
    return parsedConfig;
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

/**
 * Exit 2 when a model given on the command line (`option`, e.g. --model) names no file. Said in
 * the option's words: the loader's own message points at CBMIR_MODEL, which was not what was given.
 */
export function modelOptionOrExit(ref: string | undefined, command: string, option: string | undefined): void {
  if (option === undefined || ref === undefined || existsSync(ref)) return;
  process.stderr.write(`cbmir ${command}: ${option} ${ref}: no such file (give a manifest.json or an .onnx file)\n`);
  process.exit(2);
}

/**
 * The model a command runs, or exit 2 (bad usage or configuration) naming what is wrong with it.
 * `option`: the command-line option `ref` came from, if it did.
 */
export function manifestOrExit(ref: string | undefined, command: string, option?: string): ModelManifest {
  modelOptionOrExit(ref, command, option);
  try {
    return loadModelManifest(ref);
  } catch (err) {
    process.stderr.write(`cbmir ${command}: ${(err as Error).message}\n`);
    process.exit(2);
  }
}

/**
 * manifestOrExit, with the embedding size read from the graph. Commands that create index storage
 * (backfill, reindex) would otherwise make it 256-d for an `.onnx` path whose graph says otherwise,
 * and every write would then be refused.
 */
export async function checkedManifestOrExit(ref: string | undefined, command: string, option?: string): Promise<ModelManifest> {
  const manifest = manifestOrExit(ref, command, option);
  let embedder: Embedder;
  try {
    embedder = await Embedder.load(manifest, { preferGpu: false, threads: 1 });
  } catch (err) {
    process.stderr.write(`cbmir ${command}: ${(err as Error).message}\n`);
    process.exit(2);
  }
  await embedder.close();
  return embedder.manifest;
}

/**
 * A path given on the command line, taken from where the command was typed: `npm run cbmir`
 * runs in the repository root and names that folder in INIT_CWD. Settings (CBMIR_MODEL,
 * CBMIR_DATA_DIR) are not command-line paths and keep their meaning.
 */
export function invocationPath(p: string, env: NodeJS.ProcessEnv = process.env): string {
  return env.npm_lifecycle_event === 'cbmir' && env.INIT_CWD ? path.resolve(env.INIT_CWD, p) : p;
}

export { withoutCredentials };

/** How a command waits for Redis (redisReachable). */
export interface RedisWait {
  /** How long to keep trying (default 5 s). */
  readonly timeoutMs?: number;
  /**
   * The connection's last 'error' event (quiet()'s callback): the real cause (ECONNREFUSED, a
   * name that does not resolve) where the ping itself only says "Stream isn't writeable".
   */
  readonly lastError?: () => Error | undefined;
  /**
   * Whether the connection is up (ioredis `status === 'ready'`): while it is not, no ping is
   * sent. A refused ping still leaves its command timer running (ioredis), which would keep a
   * command that is done from exiting for CBMIR_REDIS's 2-s command timeout.
   */
  readonly isReady?: () => boolean;
  /** Stop waiting (Ctrl-C): throws the signal's reason. */
  readonly signal?: AbortSignal;
}

/** Nothing listens there (ECONNREFUSED) or the name does not resolve: given this long to come up, not the whole wait. */
const NOT_THERE_GRACE_MS = 1_000;

/**
 * Wait (bounded) for a fail-fast producer connection to come up; throws a clear error naming
 * CBMIR_REDIS_URL (without credentials) and the cause if it does not. A Redis that refuses the
 * connection ends the wait after a second: a command run against the wrong URL says so at once.
 */
export async function redisReachable(ping: () => Promise<unknown>, url: string, o: RedisWait = {}): Promise<void> {
  const timeoutMs = o.timeoutMs ?? 5_000;
  const started = Date.now();
  for (;;) {
    o.signal?.throwIfAborted();
    try {
      if (o.isReady?.() === false) throw new Error("Stream isn't writeable");
      await ping();
      return;
    } catch (err) {
      const cause = o.lastError?.();
      const waited = Date.now() - started;
      if (waited >= timeoutMs || (isRedisNotThere(cause) && waited >= Math.min(timeoutMs, NOT_THERE_GRACE_MS))) {
        throw new Error(`${redisUnreachable(url)}: ${redisCause(cause ?? (err as Error), timeoutMs)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** "Redis at redis://host:port (CBMIR_REDIS_URL) is unreachable", credentials hidden. */
export function redisUnreachable(url: string): string {
  return `Redis at ${withoutCredentials(url)} (CBMIR_REDIS_URL) is unreachable`;
}

/** ioredis's complaints about its own state say less than "no answer": the socket's error, or the wait. */
function redisCause(err: Error, timeoutMs: number): string {
  return /Stream isn't writeable|Connection is closed/.test(err.message) ? `no answer within ${timeoutMs / 1000} s` : err.message;
}

/**
 * Connect to Redis once (bounded, as redisReachable) and let go: undefined when it answers,
 * otherwise the line that says why.
 */
export async function redisProblem(url: string, o: Omit<RedisWait, 'lastError'> = {}): Promise<string | undefined> {
  let last: Error | undefined;
  const conn = quiet(producerConnection(url), (err) => (last = err));
  try {
    await redisReachable(() => conn.ping(), url, { ...o, lastError: () => last, isReady: () => conn.status === 'ready' });
    return undefined;
  } catch (err) {
    if (o.signal?.aborted) throw err;
    return (err as Error).message;
  } finally {
    conn.disconnect();
  }
}

/**
 * Whether Redis holds any key of this queue (its jobs, counters, events or meta). An empty
 * queue that workers or the gateway used has some; a --namespace with a typo has none, and its
 * counts would all read 0 like a healthy idle queue. Queues opened only to read must be made with
 * `skipMetasUpdate`, or opening one writes its meta key.
 */
export async function queueExists(queue: Pick<Queue, 'keys'>, conn: { exists(...keys: string[]): Promise<number> }): Promise<boolean> {
  const keys = Object.entries(queue.keys)
    .filter(([type]) => type !== '')
    .map(([, key]) => key);
  return (await conn.exists(...keys)) > 0;
}

/** The warning for a queue that queueExists says is not there. */
export function noSuchQueue(name: string, namespace: string | undefined): string {
  return namespace !== undefined
    ? `no queue ${name} in Redis; check --namespace`
    : `no queue ${name} in Redis yet (nothing was ever queued there: is this the Redis of the gateway and the workers? check CBMIR_REDIS_URL)`;
}

/**
 * Where the embedded index of this configuration should be, when it is not there (undefined
 * with Elasticsearch, or when the file exists). Opening it would create it empty: a command run
 * from another folder than the services, with the default relative CBMIR_DATA_DIR, would then
 * see an empty index instead of the one the services use.
 */
export function missingEmbeddedIndex(config: Pick<Config, 'es' | 'dataDir'>): string | undefined {
  if (config.es) return undefined;
  const file = embeddedIndexPath(config);
  return existsSync(file) ? undefined : file;
}

/** The line a command prints when the embedded index it reads is missing (missingEmbeddedIndex). */
export function missingEmbeddedIndexMessage(config: Pick<Config, 'dataDir'>, file: string): string {
  const relative = !path.isAbsolute(config.dataDir);
  return (
    `no embedded index at ${file} (CBMIR_DATA_DIR=${config.dataDir}${relative ? `, taken from the current folder ${process.cwd()}` : ''}); ` +
    'a worker creates it when it starts. Set CBMIR_DATA_DIR to the data folder the workers and the gateway use ' +
    `(an absolute path), or CBMIR_ES_URL for Elasticsearch`
  );
}

/** Exit 2 (a configuration problem) when the embedded index this command reads is missing; creates nothing. */
export function embeddedIndexOrExit(config: Pick<Config, 'es' | 'dataDir'>, command: string): void {
  const file = missingEmbeddedIndex(config);
  if (file === undefined) return;
  process.stderr.write(`cbmir ${command}: ${missingEmbeddedIndexMessage(config, file)}\n`);
  process.exit(2);
}

/**
 * An index error as a command prints it: with Elasticsearch, naming CBMIR_ES_URL and its URL
 * (without credentials), since the client's message names neither.
 */
export function indexErrorMessage(config: Pick<Config, 'es'> | undefined, err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  if (!config?.es || !(err instanceof IndexError) || message.includes('CBMIR_ES_URL')) return message;
  const where = `Elasticsearch at ${withoutCredentials(config.es.url)} (CBMIR_ES_URL)`;
  return err.code === 'UNAVAILABLE' ? `${where} does not answer: ${message}` : `${where}: ${message}`;
}

/** The message of an error that ended a command (workers/cli.ts prefixes it with `cbmir <command>:`). */
export function commandErrorMessage(err: unknown): string {
  return indexErrorMessage(parsedConfig, err);
}

/** The "Exit status" paragraph at the end of a command's --help. */
export function exitStatusHelp(lines: readonly string[]): string {
  return `\nExit status:\n${lines.map((l) => `  ${l}`).join('\n')}\n`;
}

/** A commander parser for a YYYYMMDD option: a real date, or exit 2 naming the option. */
export const dateOption =
  (name: string) =>
  (v: string): string => {
    if (!isCalendarDate(v)) throw new InvalidArgumentError(`${name} must be a date YYYYMMDD, got ${v}`);
    return v;
  };
