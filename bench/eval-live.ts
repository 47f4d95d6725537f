/**
 * `npm run eval:live` — the model's retrieval figures measured through the live system,
 * to compare with `npm run eval:model` (same model, same fold). The model is the one the
 * worker embeds with: CBMIR_MODEL (a manifest.json or .onnx), else the shipped one.
 *
 *   tsx bench/eval-live.ts [--dataset DIR] [--query-fold 5] [--concurrency 4]
 *                          [--no-compare] [--no-report] [--help]
 *
 * 1. `cbmir load` STOWs the database patients (every fold but the query fold) and then
 *    the held-out patients (the query fold) of DIR (default: CBMIR_EVAL_DATASET, else
 *    figshare-cheng in CBMIR_DATASETS, the folder holding the datasets
 *    [../shared/datasets]) through the gateway, under the dataset's own name (the UIDs a
 *    plain `cbmir load` gives), and a `cbmir worker` embeds and indexes them. Skipped when
 *    the index already holds them (state in .stack/bench-similar + .stack/eval-live); an
 *    index of another model's vectors is dropped and rebuilt first.
 * 2. Every held-out image is queried through the API by its three UIDs:
 *    GET /similar?…&excludeSamePatient=true&limit=L, L = the number of indexed images, so
 *    the answer is the full ranking. `limit` above 100 is refused unless the gateway runs
 *    with CBMIR_SIMILAR_MAX_LIMIT (evaluation only; ≤ 10000 = the index's MAX_K); this
 *    gateway child runs with 10000.
 * 3. The database is folds ≠ query fold, as in eval:model: results that are query-fold
 *    images (other held-out patients, whose UIDs are known here because `cbmir load` UIDs
 *    are deterministic) are dropped from each ranking client-side, keeping the API's
 *    order. Metrics exactly as models/train/metrics.py: relevant = same class; AP =
 *    (1/R) Σ P@k over ranks k holding a relevant item, R = relevant items in the database
 *    (counted from labels.csv, so an item the API failed to return counts as missed);
 *    P@k = relevant among the first k / k.
 *
 * Also reports p10_unfiltered: P@10 of the first 10 answers as returned (what a user of
 * the live archive sees with limit=10, other held-out patients included).
 *
 * Prints per-class figures and, as the last stdout line, the eval:model JSON shape:
 *   {"map","p10","p1","n_queries","per_class":{…}, …}
 * With comparison on (default) it runs `npm run eval:model -- --dataset DIR --query-fold F`
 * (plus `--model FILE` when CBMIR_MODEL is not the shipped model) too and writes both,
 * with the gap, to the "Live retrieval" section of docs/benchmarks.md.
 *
 * Ports (env): CBMIR_BENCH_ORTHANC_PORT [18061], CBMIR_EVAL_REDIS_PORT [16384],
 * CBMIR_BENCH_ES_PORT [19204], CBMIR_EVAL_GATEWAY_PORT [18091]; or running services via
 * CBMIR_BENCH_ORTHANC_URL / CBMIR_EVAL_REDIS_URL / CBMIR_BENCH_ES_URL.
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'undici';
import { loadModelManifest } from '../core/model-manifest.js';
import { readDataset, type PlannedInstance } from '../workers/load/dataset.js';
import { benchCli, intSetting, orUsageExit, portFromEnv } from './lib/args.js';
import type { StartedChild } from './lib/child.js';
import { datasetDir } from './lib/datasets.js';
import {
  ROOT,
  ensureService,
  stopEnsuredServices,
  dropIfOtherModel,
  indexCount,
  loadThroughGateway,
  openIndex,
  startGateway,
  startWorker,
  waitIndexed,
  type LiveUrls,
  type WorkerChild,
} from './lib/live-stack.js';
import { onInterrupt } from './lib/interrupt.js';
import { rankMetrics } from './lib/rank-metrics.js';
import { markdownTable, numberRanges, upsertSection } from './lib/report.js';

const a = benchCli(
  'eval:live',
  `usage: npm run eval:live -- [options]   (or: npm run bench -- eval-live [options])

The model's retrieval figures (mAP, P@10, P@1) measured through the live /similar API,
compared with \`npm run eval:model\` on the same fold. Loads the dataset through the gateway
first unless the index holds it. Prints one JSON line; writes the "Live retrieval" section
of docs/benchmarks.md. Ports and services: see bench/eval-live.ts.`,
  {
    dataset: {
      type: 'string',
      default: process.env.CBMIR_EVAL_DATASET || datasetDir('figshare-cheng'),
      value: 'DIR',
      help: 'dataset folder (labels.csv with folds)',
    },
    'query-fold': { type: 'string', default: '5', value: 'N', help: 'the held-out fold queried' },
    concurrency: { type: 'string', default: '4', value: 'N', help: 'queries in flight' },
    'no-compare': { type: 'boolean', help: 'do not run eval:model' },
    'no-report': { type: 'boolean', help: 'print the JSON only; leave docs/ alone' },
  },
);
const env = process.env;
const setting = <T>(f: () => T): T => orUsageExit('eval:live', f);
const QUERY_FOLD = setting(() => intSetting('--query-fold', a['query-fold'], 0));
const CONCURRENCY = setting(() => intSetting('--concurrency', a.concurrency));
const port = (name: string, dflt: number): number => setting(() => portFromEnv(name, dflt, env));
const ORTHANC_PORT = port('CBMIR_BENCH_ORTHANC_PORT', 18061);
const REDIS_PORT = port('CBMIR_EVAL_REDIS_PORT', 16384);
const ES_PORT = port('CBMIR_BENCH_ES_PORT', 19204);
const GATEWAY_PORT = port('CBMIR_EVAL_GATEWAY_PORT', 18091);
const SHARED_DIR = path.join(ROOT, '.stack/bench-similar');
const OWN_DIR = path.join(ROOT, '.stack/eval-live');

const log = (m: string): void => void process.stderr.write(`[eval:live] ${m}\n`);

interface Hit {
  sopInstanceUid: string;
  label?: string;
  distance: number;
}

interface PerQuery {
  className: string;
  ap: number;
  p1: number;
  p5: number;
  p10: number;
  p10Unfiltered: number;
  returned: number;
}

async function main(): Promise<void> {
  // What the worker child embeds with (it inherits CBMIR_MODEL), hence what the index must hold and eval:model must evaluate.
  const model = loadModelManifest(env.CBMIR_MODEL);
  const shippedFile = env.CBMIR_MODEL ? loadModelManifest().file : model.file;
  const plan = await readDataset(a.dataset!);
  const byUid = new Map<string, PlannedInstance>(plan.instances.map((i) => [i.sopInstanceUid, i]));
  const queries = plan.instances.filter((i) => i.fold === QUERY_FOLD);
  const database = plan.instances.filter((i) => i.fold !== undefined && i.fold !== QUERY_FOLD);
  if (queries.length === 0) throw new Error(`${a.dataset}: no images in fold ${QUERY_FOLD} (labels.csv needs a fold column)`);
  const dbUids = new Set(database.map((i) => i.sopInstanceUid));
  const relevantCount = new Map<string, number>();
  for (const d of database) relevantCount.set(d.className, (relevantCount.get(d.className) ?? 0) + 1);
  const folds = [...new Set(database.map((i) => i.fold!))].sort((x, y) => x - y);
  log(
    `${plan.dataset}: ${queries.length} queries (fold ${QUERY_FOLD}), database ${database.length} (folds ${folds.join(',')}); model ${model.version}`,
  );

  const urls: LiveUrls = {
    orthanc: ensureService('orthanc', { stackDir: SHARED_DIR, port: ORTHANC_PORT, url: env.CBMIR_BENCH_ORTHANC_URL }, log),
    // Its own Redis: job ids are per instance and model version, so jobs finished for another index would be deduplicated away.
    redis: ensureService('redis', { stackDir: OWN_DIR, port: REDIS_PORT, url: env.CBMIR_EVAL_REDIS_URL }, log),
    es: ensureService('es', { stackDir: SHARED_DIR, port: ES_PORT, url: env.CBMIR_BENCH_ES_URL }, log),
    esIndex: 'eval-live',
    dataDir: path.join(OWN_DIR, 'data'),
  };
  const index = openIndex(urls);
  let gateway: StartedChild | undefined;
  let worker: WorkerChild | undefined;
  let pool: Pool | undefined;
  try {
    gateway = await startGateway(urls, GATEWAY_PORT, { CBMIR_SIMILAR_MAX_LIMIT: '10000' });
    const want = plan.instances.length;
    await dropIfOtherModel(index, urls, model.version, log);
    const have = await indexCount(index);
    if (have >= want) log(`index ${urls.esIndex} already holds ${have} documents: not loading`);
    else {
      worker = startWorker(urls);
      await worker.ready;
      const t0 = Date.now();
      log(`loading the database patients (folds ${folds.join(',')}) through the gateway`);
      await loadThroughGateway(GATEWAY_PORT, a.dataset!, undefined, log, folds);
      log(`loading the held-out patients (fold ${QUERY_FOLD})`);
      await loadThroughGateway(GATEWAY_PORT, a.dataset!, undefined, log, [QUERY_FOLD]);
      await waitIndexed(urls, index, want, log);
      log(`loaded and indexed ${want} images in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
      await worker.stop();
      worker = undefined;
    }
    const total = await indexCount(index);
    const limit = Math.min(10_000, total);

    pool = new Pool(`http://127.0.0.1:${GATEWAY_PORT}`, { connections: CONCURRENCY, headersTimeout: 120_000, bodyTimeout: 120_000 });
    const perQuery: PerQuery[] = new Array(queries.length);
    let next = 0;
    let done = 0;
    let unknownHits = 0;
    let labelMismatch = 0;
    const t0 = Date.now();
    const lane = async (): Promise<void> => {
      for (;;) {
        const k = next++;
        const q = queries[k];
        if (!q) return;
        const r = await pool!.request({
          method: 'GET',
          path: `/similar?StudyInstanceUID=${q.studyInstanceUid}&SeriesInstanceUID=${q.seriesInstanceUid}&SOPInstanceUID=${q.sopInstanceUid}&excludeSamePatient=true&limit=${limit}`,
        });
        const text = await r.body.text();
        if (r.statusCode !== 200) throw new Error(`/similar for query ${q.file} answered ${r.statusCode}: ${text.slice(0, 300)}`);
        const hits = (JSON.parse(text) as { results: Hit[] }).results;
        const rel: boolean[] = [];
        for (const h of hits) {
          const inst = byUid.get(h.sopInstanceUid);
          if (!inst) {
            unknownHits++; // another dataset in the same index: not part of this evaluation
            continue;
          }
          if (h.label !== undefined && h.label !== inst.className) labelMismatch++;
          if (dbUids.has(h.sopInstanceUid)) rel.push(inst.className === q.className);
        }
        const unfiltered = hits.slice(0, 10).filter((h) => byUid.get(h.sopInstanceUid)?.className === q.className).length / 10;
        perQuery[k] = {
          className: q.className,
          ...rankMetrics(rel, relevantCount.get(q.className) ?? 0),
          p10Unfiltered: unfiltered,
          returned: rel.length,
        };
        if (++done % 100 === 0)
          log(`  ${done}/${queries.length} queries (${((Date.now() - t0) / done).toFixed(0)} ms each, ${CONCURRENCY} in flight)`);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, lane));
    const queryS = (Date.now() - t0) / 1000;
    const short = perQuery.filter((p) => p.returned < database.length).length;
    log(
      `${queries.length} queries in ${queryS.toFixed(0)} s; rankings short of the whole database: ${short}; results from outside this dataset: ${unknownHits}; label mismatches: ${labelMismatch}`,
    );

    const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;
    const block = (ps: PerQuery[]) => ({
      map: mean(ps.map((p) => p.ap)),
      p1: mean(ps.map((p) => p.p1)),
      p5: mean(ps.map((p) => p.p5)),
      p10: mean(ps.map((p) => p.p10)),
      n_queries: ps.length,
    });
    const classes = [...new Set(queries.map((q) => q.className))];
    const overall = block(perQuery);
    const result = {
      ...overall,
      per_class: Object.fromEntries(classes.map((c) => [c, block(perQuery.filter((p) => p.className === c))])),
      p10_unfiltered: mean(perQuery.map((p) => p.p10Unfiltered)),
      n_database: database.length,
      indexed: total,
      short_rankings: short,
      protocol: `fold ${QUERY_FOLD} queries vs other folds database, through GET /similar (excludeSamePatient, limit ${limit})`,
      units: 'fraction',
      model: { file: path.basename(model.file), version: model.version },
      dataset: a.dataset,
    };
    const pct = (x: number): string => (100 * x).toFixed(2);
    const lines = [
      `eval:live — ${result.protocol}`,
      `${'class'.padEnd(12)}${'n'.padStart(6)}  ${'mAP'.padStart(7)}  ${'P@1'.padStart(7)}  ${'P@5'.padStart(7)}  ${'P@10'.padStart(7)}`,
    ];
    for (const [c, b] of [...Object.entries(result.per_class), ['overall', overall] as const]) {
      lines.push(
        `${c.padEnd(12)}${String(b.n_queries).padStart(6)}  ${pct(b.map).padStart(7)}  ${pct(b.p1).padStart(7)}  ${pct(b.p5).padStart(7)}  ${pct(b.p10).padStart(7)}`,
      );
    }
    process.stdout.write(`${lines.join('\n')}\n`);

    await gateway.stop();
    gateway = undefined;
    let offline: Record<string, unknown> | undefined;
    if (!a['no-compare']) {
      const other = path.resolve(model.file) !== path.resolve(shippedFile);
      log(
        `running npm run eval:model (model ${model.version}${other ? `, ${path.relative(ROOT, model.file)}` : ''}, query fold ${QUERY_FOLD}) for comparison`,
      );
      offline = await runEvalModel(a.dataset!, QUERY_FOLD, other ? model.file : undefined);
      const evaluated = (offline.model as { file?: unknown } | undefined)?.file;
      if (evaluated !== path.basename(model.file))
        throw new Error(`eval:model evaluated ${String(evaluated)}, not ${path.basename(model.file)}: not comparable`);
    }
    const context: ReportContext = {
      dataset: plan.dataset,
      classes: [...new Set(queries.map((q) => q.className))],
      queryFold: QUERY_FOLD,
      databaseFolds: folds,
      model: model.version,
    };
    if (!a['no-report']) writeReport(result, offline, queryS, limit, context);
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await pool?.close();
    await worker?.stop();
    await gateway?.stop();
    await index.close();
    stopEnsuredServices(log);
  }
}

/** `npm run eval:model -- --dataset DIR --query-fold F [--model FILE]`; its last stdout line, parsed. */
function runEvalModel(dataset: string, queryFold: number, modelFile: string | undefined): Promise<Record<string, unknown>> {
  // Without --query-fold, eval:model queries the manifest's held-out fold (or 5 for another
  // model), which need not be the fold queried here; without --model, the shipped model.
  const args = ['--dataset', dataset, '--query-fold', String(queryFold), ...(modelFile ? ['--model', modelFile] : [])];
  return new Promise((resolve, reject) => {
    const c = spawn('bash', [path.join(ROOT, 'models/train/eval.sh'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    const forget = onInterrupt(() => c.kill('SIGTERM'));
    c.once('exit', forget);
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.once('error', reject);
    c.once('exit', (code) => {
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0) return reject(new Error(`eval:model exited with ${code}`));
      try {
        resolve(JSON.parse(last) as Record<string, unknown>);
      } catch {
        reject(new Error(`eval:model printed no JSON last line: ${last.slice(0, 200)}`));
      }
    });
  });
}

type Block = { map: number; p1: number; p5?: number; p10: number; n_queries: number };

/** What this run evaluated, for the report's prose. */
interface ReportContext {
  readonly dataset: string;
  readonly classes: readonly string[];
  readonly queryFold: number;
  readonly databaseFolds: readonly number[];
  readonly model: string;
}

function writeReport(
  live: Block & { per_class: Record<string, Block>; p10_unfiltered: number; n_database: number; indexed: number; short_rankings: number },
  model: Record<string, unknown> | undefined,
  queryS: number,
  limit: number,
  ctx: ReportContext,
): void {
  const pct = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? '–' : (100 * x).toFixed(2));
  const mb = model as (Block & { per_class: Record<string, Block> }) | undefined;
  const rows: (string | number)[][] = [];
  for (const [name, l, m] of [
    ...Object.entries(live.per_class).map(([c, b]) => [c, b, mb?.per_class?.[c]] as const),
    ['overall', live, mb] as const,
  ]) {
    rows.push([
      name,
      l.n_queries,
      pct(l.map),
      pct(m?.map),
      m ? (100 * (l.map - m.map)).toFixed(2) : '–',
      pct(l.p10),
      pct(m?.p10),
      m ? (100 * (l.p10 - m.p10)).toFixed(2) : '–',
      pct(l.p1),
      pct(m?.p1),
    ]);
  }
  const gap = mb ? Math.max(Math.abs(live.map - mb.map), Math.abs(live.p10 - mb.p10), Math.abs(live.p1 - mb.p1)) * 100 : undefined;
  upsertSection(
    path.join(ROOT, 'docs/benchmarks.md'),
    'Live retrieval',
    [
      `\`npm run eval:live\`, run ${new Date().toISOString().slice(0, 16)}Z on ${os.cpus().length} CPUs. ${ctx.dataset} (${ctx.classes.length} classes among the queries: ${ctx.classes.join(', ')}) loaded with \`cbmir load\` through the gateway` +
        ` (database = fold${ctx.databaseFolds.length === 1 ? '' : 's'} ${numberRanges(ctx.databaseFolds)}, ${live.n_database} images, then the held-out fold ${ctx.queryFold}), embedded by a \`cbmir worker\` with model ${ctx.model} (TypeScript preprocessing + onnxruntime-node), indexed in Elasticsearch (int8 HNSW, float re-scoring).` +
        ` Every fold-${ctx.queryFold} image queried by its UIDs through \`GET /similar?…&excludeSamePatient=true&limit=${limit}\` (the full ranking: the gateway ran with CBMIR_SIMILAR_MAX_LIMIT=10000, an evaluation-only setting);` +
        ` fold-${ctx.queryFold} results (other held-out patients) dropped client-side by their deterministic UIDs, so the database is exactly eval:model's (same model, \`--query-fold ${ctx.queryFold}\`). Metrics as models/train/metrics.py.` +
        ` ${live.n_queries} queries in ${queryS.toFixed(0)} s; rankings shorter than the database: ${live.short_rankings}.`,
      '',
      markdownTable(
        [
          'class',
          'queries',
          'mAP live %',
          'mAP eval:model %',
          'Δ',
          'P@10 live %',
          'P@10 eval:model %',
          'Δ',
          'P@1 live %',
          'P@1 eval:model %',
        ],
        rows,
      ),
      '',
      gap === undefined
        ? 'eval:model was not run (--no-compare).'
        : `Largest gap (mAP, P@10, P@1 overall): ${gap.toFixed(2)} points — target ≤ 0.5 points: ${gap <= 0.5 ? 'met' : '**missed**'}.` +
          ' Where the figures agree, it is because nothing in between approximates: the worker (TypeScript decode + preprocessing + onnxruntime-node) reproduces models/PREPROCESSING.md on the DICOM that `cbmir load` wrote from the same JPEGs eval:model reads (8-bit pixels as stored),' +
          ' and the full-ranking kNN is exact — num_candidates (4 × k, capped at 10,000) exceeds the index size, so HNSW visits every vector, and the int8 candidates are re-scored with the float vectors; the remaining difference is float rounding.' +
          ' A gap would come from preprocessing drift (worker vs Python) or from HNSW approximation when the index outgrows num_candidates.',
      '',
      `P@10 of the answer as returned (limit 10 over the whole live archive, i.e. other held-out patients included): ${pct(live.p10_unfiltered)} %.`,
    ].join('\n'),
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`eval:live: ${(err as Error).stack ?? String(err)}\n`);
  // a failure before the run's own try (datasets, a service that did not start) still stops what was started
  stopEnsuredServices((msg) => process.stderr.write(`${msg}\n`));
  process.exit(1);
});
