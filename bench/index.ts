/**
 * `npm run bench -- <name> [options]`: one entry point for the benchmarks, each of which prints
 * its JSON as the last stdout line and writes its section of docs/benchmarks.md. The same
 * benchmarks run directly as `npm run bench:<name>`.
 */
import path from 'node:path';

const BENCHES: Record<string, { file: string; what: string }> = {
  proxy: { file: 'proxy.ts', what: 'gateway pass-through vs direct Orthanc (QIDO, WADO, STOW)' },
  ingest: { file: 'ingest.ts', what: 'STOW → embedded and indexed: images/s and latency' },
  similar: { file: 'similar.ts', what: '/similar under 1…N concurrent users, and uploads' },
  'index-knn': { file: 'index-knn.ts', what: 'kNN latency of the index backends by size' },
  'eval-live': { file: 'eval-live.ts', what: 'retrieval figures through the live /similar API vs eval:model' },
};

const [name, ...rest] = process.argv.slice(2);
const bench = name === undefined ? undefined : BENCHES[name];
if (!bench) {
  const list = Object.entries(BENCHES)
    .map(([k, v]) => `  ${k.padEnd(10)} ${v.what}`)
    .join('\n');
  process.stderr.write(
    `${name === undefined || name === '--help' || name === '-h' ? '' : `bench: unknown benchmark ${JSON.stringify(name)}\n`}` +
      `usage: npm run bench -- <name> [options]   (options: npm run bench -- <name> --help)\n${list}\n`,
  );
  process.exit(name === '--help' || name === '-h' ? 0 : 2);
}
const file = path.join(import.meta.dirname, bench.file);
// Each benchmark reads its options from process.argv (node:util parseArgs): make them its own.
process.argv = [process.argv[0]!, file, ...rest];
await import(file);
