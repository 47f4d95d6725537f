/**
 * Vector index benchmark (not a test): kNN latency of both backends at 10k and 100k
 * documents, and recall@k of Elasticsearch's approximate search (HNSW float vs int8,
 * with and without re-scoring) against exact search. Prints one JSON object as its last
 * line and writes the "Index kNN (bench:index-knn)" section of docs/benchmarks.md (unless
 * --no-report, or nothing was measured); bench:similar and docs/index.md take their
 * numbers from it.
 *
 *   tsx bench/index-knn.ts [--sizes 10000,100000] [--queries 200] [--dims 256] [--k 10]
 *                          [--types hnsw,int8_hnsw] [--es URL|none] [--real] [--no-embedded]
 *                          [--candidates 100,200,400] [--m 16] [--ef 100] [--jitter N]
 *                          [--no-report] [--help]
 *
 * --es defaults to CBMIR_ES_URL, then CBMIR_TEST_ES_URL; "none" skips Elasticsearch.
 * --real adds a dataset of real embeddings: the images of figshare-cheng and ixi-normal in
 * CBMIR_DATASETS (the folder holding the datasets, default ../shared/datasets) through the
 * model (CBMIR_MODEL, else models/manifest.json), cached under .cache/bench/ so only the
 * first run pays for inference; --queries of them are held out as queries. Random unit
 * vectors are the hard case for HNSW (no cluster structure); real embeddings cluster by
 * anatomy and class.
 *
 * Every numeric option is checked before anything runs (exit 2 naming it): --k must not
 * exceed any --candidates value (num_candidates ≥ k) nor the smallest size.
 *
 * Latency is sequential (one query at a time, after 20 warm-up queries: stored vectors,
 * never one of the measured queries), measured in this
 * process around the VectorIndex call, so it includes JSON/HTTP for Elasticsearch and
 * the SQLite freshness check + hit loading for the embedded store.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@elastic/elasticsearch';
import { EmbeddedIndex } from '../core/index/embedded/embedded-index.js';
import { ElasticsearchIndex } from '../core/index/elasticsearch/es-index.js';
import { DEFAULT_VECTOR_MAPPING, type VectorIndexType } from '../core/index/elasticsearch/mapping.js';
import { MAX_K, type VectorDoc, type VectorIndex } from '../core/index/types.js';
import { benchCli, intListSetting, intSetting, orUsageExit, usageExit, UsageError } from './lib/args.js';
import { datasetDir } from './lib/datasets.js';
import { knnMeasuredAnything, knnSection, measureKnn, warmupQueries, type KnnResult, type KnnRun } from './lib/index-knn.js';
import { onInterrupt } from './lib/interrupt.js';
import { upsertSection } from './lib/report.js';
import { prng, unitVectors } from '../test/helpers/vectors.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = benchCli(
  'bench:index-knn',
  `usage: npm run bench:index-knn -- [options]   (or: npm run bench -- index-knn [options])

kNN latency and recall@k of the embedded store and Elasticsearch (HNSW float / int8, with
and without re-scoring) against exact search. Prints one JSON line; writes the "Index kNN
(bench:index-knn)" section of docs/benchmarks.md.`,
  {
    sizes: { type: 'string', default: '10000,100000', value: 'N,…', help: 'random data sets (documents each)' },
    queries: { type: 'string', default: '200', value: 'N', help: 'measured queries per configuration' },
    dims: { type: 'string', default: '256', value: 'N', help: 'dimensions of the random vectors' },
    k: { type: 'string', default: '10', value: 'N', help: 'neighbours per query' },
    types: { type: 'string', default: 'hnsw,int8_hnsw', value: 'T,…', help: 'Elasticsearch vector index types' },
    es: { type: 'string', value: 'URL|none', help: 'Elasticsearch (default CBMIR_ES_URL, then CBMIR_TEST_ES_URL)' },
    real: { type: 'boolean', help: "add the real datasets' embeddings (CBMIR_DATASETS)" },
    'no-embedded': { type: 'boolean', help: 'skip the embedded store' },
    candidates: { type: 'string', default: '100,200,400', value: 'N,…', help: 'num_candidates swept with int8 re-scoring' },
    m: { type: 'string', value: 'N', help: 'HNSW m [Elasticsearch mapping default]' },
    ef: { type: 'string', value: 'N', help: 'HNSW ef_construction [mapping default]' },
    jitter: { type: 'string', value: 'N', help: 'with --real: a semi-real set of N jittered embeddings' },
    'no-report': { type: 'boolean', help: 'print the JSON only; leave docs/ alone' },
  },
);
const VECTOR_TYPES: readonly VectorIndexType[] = ['hnsw', 'int8_hnsw', 'flat', 'int8_flat'];
const { SIZES, NQ, DIMS, K, TYPES, CANDIDATES, HNSW, JITTER } = orUsageExit('bench:index-knn', () => {
  const sizes = intListSetting('--sizes', args.sizes);
  const k = intSetting('--k', args.k, 1, MAX_K);
  // num_candidates is bounded by Elasticsearch (≤ 10,000) and must be ≥ k, for both backends (core/index/validate.ts).
  const candidates = intListSetting('--candidates', args.candidates, 1, 10_000);
  const tooFew = candidates.find((c) => c < k);
  if (tooFew !== undefined)
    throw new UsageError(`--k (${k}) must not exceed any --candidates value (${tooFew}): num_candidates must be ≥ k`);
  // recall@k divides by k per query: fewer documents than k would cap it below 1 whatever the index does.
  if (k > Math.min(...sizes)) throw new UsageError(`--k (${k}) must not exceed the smallest of --sizes (${Math.min(...sizes)})`);
  const types = args.types.split(',').map((t) => t.trim());
  const bad = types.find((t) => !VECTOR_TYPES.includes(t as VectorIndexType));
  if (bad !== undefined)
    throw new UsageError(`--types: unknown vector index type ${JSON.stringify(bad)} (one of ${VECTOR_TYPES.join(', ')})`);
  return {
    SIZES: sizes,
    NQ: intSetting('--queries', args.queries),
    DIMS: intSetting('--dims', args.dims),
    K: k,
    TYPES: types as VectorIndexType[],
    /** num_candidates values swept for int8_hnsw + rescoring (the first is also used for every other run). */
    CANDIDATES: candidates,
    HNSW: {
      ...(args.m !== undefined ? { m: intSetting('--m', args.m) } : {}),
      ...(args.ef !== undefined ? { efConstruction: intSetting('--ef', args.ef) } : {}),
    },
    /** --jitter N: a semi-real set of N vectors, each a real embedding plus small noise (see below). */
    JITTER: args.jitter !== undefined ? intSetting('--jitter', args.jitter, 0) : 0,
  };
});
const ES_URL = args.es === 'none' ? undefined : (args.es ?? process.env.CBMIR_ES_URL ?? process.env.CBMIR_TEST_ES_URL);
const VERSION = 'bench';
const WARMUP = 20;

const log = (msg: string) => process.stderr.write(`[bench:index] ${msg}\n`);

// ---- data ----

interface Dataset {
  readonly name: string;
  readonly dims: number;
  readonly base: Float32Array[];
  readonly queries: Float32Array[];
  /** Queries sent before each measurement, not timed: stored vectors, never a measured query. */
  readonly warmup: Float32Array[];
}

/** Embeddings of the real dataset images with the model, cached on disk. */
async function realEmbeddings(): Promise<{ dims: number; vectors: Float32Array[]; model: string }> {
  const { loadModelManifest } = await import('../core/model-manifest.js');
  const manifest = loadModelManifest(process.env.CBMIR_MODEL);
  const files: string[] = [];
  // The cache is keyed by the image lists too: CBMIR_DATASETS may point at other copies of the datasets.
  const lists = createHash('sha256');
  for (const ds of ['figshare-cheng', 'ixi-normal']) {
    const dir = datasetDir(ds);
    const text = readFileSync(join(dir, 'labels.csv'), 'utf8');
    lists.update(`${ds}\n${text}\n`);
    for (const line of text.trim().split('\n').slice(1)) files.push(join(dir, line.split(',')[0]!));
  }
  const cache = join(
    ROOT,
    '.cache',
    'bench',
    `real-embeddings-${manifest.name}-${manifest.version}-${lists.digest('hex').slice(0, 12)}.f32`,
  );
  if (existsSync(cache)) {
    const buf = readFileSync(cache);
    const all = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    const vectors: Float32Array[] = [];
    for (let i = 0; i < all.length; i += manifest.dims) vectors.push(all.slice(i, i + manifest.dims));
    if (vectors.length === files.length) return { dims: manifest.dims, vectors, model: `${manifest.name}@${manifest.version}` };
    log(`${cache} holds ${vectors.length} vectors for ${files.length} images: embedding again`);
  }
  const { Embedder } = await import('../models/runtime/embedder.js');
  const { preprocess } = await import('../models/runtime/preprocess.js');
  const { decodeSourceImage } = await import('../core/dicom/source-image.js');
  const embedder = await Embedder.load(manifest);
  log(`embedding ${files.length} real images with ${manifest.name}@${manifest.version} (${embedder.executionProvider}); cached afterwards`);
  const vectors: Float32Array[] = [];
  const t0 = Date.now();
  for (let i = 0; i < files.length; i += 16) {
    const batch: Float32Array[] = [];
    for (const f of files.slice(i, i + 16)) {
      const img = await decodeSourceImage(readFileSync(f));
      batch.push(preprocess(img.pixels, img.rows, img.cols, embedder.inputSize));
    }
    vectors.push(...(await embedder.embed(batch)).embeddings);
    if (i % 320 === 0) log(`  ${i}/${files.length} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  }
  mkdirSync(dirname(cache), { recursive: true });
  const all = new Float32Array(vectors.length * manifest.dims);
  vectors.forEach((v, i) => all.set(v, i * manifest.dims));
  writeFileSync(cache, Buffer.from(all.buffer));
  return { dims: manifest.dims, vectors, model: `${manifest.name}@${manifest.version}` };
}

function docsOf(ds: Dataset): VectorDoc[] {
  const now = new Date().toISOString();
  return ds.base.map((vector, i) => ({
    sopInstanceUid: `2.25.424242.${i + 1}`,
    studyInstanceUid: `2.25.424242.0.${Math.floor(i / 100) + 1}`,
    seriesInstanceUid: `2.25.424242.0.${Math.floor(i / 100) + 1}.1`,
    modality: 'MR',
    modelVersion: VERSION,
    indexedAt: now,
    vector,
  }));
}

/** Exact top-k row numbers per query (float64 accumulation): the ground truth. */
function exactTopK(ds: Dataset, k: number): number[][] {
  return ds.queries.map((q) => {
    const best: Array<{ d: number; i: number }> = [];
    ds.base.forEach((v, i) => {
      let s = 0;
      for (let j = 0; j < v.length; j++) s += (v[j]! - q[j]!) ** 2;
      if (best.length < k || s < best[best.length - 1]!.d) {
        best.push({ d: s, i });
        best.sort((a, b) => a.d - b.d);
        if (best.length > k) best.pop();
      }
    });
    return best.map((b) => b.i);
  });
}

// ---- measurement ----

function measure(ix: VectorIndex, ds: Dataset, truth: number[][], numCandidates = CANDIDATES[0]): Promise<KnnRun> {
  return measureKnn(ix, ds, truth, { k: K, numCandidates });
}

async function load(ix: VectorIndex, docs: VectorDoc[], batch: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < docs.length; i += batch) {
    const r = await ix.upsert(docs.slice(i, i + batch));
    if (r.failed.length) throw new Error(`bulk load failed: ${r.failed[0]!.reason}`);
  }
  return performance.now() - t0;
}

async function benchEmbedded(ds: Dataset, truth: number[][]) {
  const dir = mkdtempSync(join(tmpdir(), 'cbmir-bench-index-'));
  const forget = onInterrupt(() => rmSync(dir, { recursive: true, force: true }));
  try {
    const path = join(dir, 'bench.sqlite');
    const w = new EmbeddedIndex({ path });
    await w.ensure(ds.dims, VERSION);
    const loadMs = await load(w, docsOf(ds), 2_000);
    await w.close();
    const r = new EmbeddedIndex({ path }); // a fresh process-like handle: cold cache
    const t0 = performance.now();
    await r.knn(ds.warmup[0]!, { k: K }); // not a measured query: it would be timed warm
    const coldMs = performance.now() - t0;
    const run = await measure(r, ds, truth);
    await r.close();
    return { ...run, load_docs_per_s: Math.round((ds.base.length / loadMs) * 1000), cold_first_query_ms: round(coldMs) };
  } finally {
    forget();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function benchEs(ds: Dataset, truth: number[][], type: VectorIndexType) {
  const base = `cbmir-bench-${process.pid}-${type.replace('_', '-')}-${ds.base.length}`;
  const admin = new Client({ node: ES_URL!, headers: { accept: 'application/json', 'content-type': 'application/json' } });
  const ix = new ElasticsearchIndex({ url: ES_URL!, base, mapping: { type, ...HNSW }, rescoreOversample: 0 });
  const dropAll = () =>
    admin.indices.delete({ index: `${base}-*`, ignore_unavailable: true, allow_no_indices: true }).catch(() => undefined);
  const forget = onInterrupt(dropAll);
  try {
    await ix.ensure(ds.dims, VERSION);
    const loadMs = await load(ix, docsOf(ds), 1_000);
    const t0 = performance.now();
    await ix.refresh();
    const refreshMs = performance.now() - t0;
    const segs = await admin.cat.segments({ index: ix.indexName(VERSION), format: 'json' });
    const out: Record<string, unknown> = {
      load_docs_per_s: Math.round((ds.base.length / (loadMs + refreshMs)) * 1000),
      segments: segs.length,
      plain: await measure(ix, ds, truth),
    };
    if (type.startsWith('int8')) {
      const rescored = new ElasticsearchIndex({ client: ix.client, base, mapping: { type, ...HNSW }, rescoreOversample: 2 });
      await rescored.ensure(ds.dims, VERSION);
      for (const c of CANDIDATES) out[`rescore_oversample_2_candidates_${c}`] = await measure(rescored, ds, truth, c);
    }
    return out;
  } finally {
    forget();
    await dropAll();
    await ix.close();
    await admin.close();
  }
}

function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

// ---- main ----

const datasets: Dataset[] = [];
for (const n of SIZES) {
  const base = unitVectors(n, DIMS, 1);
  datasets.push({ name: `random-${n}`, dims: DIMS, base, queries: unitVectors(NQ, DIMS, 2), warmup: warmupQueries(base, WARMUP) });
}
let realModel: string | undefined;
if (args.real) {
  const real = await realEmbeddings();
  realModel = real.model;
  // The held-out queries leave the rest as the base: it must keep at least k documents.
  if (real.vectors.length - NQ < K)
    usageExit(
      'bench:index-knn',
      `--queries (${NQ}) leaves ${real.vectors.length - NQ} of the ${real.vectors.length} real embeddings as the base, fewer than --k (${K})`,
    );
  const r = prng(3);
  const order = real.vectors.map((_, i) => i).sort(() => r() - 0.5);
  const q = new Set(order.slice(0, NQ));
  const realBase = real.vectors.filter((_, i) => !q.has(i));
  const realQueries = [...q].map((i) => real.vectors[i]!);
  datasets.push({
    name: `real-${realBase.length}`,
    dims: real.dims,
    base: realBase,
    queries: realQueries,
    warmup: warmupQueries(realBase, WARMUP),
  });
  if (JITTER > 0) {
    const base = jittered(realBase, JITTER);
    datasets.push({ name: `real-jittered-${JITTER}`, dims: real.dims, base, queries: realQueries, warmup: warmupQueries(base, WARMUP) });
  }
}

/**
 * Semi-real data at a scale we have no real images for: copies of the real embeddings,
 * each moved by Gaussian noise whose norm is half the median nearest-neighbour distance
 * of the real set, then re-normalised. It keeps the real set's cluster structure (what
 * makes HNSW easier on real data than on uniform random vectors) while making every
 * copy a distinct point.
 */
function jittered(base: Float32Array[], n: number): Float32Array[] {
  const sample = base.slice(0, 300);
  const nn = sample.map((a, i) => {
    let best = Infinity;
    base.forEach((b, j) => {
      if (j === i) return;
      let s = 0;
      for (let d = 0; d < a.length; d++) s += (a[d]! - b[d]!) ** 2;
      if (s < best) best = s;
    });
    return Math.sqrt(best);
  });
  const median = nn.sort((x, y) => x - y)[nn.length >> 1]!;
  const dims = base[0]!.length;
  const sigma = (0.5 * median) / Math.sqrt(dims);
  log(`jitter: median NN distance ${median.toFixed(4)}, noise sigma ${sigma.toExponential(2)} per dimension`);
  const r = prng(4);
  const out: Float32Array[] = [];
  for (let i = 0; i < n; i++) {
    const src = base[i % base.length]!;
    const v = new Float32Array(dims);
    let norm = 0;
    for (let d = 0; d < dims; d++) {
      const g = Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
      v[d] = src[d]! + sigma * g;
      norm += v[d]! ** 2;
    }
    norm = Math.sqrt(norm);
    for (let d = 0; d < dims; d++) v[d] = v[d]! / norm;
    out.push(v);
  }
  return out;
}

const result: KnnResult = {
  dims: DIMS,
  k: K,
  hnsw: { m: HNSW.m ?? DEFAULT_VECTOR_MAPPING.m, ef_construction: HNSW.efConstruction ?? DEFAULT_VECTOR_MAPPING.efConstruction },
  queries: NQ,
  ...(realModel ? { real_model: realModel } : {}),
  elasticsearch_url: ES_URL ? new URL(ES_URL).host : null,
  datasets: {},
};
for (const ds of datasets) {
  log(`${ds.name}: exact ground truth`);
  const truth = exactTopK(ds, K);
  const entry: Record<string, unknown> = { docs: ds.base.length };
  if (!args['no-embedded']) {
    log(`${ds.name}: embedded`);
    entry.embedded = await benchEmbedded(ds, truth);
  }
  if (ES_URL) {
    for (const type of TYPES) {
      log(`${ds.name}: elasticsearch ${type}`);
      entry[`es_${type}`] = await benchEs(ds, truth, type);
    }
  }
  result.datasets[ds.name] = entry;
  log(JSON.stringify(entry));
}
process.stdout.write(`${JSON.stringify(result)}\n`);
if (args['no-report']) log('--no-report: docs/benchmarks.md left alone');
// A run that measured nothing (--es none --no-embedded) must not blank out a measured section.
else if (!knnMeasuredAnything(result)) log('nothing was measured: docs/benchmarks.md left alone');
else {
  const cpus = `${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'})`;
  upsertSection(
    join(ROOT, 'docs/benchmarks.md'),
    'Index kNN (bench:index-knn)',
    knnSection(result, { when: new Date(), cpus, warmup: WARMUP, plainCandidates: CANDIDATES[0]! }),
  );
  log('docs/benchmarks.md: section "Index kNN (bench:index-knn)" written');
}
