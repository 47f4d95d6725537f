#!/usr/bin/env node
// Launcher for the `cbmir` CLI. The TypeScript sources through tsx (a dev dependency),
// in-process, whenever tsx is installed: a dist/ left from an earlier `npm run build`
// would otherwise keep running old code after a pull, silently. dist/workers/cli.js runs
// instead when it is newer than every source file it is built from, or when there is no tsx.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const built = join(root, 'dist', 'workers', 'cli.js');
/** What dist/workers/cli.js is compiled from (tsconfig's include, less tests, benchmarks and deploy/). */
const SOURCE_DIRS = ['workers', 'core', 'gateway', 'models/runtime'];

/** Newest modification time (ms) of the .ts files under the source dirs; 0 when there are none. */
function newestSourceMs() {
  let newest = 0;
  for (const dir of SOURCE_DIRS) {
    const abs = join(root, dir);
    if (!existsSync(abs)) continue;
    for (const f of readdirSync(abs, { recursive: true, encoding: 'utf8' })) {
      if (f.endsWith('.ts')) newest = Math.max(newest, statSync(join(abs, f)).mtimeMs);
    }
  }
  return newest;
}

async function loadTsx() {
  try {
    return (await import('tsx/esm/api')).register;
  } catch {
    return undefined;
  }
}

const buildIsCurrent = existsSync(built) && statSync(built).mtimeMs > newestSourceMs();
const register = buildIsCurrent ? undefined : await loadTsx();
if (register) {
  register();
  await import(pathToFileURL(join(root, 'workers', 'cli.ts')).href);
} else if (existsSync(built)) {
  if (!buildIsCurrent) {
    process.stderr.write('cbmir: warning: dist/ is older than the sources, and tsx (a dev dependency) is not installed to run them: running dist/ anyway; `npm run build` brings it up to date\n');
  }
  await import(pathToFileURL(built).href);
} else {
  process.stderr.write(
    'cbmir: nothing to run: the sources need tsx (`npm install` with dev dependencies), or build dist/ with `npm run build` (used when tsx is not installed, or when it is newer than every source .ts)\n',
  );
  process.exit(1);
}
