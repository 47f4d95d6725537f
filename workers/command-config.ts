/** Configuration for a CLI command: parsed once; a bad setting exits 2 with every problem named. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError } from 'commander';
import { ConfigError, loadConfig, type Config } from '../core/config.js';
import { loadModelManifest, type ModelManifest } from '../core/model-manifest.js';
import { Embedder } from '../models/runtime/embedder.js';
import { isCalendarDate } from './load.js';

/** A command's configuration (it serves no HTTP: see LoadConfigOptions.serves). */
export function configOrExit(env: NodeJS.ProcessEnv = process.env): Config {
  try {
    return loadConfig(env, { serves: false });
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

/** A URL as it may be printed: a password (redis://:secret@host) or user name in it replaced by `***`. */
export function withoutCredentials(url: string): string {
  if (!URL.canParse(url)) return url.replace(/\/\/[^@/]*@/, '//***@');
  const u = new URL(url);
  if (u.username) u.username = '***';
  if (u.password) u.password = '***';
  return u.toString();
}

/** Wait (bounded) for a fail-fast producer connection to come up; throws a clear error if it does not. */
export async function redisReachable(ping: () => Promise<unknown>, url: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await ping();
      return;
    } catch (err) {
      if (Date.now() >= deadline) throw new Error(`Redis at ${withoutCredentials(url)} is unreachable (${(err as Error).message})`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** A commander parser for a YYYYMMDD option: a real date, or exit 2 naming the option. */
export const dateOption =
  (name: string) =>
  (v: string): string => {
    if (!isCalendarDate(v)) throw new InvalidArgumentError(`${name} must be a date YYYYMMDD, got ${v}`);
    return v;
  };
