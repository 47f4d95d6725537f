/**
 * Child process for the embedded-index sharing test: opens the same SQLite file as the
 * parent and writes the docs named on the command line in small batches, pausing
 * between them so the parent reads while this process writes.
 *
 *   node --import tsx index-embedded-writer.ts <db> <modelVersion> <seed> <from> <to> <batch> [hold]
 *
 * With `hold`, after its first batch it prints `held <count>` (the docs it sees) and waits for
 * a line on stdin before going on, then prints `released <count>`: the parent reads and writes
 * in between, at a point it knows, not one left to timing.
 */
import { once } from 'node:events';
import { EmbeddedIndex } from '../../core/index/embedded/embedded-index.js';
import { DIMS, makeDocs } from './index-suite.js';

const [db, version, seed, from, to, batch, hold] = process.argv.slice(2);
const ix = new EmbeddedIndex({ path: db! });
await ix.ensure(DIMS, version!);
const docs = makeDocs(version!, Number(seed)).slice(Number(from), Number(to));
for (let i = 0; i < docs.length; i += Number(batch)) {
  const r = await ix.upsert(docs.slice(i, i + Number(batch)));
  if (r.failed.length) throw new Error(`child write failed: ${JSON.stringify(r.failed)}`);
  if (i === 0 && hold === 'hold') {
    process.stdout.write(`held ${await ix.count()}\n`);
    await once(process.stdin, 'data');
    process.stdin.destroy();
    process.stdout.write(`released ${await ix.count()}\n`);
  }
  await new Promise((res) => setTimeout(res, 5));
}
await ix.close();
process.stdout.write(`wrote ${docs.length}\n`);
