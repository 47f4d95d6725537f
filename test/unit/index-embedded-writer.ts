/**
 * Child process for the embedded-index sharing test: opens the same SQLite file as the
 * parent and writes the docs named on the command line in small batches, pausing
 * between them so the parent reads while this process writes.
 *
 *   node --import tsx index-embedded-writer.ts <db> <modelVersion> <seed> <from> <to> <batch>
 */
import { EmbeddedIndex } from '../../core/index/embedded/embedded-index.js';
import { DIMS, makeDocs } from './index-suite.js';

const [db, version, seed, from, to, batch] = process.argv.slice(2);
const ix = new EmbeddedIndex({ path: db! });
await ix.ensure(DIMS, version!);
const docs = makeDocs(version!, Number(seed)).slice(Number(from), Number(to));
for (let i = 0; i < docs.length; i += Number(batch)) {
  const r = await ix.upsert(docs.slice(i, i + Number(batch)));
  if (r.failed.length) throw new Error(`child write failed: ${JSON.stringify(r.failed)}`);
  await new Promise((res) => setTimeout(res, 5));
}
await ix.close();
process.stdout.write(`wrote ${docs.length}\n`);
