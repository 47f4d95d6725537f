#!/usr/bin/env node
// Launcher for the `cbmir` CLI: the compiled dist/workers/cli.js when `npm run build`
// has made it, else the TypeScript source through tsx (a dev dependency) in-process.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const built = `${root}dist/workers/cli.js`;
if (existsSync(built)) {
  await import(pathToFileURL(built).href);
} else {
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch {
    process.stderr.write('cbmir: no build in dist/ and no tsx to run the sources: run `npm run build`, or `npm install` with dev dependencies\n');
    process.exit(1);
  }
  register();
  await import(pathToFileURL(`${root}workers/cli.ts`).href);
}
