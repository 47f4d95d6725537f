import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KnnHit, KnnOptions } from '../../core/index/types.js';
import { knnMeasuredAnything, knnSection, measureKnn, warmupQueries, type KnnResult } from '../../bench/lib/index-knn.js';

const vec = (x: number): Float32Array => Float32Array.of(x, 0);

test('measureKnn: the warm-up sends stored vectors, never a measured query; each measured query is sent once', async () => {
  const base = Array.from({ length: 50 }, (_, i) => vec(i));
  const queries = [vec(100), vec(101), vec(102)];
  const warmup = warmupQueries(base, 20);
  assert.equal(warmup.length, 20);
  const sent: Float32Array[] = [];
  const ix = {
    knn: async (v: Float32Array | readonly number[], _o: KnnOptions): Promise<KnnHit[]> => {
      sent.push(v as Float32Array);
      // The nearest stored row: the row number is the first component here.
      const row = Math.min(49, Math.round((v as Float32Array)[0]!));
      return [{ doc: { sopInstanceUid: `2.25.424242.${row + 1}` } as KnnHit['doc'], distance: 0 }];
    },
  };
  const run = await measureKnn(ix, { queries, warmup }, [[49], [0], [49]], { k: 1 });
  assert.equal(sent.length, 23);
  for (const q of sent.slice(0, 20)) assert.ok(!queries.includes(q) && base.includes(q), 'warm-up: a stored vector');
  assert.deepEqual(sent.slice(20), queries, 'then each measured query once, in order');
  assert.equal(run.recall_at_k, 0.6667);
});

test('warmupQueries: spread over the base; no more than it holds', () => {
  const base = Array.from({ length: 10 }, (_, i) => vec(i));
  assert.deepEqual(
    warmupQueries(base, 5).map((v) => v[0]),
    [0, 2, 4, 6, 8],
  );
  assert.equal(warmupQueries(base.slice(0, 3), 20).length, 3);
  assert.deepEqual(warmupQueries([], 20), []);
});

const run = (p50: number) => ({ p50_ms: p50, p95_ms: p50 * 2, mean_ms: p50, client_cpu_ms: 1, recall_at_k: 0.99 });
const result = (datasets: KnnResult['datasets']): KnnResult => ({
  dims: 256,
  k: 10,
  hnsw: { m: 32, ef_construction: 200 },
  queries: 200,
  elasticsearch_url: '127.0.0.1:9200',
  datasets,
});

test('knnSection: one row per backend and search setting, then the JSON', () => {
  const r = result({
    'random-10000': {
      docs: 10_000,
      embedded: { ...run(7.6), load_docs_per_s: 20_000, cold_first_query_ms: 300 },
      es_int8_hnsw: { load_docs_per_s: 1_500, segments: 3, plain: run(6), rescore_oversample_2_candidates_200: run(6.7) },
    },
  });
  const md = knnSection(r, { when: new Date('2026-12-01T10:00:00Z'), cpus: '2 CPUs (AMD EPYC)', warmup: 20, plainCandidates: 100 });
  const rows = md.split('\n').filter((l) => l.startsWith('| random'));
  assert.deepEqual(rows, [
    '| random-10000 | 10000 | embedded | exact | 7.6 | 15.2 | 7.6 | 1 | 0.99 | 20000 | 300 |',
    '| random-10000 | 10000 | Elasticsearch int8_hnsw | nc 100 | 6 | 12 | 6 | 1 | 0.99 | 1500 | – |',
    '| random-10000 | 10000 | Elasticsearch int8_hnsw | nc 200, rescore ×2 | 6.7 | 13.4 | 6.7 | 1 | 0.99 | 1500 | – |',
  ]);
  assert.match(md, /^`npm run bench:index-knn`, run 2026-12-01T10:00Z on 2 CPUs \(AMD EPYC\)\. k = 10, 200 queries/);
  assert.match(md, /after 20 warm-up queries \(stored vectors, never a measured query\)/);
  assert.ok(md.endsWith(`JSON: \`${JSON.stringify(r)}\``));
});

test('knnMeasuredAnything: --es none --no-embedded measured nothing (no section to write)', () => {
  assert.equal(knnMeasuredAnything(result({ 'random-50': { docs: 50 } })), false);
  assert.equal(knnMeasuredAnything(result({ 'random-50': { docs: 50, es_hnsw: {} } })), true);
  assert.equal(knnMeasuredAnything(result({ 'random-50': { docs: 50, embedded: run(1) } })), true);
});
