/**
 * Elasticsearch vector index against the real test Elasticsearch (CBMIR_TEST_ES_URL):
 * the shared behavioural suite, the same top-k as the embedded (exact) store on the same
 * data, searchable-after-write with refresh 'wait_for', and error classification on real
 * failures. Every test uses its own index names (cbmir-test-*) and deletes them.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Client } from '@elastic/elasticsearch';
import { ElasticsearchIndex } from '../../core/index/elasticsearch/es-index.js';
import { classifyIndexError, IndexError } from '../../core/index/errors.js';
import { loadConfig } from '../../core/config.js';
import { createVectorIndex } from '../../core/index/factory.js';
import { testStack } from '../helpers/stack.js';
import { bruteForce, DIMS, indexContractSuite, makeDocs, unitVectors } from '../unit/index-suite.js';

const esUrl = testStack().esUrl;
const admin = new Client({ node: esUrl, headers: { accept: 'application/json', 'content-type': 'application/json' } });
after(() => admin.close());

async function cleanup(base: string): Promise<void> {
  await admin.indices.delete({ index: `${base}-*`, ignore_unavailable: true, allow_no_indices: true });
  await admin.indices.delete({ index: base, ignore_unavailable: true });
}

let n = 0;
const uniqueBase = () => `cbmir-test-es-${process.pid}-${Date.now().toString(36)}-${n++}`;

indexContractSuite('elasticsearch', {
  open: async (base) => new ElasticsearchIndex({ url: esUrl, base }),
  settle: async (ix) => (ix as ElasticsearchIndex).refresh(),
  // Distances are read back from float32 scores 1/(1+d²): ≈ 3e-4 absolute near d = 0.
  distanceTolerance: 1e-3,
  cleanup,
});

test('elasticsearch: same top-k as the embedded exact store on the same data', async () => {
  const base = uniqueBase();
  const dir = mkdtempSync(join(tmpdir(), 'cbmir-index-'));
  const es = createVectorIndex({ es: { url: esUrl, index: base }, dataDir: dir });
  const emb = createVectorIndex({ es: undefined, dataDir: dir, indexName: base });
  try {
    assert.equal(es.backend, 'elasticsearch');
    assert.equal(emb.backend, 'embedded');
    const docs = makeDocs('1.0.0', 11);
    for (const ix of [es, emb]) {
      await ix.ensure(DIMS, '1.0.0');
      assert.equal((await ix.upsert(docs, { refresh: 'wait_for' })).written, docs.length);
    }
    const queries = unitVectors(20, DIMS, 12);
    for (const [i, q] of queries.entries()) {
      const filter = i % 2 ? { excludePatientKeys: [docs[i]!.patientKey!], modality: ['MR', 'CT'] } : undefined;
      const [a, b] = [await es.knn(q, { k: 10, filter }), await emb.knn(q, { k: 10, filter })];
      assert.deepEqual(
        a.map((h) => h.doc.sopInstanceUid),
        b.map((h) => h.doc.sopInstanceUid),
        `query ${i}`,
      );
      a.forEach((h, j) => assert.ok(Math.abs(h.distance - b[j]!.distance) < 1e-3, `query ${i} rank ${j}`));
      assert.deepEqual(
        b.map((h) => h.doc.sopInstanceUid),
        bruteForce(docs, q, 10, filter).map((w) => w.uid),
      );
    }
  } finally {
    await es.close();
    await emb.close();
    rmSync(dir, { recursive: true, force: true });
    await cleanup(base);
  }
});

test("elasticsearch: refresh 'wait_for' makes a write searchable when upsert returns; get/has are realtime", async () => {
  const base = uniqueBase();
  const ix = new ElasticsearchIndex({ url: esUrl, base });
  try {
    await ix.ensure(DIMS, '1.0.0');
    const docs = makeDocs('1.0.0', 13);
    for (const d of docs.slice(0, 5)) {
      await ix.upsert([d], { refresh: 'wait_for' });
      const hits = await ix.knn(d.vector, { k: 1 });
      assert.equal(hits[0]?.doc.sopInstanceUid, d.sopInstanceUid);
    }
    // get() and has() are realtime: they see a write before any refresh (the default
    // refresh interval is 1 s, so asking at once would miss it with a search).
    const unrefreshed = docs[10]!;
    await ix.upsert([unrefreshed]);
    assert.equal((await ix.get(unrefreshed.sopInstanceUid))?.sopInstanceUid, unrefreshed.sopInstanceUid);
    assert.deepEqual([...(await ix.has([unrefreshed.sopInstanceUid, '2.25.1']))], [unrefreshed.sopInstanceUid]);
  } finally {
    await ix.close();
    await cleanup(base);
  }
});

test('elasticsearch: versioned index behind the alias, mapping as designed', async () => {
  const base = uniqueBase();
  const ix = new ElasticsearchIndex({ url: esUrl, base });
  try {
    await ix.ensure(DIMS, '2.0.0-rc.1+build:7');
    const index = `${base}-2.0.0-rc.1-build-7`;
    assert.deepEqual(Object.keys(await admin.indices.getAlias({ name: base })), [index]);
    const mapping = (await admin.indices.getMapping({ index }))[index]!.mappings;
    const vec = mapping.properties!.vector as unknown as Record<string, unknown>;
    assert.equal(vec.type, 'dense_vector');
    assert.equal(vec.dims, DIMS);
    assert.equal(vec.similarity, 'l2_norm');
    assert.equal(vec.index, true);
    assert.deepEqual(
      { ...(vec.index_options as Record<string, unknown>), confidence_interval: undefined },
      { type: 'int8_hnsw', m: 32, ef_construction: 200, confidence_interval: undefined },
    );
    assert.equal(mapping.dynamic, 'strict');
    assert.equal((mapping._meta as { modelVersion: string }).modelVersion, '2.0.0-rc.1+build:7');
    assert.equal((mapping._meta as { vectorType: string }).vectorType, 'int8_hnsw');
    // No field for patient names or IDs exists at all.
    assert.ok(!Object.keys(mapping.properties!).some((f) => /patient_(name|id)/.test(f)));
    await ix.ensure(DIMS, '2.0.0-rc.1+build:7'); // idempotent
  } finally {
    await ix.close();
    await cleanup(base);
  }
});

test('elasticsearch: CBMIR_ES_VECTOR_TYPE=hnsw creates float vectors, and any handle searches them right', async () => {
  const base = uniqueBase();
  const writer = createVectorIndex({ es: { url: esUrl, index: base }, dataDir: tmpdir(), esVectorType: 'hnsw' });
  const reader = createVectorIndex({ es: { url: esUrl, index: base }, dataDir: tmpdir() }); // default (int8) options
  try {
    await writer.ensure(DIMS, '1.0.0');
    const index = `${base}-1.0.0`;
    const vec = (await admin.indices.getMapping({ index }))[index]!.mappings.properties!.vector as unknown as { index_options: { type: string } };
    assert.equal(vec.index_options.type, 'hnsw');
    const docs = makeDocs('1.0.0', 21);
    await writer.upsert(docs, { refresh: 'wait_for' });
    // The reader learns the index's real vector type from its _meta (no int8 re-scoring of floats).
    for (const q of unitVectors(5, DIMS, 22)) {
      assert.deepEqual(
        (await reader.knn(q, { k: 10 })).map((h) => h.doc.sopInstanceUid),
        bruteForce(docs, q, 10).map((w) => w.uid),
      );
    }
  } finally {
    await writer.close();
    await reader.close();
    await cleanup(base);
  }
});

test('elasticsearch: CBMIR_ES_SHARDS / CBMIR_ES_REPLICAS shape every new version\'s index (the default is 1 and 0)', async () => {
  const base = uniqueBase();
  const config = loadConfig({ CBMIR_ES_URL: esUrl, CBMIR_ES_INDEX: base, CBMIR_ES_SHARDS: '2', CBMIR_ES_REPLICAS: '1' });
  const sized = createVectorIndex(config);
  const plain = createVectorIndex({ es: { url: esUrl, index: base }, dataDir: tmpdir() });
  try {
    await sized.ensure(DIMS, '1.0.0');
    await plain.ensure(DIMS, '2.0.0');
    const settings = async (index: string) => {
      const s = (await admin.indices.getSettings({ index }))[index]!.settings!.index!;
      return [s.number_of_shards, s.number_of_replicas];
    };
    assert.deepEqual(await settings(`${base}-1.0.0`), ['2', '1']);
    assert.deepEqual(await settings(`${base}-2.0.0`), ['1', '0']);
    // On this one-node stack a replica cannot be placed: writes and searches still work.
    const docs = makeDocs('1.0.0', 6);
    await sized.upsert(docs, { refresh: 'wait_for' });
    assert.equal(await sized.count(), docs.length);
  } finally {
    await sized.close();
    await plain.close();
    await cleanup(base);
  }
});

test('elasticsearch: an index squatting on the alias name is reported, not clobbered', async () => {
  const base = uniqueBase();
  await admin.indices.create({ index: base });
  const ix = new ElasticsearchIndex({ url: esUrl, base });
  try {
    await assert.rejects(ix.ensure(DIMS, '1.0.0'), (e: unknown) => e instanceof IndexError && /exists as an index/.test(e.message));
    assert.ok(await admin.indices.exists({ index: base }));
  } finally {
    await ix.close();
    await cleanup(base);
  }
});

test('elasticsearch: errors are classified transient (unreachable) or permanent (bad request)', async () => {
  // A port nothing listens on: connection refused → transient, retry later.
  const down = new ElasticsearchIndex({ url: 'http://127.0.0.1:1', base: 'cbmir-test-down' });
  try {
    const err = await down.ensure(DIMS, '1.0.0').then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof IndexError, String(err));
    assert.equal(err.code, 'UNAVAILABLE');
    assert.equal(classifyIndexError(err), 'transient');
    assert.equal(classifyIndexError(err.cause), 'transient', 'the raw client error classifies the same');
  } finally {
    await down.close();
  }
  // A request the real server refuses: permanent.
  const bad = await admin.search({ index: 'cbmir-test-none', query: { bogus_query: {} } as never }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(bad, 'the server refused the request');
  assert.equal(classifyIndexError(bad), 'permanent');
});

test('elasticsearch: two processes creating the first versions at once leave the alias on one index', async () => {
  for (let round = 0; round < 4; round++) {
    const base = uniqueBase();
    const a = new ElasticsearchIndex({ url: esUrl, base });
    const b = new ElasticsearchIndex({ url: esUrl, base });
    try {
      await Promise.all([a.ensure(DIMS, '1.0.0'), b.ensure(DIMS, '2.0.0')]);
      const named = Object.keys(await admin.indices.getAlias({ name: base }));
      assert.equal(named.length, 1, `round ${round}: the alias names ${named.join(', ')}`);
      const reader = new ElasticsearchIndex({ url: esUrl, base });
      assert.ok(['1.0.0', '2.0.0'].includes((await reader.liveVersion())!));
      await reader.close();
    } finally {
      await a.close();
      await b.close();
      await cleanup(base);
    }
  }
});
