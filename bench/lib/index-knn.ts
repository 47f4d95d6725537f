/**
 * bench:index-knn's measurement and report, apart from the script so they can be tested
 * without an index: which queries warm up, which are timed, and what the section says.
 */
import type { VectorIndex } from '../../core/index/types.js';
import { markdownTable } from './report.js';
import { summarise } from './stats.js';

/** One measured configuration: latency (ms) of sequential queries, client CPU per query, recall@k. */
export interface KnnRun {
  p50_ms: number;
  p95_ms: number;
  mean_ms: number;
  /** CPU time of this process per query (wall time suffers most from a shared machine). */
  client_cpu_ms: number;
  recall_at_k: number;
}

/**
 * Warm-up queries: `n` stored vectors, evenly spread over `base`, never a measured query.
 * Warming up with the measured queries would time them a second time, with whatever the
 * first time left cached (pages, graph nodes, the query's own answer).
 */
export function warmupQueries(base: readonly Float32Array[], n: number): Float32Array[] {
  const m = Math.min(n, base.length);
  const step = m ? Math.floor(base.length / m) : 0;
  return Array.from({ length: m }, (_, i) => base[i * step]!);
}

/** Row number of a benchmark document from its SOP Instance UID (2.25.424242.<row + 1>). */
export function uidRow(uid: string): number {
  return Number(uid.slice(uid.lastIndexOf('.') + 1)) - 1;
}

const round = (x: number, digits = 2): number => Math.round(x * 10 ** digits) / 10 ** digits;

/** Each warm-up query once (not timed), then each query once, one at a time; recall against `truth` (row numbers per query). */
export async function measureKnn(
  ix: Pick<VectorIndex, 'knn'>,
  ds: { readonly queries: readonly Float32Array[]; readonly warmup: readonly Float32Array[] },
  truth: readonly (readonly number[])[],
  opts: { readonly k: number; readonly numCandidates?: number | undefined },
): Promise<KnnRun> {
  const knnOpts = { k: opts.k, ...(opts.numCandidates ? { numCandidates: opts.numCandidates } : {}) };
  for (const q of ds.warmup) await ix.knn(q, knnOpts);
  const times = new Float64Array(ds.queries.length);
  let found = 0;
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < ds.queries.length; i++) {
    const t0 = performance.now();
    const hits = await ix.knn(ds.queries[i]!, knnOpts);
    times[i] = performance.now() - t0;
    const want = new Set(truth[i]);
    for (const h of hits) if (want.has(uidRow(h.doc.sopInstanceUid))) found++;
  }
  const cpu = process.cpuUsage(cpu0);
  const s = summarise(times);
  return {
    p50_ms: round(s.p50Ms),
    p95_ms: round(s.p95Ms),
    mean_ms: round(s.meanMs),
    client_cpu_ms: round((cpu.user + cpu.system) / 1000 / ds.queries.length),
    recall_at_k: round(found / (ds.queries.length * opts.k), 4),
  };
}

export interface KnnResult {
  readonly dims: number;
  readonly k: number;
  readonly hnsw: { readonly m: number; readonly ef_construction: number };
  readonly queries: number;
  readonly real_model?: string;
  readonly elasticsearch_url: string | null;
  readonly datasets: Record<string, Record<string, unknown>>;
}

/** Whether the result holds any measurement (`--es none --no-embedded` measures nothing). */
export function knnMeasuredAnything(result: KnnResult): boolean {
  return Object.values(result.datasets).some((e) => Object.keys(e).some((key) => key === 'embedded' || key.startsWith('es_')));
}

const isRun = (x: unknown): x is KnnRun => typeof x === 'object' && x !== null && 'p50_ms' in x && 'recall_at_k' in x;

/** The "Index kNN" section of docs/benchmarks.md. */
export function knnSection(
  result: KnnResult,
  ctx: { readonly when: Date; readonly cpus: string; readonly warmup: number; readonly plainCandidates: number },
): string {
  const rows: (string | number)[][] = [];
  const row = (data: string, docs: unknown, backend: string, search: string, r: KnnRun, load: unknown, cold?: unknown): void => {
    rows.push([
      data,
      String(docs),
      backend,
      search,
      r.p50_ms,
      r.p95_ms,
      r.mean_ms,
      r.client_cpu_ms,
      r.recall_at_k,
      String(load ?? '–'),
      cold === undefined ? '–' : String(cold),
    ]);
  };
  for (const [name, entry] of Object.entries(result.datasets)) {
    const emb = entry.embedded as (KnnRun & { load_docs_per_s: number; cold_first_query_ms: number }) | undefined;
    if (emb) row(name, entry.docs, 'embedded', 'exact', emb, emb.load_docs_per_s, emb.cold_first_query_ms);
    for (const [key, v] of Object.entries(entry)) {
      if (!key.startsWith('es_') || typeof v !== 'object' || v === null) continue;
      const es = v as Record<string, unknown>;
      const type = key.slice(3);
      if (isRun(es.plain)) row(name, entry.docs, `Elasticsearch ${type}`, `nc ${ctx.plainCandidates}`, es.plain, es.load_docs_per_s);
      for (const [k, r] of Object.entries(es)) {
        const m = /^rescore_oversample_2_candidates_(\d+)$/.exec(k);
        if (m && isRun(r)) row(name, entry.docs, `Elasticsearch ${type}`, `nc ${m[1]}, rescore ×2`, r, es.load_docs_per_s);
      }
    }
  }
  return [
    `\`npm run bench:index-knn\`, run ${ctx.when.toISOString().slice(0, 16)}Z on ${ctx.cpus}. k = ${result.k}, ${result.queries} queries per configuration, one at a time after ${ctx.warmup} warm-up queries` +
      ' (stored vectors, never a measured query), timed in the client around the VectorIndex call (JSON/HTTP included for Elasticsearch; the SQLite freshness check and hit loading for the embedded store).' +
      ` Dimensions ${result.dims} for random data; HNSW m ${result.hnsw.m}, ef_construction ${result.hnsw.ef_construction}; Elasticsearch: ${result.elasticsearch_url ?? 'not run'}` +
      `${result.real_model ? `; real embeddings of model ${result.real_model}` : ''}. Recall@${result.k} against exact float64 search; nc = num_candidates.`,
    '',
    markdownTable(
      [
        'data',
        'docs',
        'backend',
        'search',
        'p50 ms',
        'p95 ms',
        'mean ms',
        'client CPU ms',
        `recall@${result.k}`,
        'load docs/s',
        'cold first query ms',
      ],
      rows,
    ),
    '',
    `JSON: \`${JSON.stringify(result)}\``,
  ].join('\n');
}
