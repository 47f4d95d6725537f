/**
 * The built OHIF v3 viewer (`dist/` of the npm package `@ohif/app`), fetched once
 * per machine into the cache, never into node_modules.
 *
 * Why not a devDependency: @ohif/app 3.13.2 is a 50 MB tarball that unpacks to
 * 204 MB (136 MB of it onnxruntime-web for OHIF's AI tools), and installing it
 * pulls ~40 runtime dependencies (webpack loaders, React …) that a *built*
 * viewer never uses; it also declares engines.node >= 24. We need only the
 * static files, so `npm pack` (the registry's ordinary client, through npm's
 * own cache and proxy settings) downloads just the tarball, its sha512 is
 * checked against the pinned integrity below, and `package/dist/` is unpacked
 * into `$CBMIR_CACHE_DIR/ohif-app-<version>/dist`. `npm ci` of the repo stays lean.
 *
 * Concurrency: unpacking goes to a private temporary folder renamed into place
 * (atomic on one file system); a run that loses the race keeps the winner's copy.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The viewer version every test and `npm start` use. Change both lines together. */
export const OHIF_VERSION = '3.13.2';
/** dist.integrity of @ohif/app@3.13.2 as published on registry.npmjs.org (`npm view @ohif/app@3.13.2 dist.integrity`). */
export const OHIF_INTEGRITY = 'sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA==';

const MARKER = '.cbmir-ohif.json';
const NPM_TIMEOUT_MS = 10 * 60_000;

/** Same rule as deploy/local/common.sh: root uses /var/cache/cbmir, others ~/.cache/cbmir. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.CBMIR_CACHE_DIR) return path.resolve(env.CBMIR_CACHE_DIR);
  if (process.getuid?.() === 0) return '/var/cache/cbmir';
  return path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'cbmir');
}

export interface OhifDistOptions {
  readonly cacheDir?: string;
  readonly version?: string;
  /** Expected npm integrity (sha512-…); required unless version is the pinned one. */
  readonly integrity?: string;
  /** Progress lines (download, unpack); default silent. */
  readonly log?: (line: string) => void;
}

/** Folder of the unpacked viewer for a version (exists only after ensureOhifDist). */
export function ohifDistDir(cacheDir: string, version = OHIF_VERSION): string {
  return path.join(cacheDir, `ohif-app-${version}`, 'dist');
}

async function sha512Integrity(file: string): Promise<string> {
  const hash = createHash('sha512');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return `sha512-${hash.digest('base64')}`;
}

function describeExecError(err: unknown): string {
  const e = err as { stderr?: string; message?: string };
  const tail = (e.stderr ?? '').trim().split('\n').slice(-8).join('\n');
  return tail || e.message || String(err);
}

/**
 * The path of OHIF's dist/ folder, downloading and unpacking it first when the
 * cache does not have it. Throws with the npm/tar error text when it cannot.
 */
export async function ensureOhifDist(opts: OhifDistOptions = {}): Promise<string> {
  const version = opts.version ?? OHIF_VERSION;
  const integrity = opts.integrity ?? (version === OHIF_VERSION ? OHIF_INTEGRITY : undefined);
  if (!integrity) throw new Error(`no pinned integrity for @ohif/app@${version}: pass one (npm view @ohif/app@${version} dist.integrity)`);
  if (!/^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/.test(version)) throw new Error(`not an exact version: ${version}`);
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  const home = path.join(cacheDir, `ohif-app-${version}`);
  const dist = path.join(home, 'dist');
  if (await isComplete(home, integrity)) return dist;

  const log = opts.log ?? (() => undefined);
  await mkdir(cacheDir, { recursive: true });
  const work = await mkdtemp(path.join(cacheDir, `.ohif-app-${version}-`));
  try {
    log(`fetching @ohif/app@${version} with npm pack (about 50 MB, once per machine)`);
    let packed: { filename: string }[];
    try {
      const { stdout } = await run('npm', ['pack', `@ohif/app@${version}`, '--json', '--silent', '--pack-destination', work], {
        cwd: work,
        timeout: NPM_TIMEOUT_MS,
        maxBuffer: 16 * 1024 * 1024,
      });
      packed = JSON.parse(stdout) as { filename: string }[];
    } catch (err) {
      throw new Error(`npm pack @ohif/app@${version} failed:\n${describeExecError(err)}`);
    }
    const tgz = path.join(work, packed[0]?.filename ?? '');
    if (!packed[0]?.filename || !existsSync(tgz)) throw new Error('npm pack reported no tarball');
    const got = await sha512Integrity(tgz);
    if (got !== integrity) throw new Error(`@ohif/app@${version} tarball integrity mismatch: expected ${integrity}, got ${got}`);

    log(`unpacking into ${home}`);
    const stage = path.join(work, 'stage');
    await mkdir(stage);
    try {
      await run('tar', ['-xzf', tgz, '-C', stage, '--no-same-owner', 'package/dist', 'package/package.json'], { timeout: NPM_TIMEOUT_MS });
    } catch (err) {
      throw new Error(`unpacking ${tgz} failed:\n${describeExecError(err)}`);
    }
    const pkg = JSON.parse(await readFile(path.join(stage, 'package', 'package.json'), 'utf8')) as { name?: string; version?: string };
    if (pkg.name !== '@ohif/app' || pkg.version !== version) throw new Error(`tarball holds ${pkg.name}@${pkg.version}, not @ohif/app@${version}`);
    if (!existsSync(path.join(stage, 'package', 'dist', 'index.html'))) throw new Error('the tarball has no dist/index.html');
    await writeFile(path.join(stage, 'package', MARKER), JSON.stringify({ version, integrity }) + '\n');
    await rm(path.join(stage, 'package', 'package.json'));
    try {
      await rename(path.join(stage, 'package'), home);
    } catch (err) {
      // Another process finished first (ENOTEMPTY/EEXIST): use its copy if it is whole.
      if (!(await isComplete(home, integrity))) throw err;
    }
    return dist;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function isComplete(home: string, integrity: string): Promise<boolean> {
  try {
    const m = JSON.parse(await readFile(path.join(home, MARKER), 'utf8')) as { integrity?: string };
    return m.integrity === integrity && existsSync(path.join(home, 'dist', 'index.html'));
  } catch {
    return false;
  }
}
