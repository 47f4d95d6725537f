/**
 * "heatmap" jobs on the embed queue (core/jobs.ts HeatmapJobData; docs/heatmaps.md):
 * both images → embedding pipeline with feature maps → the heatmap ONNX graph
 * (models/heatmap-<model>.onnx, made by models/train/export_heatmap.py from the
 * model's own head weights) → two per-location contribution grids and s = e_q · e_r.
 *
 * The heatmap graph is loaded on the first heatmap job, not at worker start: most
 * workers never see one. It must come from the same model as the pipeline: the
 * manifest's "heatmap.source_sha256" is compared with the model's sha256.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { UnrecoverableError } from 'bullmq';
import * as ort from 'onnxruntime-node';
import type { HeatmapJobData, HeatmapJobResult, HeatmapSide } from '../core/jobs.js';
import type { ModelManifest } from '../core/model-manifest.js';
import type { EmbeddingPipeline } from './embedding-pipeline.js';

export interface HeatmapGrids {
  readonly query: Float32Array;
  readonly result: Float32Array;
  readonly similarity: number;
  readonly height: number;
  readonly width: number;
}

/**
 * Where the heatmap graph of a model is: the "heatmap" entry of the manifest.json next
 * to the model (when that manifest names this model), else models/heatmap-<model file>.
 * Throws a message that says how to make it.
 */
export function locateHeatmapModel(model: Pick<ModelManifest, 'file' | 'sha256'>): string {
  const dir = path.dirname(model.file);
  const manifestPath = path.join(dir, 'manifest.json');
  if (existsSync(manifestPath)) {
    try {
      const m = JSON.parse(readFileSync(manifestPath, 'utf8')) as {
        file?: string;
        sha256?: string;
        heatmap?: { file?: string; source_sha256?: string };
        variants?: Record<string, { file?: string }>;
      };
      // A variant (the INT8 file) shares the FP32 model's head, hence its heatmap graph.
      const isVariant = Object.values(m.variants ?? {}).some((v) => v.file === path.basename(model.file));
      if ((m.file === path.basename(model.file) || isVariant) && m.heatmap?.file) {
        const sha = isVariant ? m.sha256 : (model.sha256 ?? m.sha256);
        if (sha && m.heatmap.source_sha256 && m.heatmap.source_sha256 !== sha) {
          throw new Error(`heatmap model ${m.heatmap.file} was made for another model; run: python3 models/train/export_heatmap.py`);
        }
        const p = path.join(dir, m.heatmap.file);
        if (existsSync(p)) return p;
      }
    } catch (err) {
      if (!(err instanceof SyntaxError)) throw err;
    }
  }
  const p = path.join(dir, `heatmap-${path.basename(model.file)}`);
  if (existsSync(p)) return p;
  throw new Error(`no heatmap model for ${path.basename(model.file)}; run: python3 models/train/export_heatmap.py`);
}

/** The heatmap ONNX session: (fmap_q, fmap_r) [1,C,H,W] → (map_q, map_r [H,W], s [1]). */
export class HeatmapModel {
  private constructor(private readonly session: ort.InferenceSession) {}

  static async load(file: string): Promise<HeatmapModel> {
    // One thread: 2 small GEMVs and a few element-wise ops, not worth the pool.
    const session = await ort.InferenceSession.create(file, { executionProviders: ['cpu'], intraOpNumThreads: 1, interOpNumThreads: 1 });
    return new HeatmapModel(session);
  }

  async run(q: FeatureMap, r: FeatureMap): Promise<HeatmapGrids> {
    if (q.channels !== r.channels || q.height !== r.height || q.width !== r.width) throw new Error('feature maps differ in shape');
    const dims = [1, q.channels, q.height, q.width];
    const out = await this.session.run({ fmap_q: new ort.Tensor('float32', q.data, dims), fmap_r: new ort.Tensor('float32', r.data, dims) });
    return {
      query: (out.map_q as ort.Tensor).data as Float32Array,
      result: (out.map_r as ort.Tensor).data as Float32Array,
      similarity: ((out.s as ort.Tensor).data as Float32Array)[0] ?? NaN,
      height: q.height,
      width: q.width,
    };
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}

export interface FeatureMap {
  readonly data: Float32Array;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
}

/** Fetch an archived instance; throws UnrecoverableError when it can never succeed (404 …), else the transient error. */
export type FetchInstance = (ids: { studyInstanceUid: string; seriesInstanceUid: string; sopInstanceUid: string }) => Promise<Uint8Array>;

/** Runs heatmap jobs for one pipeline (one model version). */
export class HeatmapJobs {
  private model: Promise<HeatmapModel> | undefined;

  constructor(
    private readonly pipeline: EmbeddingPipeline,
    private readonly fetch: FetchInstance,
  ) {}

  private loadModel(): Promise<HeatmapModel> {
    this.model ??= (async () => HeatmapModel.load(locateHeatmapModel(this.pipeline.embedder.manifest)))();
    // A failed load is retried by the next job (the file may be exported meanwhile).
    this.model.catch(() => (this.model = undefined));
    return this.model;
  }

  /** The feature map of one side (first embedded frame, as indexing uses), or a refusal reason. */
  private async side(name: 'query' | 'result', s: HeatmapSide): Promise<FeatureMap | string> {
    let bytes: Uint8Array;
    if ('dicomBase64' in s) bytes = new Uint8Array(Buffer.from(s.dicomBase64, 'base64'));
    else {
      try {
        bytes = await this.fetch(s);
      } catch (err) {
        if (err instanceof UnrecoverableError) return `${name}: ${err.message}`;
        throw err;
      }
    }
    const r = await this.pipeline.embedDicom(bytes, true);
    if (!r.ok) return `${name}: ${r.reason}`;
    const fm = r.vectors[0]?.featureMap;
    if (!fm) return r.vectors.length ? `${name}: the model exports no feature_map` : `${name}: no frame to embed`;
    return fm;
  }

  async run(d: HeatmapJobData): Promise<HeatmapJobResult> {
    const version = this.pipeline.modelVersion;
    if (d.modelVersion !== version) return { status: 'refused', reason: `worker runs model ${version}, heatmap asked for ${d.modelVersion}` };
    // Both images go through the micro-batcher together.
    const [q, r] = await Promise.all([this.side('query', d.query), this.side('result', d.result)]);
    if (typeof q === 'string') return { status: 'refused', reason: q };
    if (typeof r === 'string') return { status: 'refused', reason: r };
    let model: HeatmapModel;
    try {
      model = await this.loadModel();
    } catch (err) {
      // Deployment problem, not the images': fail the job. The client gets 503 EMBED_UNAVAILABLE with a
      // generic detail (only "decode: …" reasons reach clients, core/queue/job-requester.ts); this
      // reason, with its "run export_heatmap.py" hint for the operator, goes to the gateway's log.
      throw new UnrecoverableError(`heatmap: ${(err as Error).message}`);
    }
    const g = await model.run(q, r);
    return {
      status: 'heatmap',
      modelVersion: version,
      similarity: g.similarity,
      height: g.height,
      width: g.width,
      query: Array.from(g.query),
      result: Array.from(g.result),
    };
  }

  async close(): Promise<void> {
    const m = this.model;
    this.model = undefined;
    if (m) await (await m.catch(() => undefined))?.close();
  }
}
