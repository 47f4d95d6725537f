/**
 * Embedded vector index (SQLite + exact search): the shared behavioural suite, plus what
 * only a single-machine store must prove: it survives a restart, and two processes
 * (gateway and worker) share one file safely, each seeing the other's writes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EmbeddedIndex } from '../../core/index/embedded/embedded-index.js';
import { createVectorIndex } from '../../core/index/factory.js';
import { bruteForce, DIMS, indexContractSuite, makeDocs, unitVectors } from './index-suite.js';

const dir = mkdtempSync(join(tmpdir(), 'cbmir-index-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const pathOf = (name: string) => join(dir, `${name}.sqlite`);

indexContractSuite('embedded', {
  open: async (name) => new EmbeddedIndex({ path: pathOf(name) }),
  distanceTolerance: 1e-5,
  cleanup: async (name) => {
    for (const suffix of ['', '-wal', '-shm']) rmSync(pathOf(name) + suffix, { force: true });
  },
});

test('embedded: the factory picks the embedded store when no Elasticsearch is configured', async () => {
  const ix = createVectorIndex({ es: undefined, dataDir: join(dir, 'factory'), indexName: 'vectors' });
  try {
    assert.equal(ix.backend, 'embedded');
    await ix.ensure(DIMS, '1.0.0');
    assert.equal(await ix.liveVersion(), '1.0.0');
  } finally {
    await ix.close();
  }
});

test('embedded: a worker still writing a version that was dropped gets UNKNOWN_VERSION, not a crash of its own', async () => {
  const path = pathOf('dropped');
  const oldWorker = new EmbeddedIndex({ path });
  const admin = new EmbeddedIndex({ path });
  try {
    await oldWorker.ensure(DIMS, '1.0.0');
    await oldWorker.upsert(makeDocs('1.0.0', 2));
    await admin.ensure(DIMS, '2.0.0');
    await admin.swapAlias('2.0.0');
    await admin.dropVersion('1.0.0'); // `cbmir reindex --drop-old`
    await assert.rejects(oldWorker.upsert(makeDocs('1.0.0', 1)), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'UNKNOWN_VERSION');
      assert.match(e.message, /1\.0\.0 was dropped from the index; this worker runs an old model/);
      return true;
    });
  } finally {
    await oldWorker.close();
    await admin.close();
  }
});

test('embedded: a version dropped and created again is reloaded by a process that cached the old one', async () => {
  const path = pathOf('reincarnated');
  const gateway = new EmbeddedIndex({ path }); // unbound: follows the live version, caches it
  const admin = new EmbeddedIndex({ path });
  try {
    await admin.ensure(DIMS, '1.0.0');
    await admin.upsert(makeDocs('1.0.0', 1).slice(0, 2));
    const q = unitVectors(1, DIMS, 5)[0]!;
    assert.equal((await gateway.knn(q, { k: 10 })).length, 2);
    // Roll back: v2 live, v1 dropped, then v1 indexed again with other documents and made live.
    await admin.ensure(DIMS, '2.0.0');
    await admin.swapAlias('2.0.0');
    await admin.dropVersion('1.0.0');
    const again = makeDocs('1.0.0', 2).slice(10, 13);
    await admin.ensure(DIMS, '1.0.0');
    await admin.upsert(again);
    await admin.swapAlias('1.0.0');
    const hits = await gateway.knn(q, { k: 10 });
    assert.deepEqual(hits.map((h) => h.doc.sopInstanceUid).sort(), again.map((d) => d.sopInstanceUid).sort());
  } finally {
    await gateway.close();
    await admin.close();
  }
});

test('embedded: a handle that follows the live version keeps only its matrix, not every version it has read', async () => {
  const path = pathOf('swap-memory');
  const gateway = new EmbeddedIndex({ path });
  const admin = new EmbeddedIndex({ path });
  const cached = () => (gateway as unknown as { caches: Map<string, unknown> }).caches.size;
  try {
    const q = unitVectors(1, DIMS, 5)[0]!;
    await admin.ensure(DIMS, '1.0.0');
    await admin.upsert(makeDocs('1.0.0', 2));
    assert.ok((await gateway.knn(q, { k: 3 })).length > 0);
    await admin.ensure(DIMS, '2.0.0');
    const v2 = makeDocs('2.0.0', 3); // the same UIDs as 1.0.0's, other vectors: other nearest ones
    await admin.upsert(v2);
    await admin.swapAlias('2.0.0');
    const hits = await gateway.knn(q, { k: 3 });
    assert.equal(hits.length, 3);
    assert.deepEqual(
      hits.map((h) => [h.doc.sopInstanceUid, h.doc.modelVersion]),
      bruteForce(v2, q, 3).map((w) => [w.uid, '2.0.0']),
    );
    assert.equal(cached(), 1, "the previous live version's matrix is still held");
  } finally {
    await gateway.close();
    await admin.close();
  }
});

test('embedded: data survives closing and reopening the store', async () => {
  const path = pathOf('restart');
  const docs = makeDocs('1.0.0', 3);
  const first = new EmbeddedIndex({ path });
  await first.ensure(DIMS, '1.0.0');
  await first.upsert(docs);
  const q = unitVectors(1, DIMS, 5)[0]!;
  const before = await first.knn(q, { k: 10 });
  await first.close();
  await assert.rejects(first.count(), /closed/);

  const reopened = new EmbeddedIndex({ path }); // unbound: reads the live version
  try {
    assert.equal(await reopened.count(), docs.length);
    const again = await reopened.knn(q, { k: 10 });
    assert.deepEqual(
      again.map((h) => [h.doc.sopInstanceUid, h.distance]),
      before.map((h) => [h.doc.sopInstanceUid, h.distance]),
    );
    assert.deepEqual(
      again.map((h) => h.doc.sopInstanceUid),
      bruteForce(docs, q, 10).map((w) => w.uid),
    );
  } finally {
    await reopened.close();
  }
});

test('embedded: equal distances rank by UID at the k-th place too, whatever the insertion order', async () => {
  // The same pixels stored under three UIDs (a study sent twice): which of them fills the last
  // place must not depend on which was indexed first, or a reindex changes the answer.
  const path = pathOf('ties');
  const docs = makeDocs('1.0.0', 4);
  const twin = docs[0]!.vector;
  const twins = ['2.25.9.3', '2.25.9.2', '2.25.9.1'].map((uid, i) => ({ ...docs[i + 1]!, sopInstanceUid: uid, vector: twin }));
  const ix = new EmbeddedIndex({ path });
  try {
    await ix.ensure(DIMS, '1.0.0');
    await ix.upsert([...twins, ...docs.slice(4)]); // descending UIDs first
    for (const [k, want] of [
      [1, ['2.25.9.1']],
      [2, ['2.25.9.1', '2.25.9.2']],
      [3, ['2.25.9.1', '2.25.9.2', '2.25.9.3']],
    ] as const) {
      const hits = await ix.knn(twin, { k });
      assert.deepEqual(
        hits.map((h) => h.doc.sopInstanceUid),
        want,
        `k = ${k}`,
      );
    }
  } finally {
    await ix.close();
  }
});

test('embedded: a reader sees another handle’s upserts and deletes on its next search', async () => {
  const path = pathOf('incremental');
  const docs = makeDocs('1.0.0', 4);
  const writer = new EmbeddedIndex({ path });
  const reader = new EmbeddedIndex({ path });
  try {
    await writer.ensure(DIMS, '1.0.0');
    await writer.upsert(docs.slice(0, 60));
    const q = docs[90]!.vector as Float32Array;
    assert.notEqual((await reader.knn(q, { k: 1 }))[0]!.doc.sopInstanceUid, docs[90]!.sopInstanceUid); // cache built on 60 docs
    await writer.upsert(docs.slice(60));
    assert.equal((await reader.knn(q, { k: 1 }))[0]!.doc.sopInstanceUid, docs[90]!.sopInstanceUid, 'incremental refresh');
    await writer.delete(docs[90]!.sopInstanceUid);
    // The deleted row must leave the reader's matrix (full reload on the generation bump),
    // not just be skipped when hits are loaded: otherwise k hits would come back as k − 1.
    const after = await reader.knn(q, { k: 10 });
    assert.deepEqual(
      after.map((h) => h.doc.sopInstanceUid),
      bruteForce(
        docs.filter((_, i) => i !== 90),
        q,
        10,
      ).map((w) => w.uid),
    );
  } finally {
    await writer.close();
    await reader.close();
  }
});

test('embedded: two processes share one store (a child writes while the parent reads and writes)', { timeout: 60_000 }, async () => {
  const path = pathOf('shared');
  const docs = makeDocs('1.0.0', 6);
  const parent = new EmbeddedIndex({ path });
  await parent.ensure(DIMS, '1.0.0');
  // The parent's matrix exists before the child writes: the child's rows must reach it as a refresh.
  assert.deepEqual(await parent.knn(docs[0]!.vector, { k: 120 }), []);
  // The child writes docs 0–79 in batches of 4 and holds after its first batch until told to go on.
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(new URL('./index-embedded-writer.ts', import.meta.url)), path, '1.0.0', '6', '0', '80', '4', 'hold'],
    // cwd = repository root, where `--import tsx` resolves, whatever directory the runner uses.
    { stdio: ['pipe', 'pipe', 'pipe'], cwd: fileURLToPath(new URL('../..', import.meta.url)) },
  );
  let out = '';
  let err = '';
  const lineSeen: Array<() => void> = [];
  child.stdout.on('data', (b: Buffer) => {
    out += b.toString();
    for (const seen of lineSeen) seen();
  });
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  /** The number the child printed after `word`, once it has (its exit first is a failure). */
  const childSays = (word: string) =>
    new Promise<number>((resolve, reject) => {
      const seen = () => {
        const m = new RegExp(`^${word} (\\d+)\\n`, 'm').exec(out);
        if (m) resolve(Number(m[1]));
      };
      lineSeen.push(seen);
      seen();
      void exited.then((code) => reject(new Error(`child exited (${code}) before "${word}": ${out}${err}`)));
    });
  const uidsOf = (from: number, to: number) => docs.slice(from, to).map((d) => d.sopInstanceUid);
  try {
    assert.equal(await childSays('held'), 4, 'the child sees its first batch');
    // The child holds with its first 4 docs written: the parent sees them, and its own writes, exactly.
    for (let i = 80; i < 120; i += 4) {
      const r = await parent.upsert(docs.slice(i, i + 4));
      assert.deepEqual(r.failed, []);
      const visible = (await parent.knn(docs[0]!.vector, { k: 120 })).map((h) => h.doc.sopInstanceUid);
      assert.deepEqual(visible.sort(), [...uidsOf(0, 4), ...uidsOf(80, i + 4)].sort(), `after the parent's docs 80–${i + 3}`);
    }
    child.stdin.end('go\n');
    assert.equal(await childSays('released'), 44, "the child sees the parent's 40 docs before writing its next batch");
    assert.equal(await exited, 0, `child failed: ${err}`);
    assert.match(out, /wrote 80/);
    assert.equal(await parent.count(), 120);
    const q = unitVectors(1, DIMS, 77)[0]!;
    const hits = await parent.knn(q, { k: 120 });
    assert.equal(hits.length, 120);
    assert.deepEqual(
      hits.slice(0, 10).map((h) => h.doc.sopInstanceUid),
      bruteForce(docs, q, 10).map((w) => w.uid),
    );
  } finally {
    child.kill();
    await parent.close();
  }
});
