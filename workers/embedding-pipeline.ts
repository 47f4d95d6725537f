/**
 * DICOM bytes → vectors: decode (core/dicom) → preprocess (models/PREPROCESSING.md,
 * ported in models/runtime/preprocess.ts) → micro-batched ONNX inference.
 * Used by the index worker, the on-demand embed jobs behind POST /similar and
 * `cbmir embed`. Pixel work and inference live here, never in the gateway.
 */
import type { Config } from '../core/config.js';
import { decodeDicom, selectFrames, type DecodeOptions, type DecodeRefusal, type InstanceMeta } from '../core/dicom/decode.js';
import { Embedder, type EmbedderOptions } from '../models/runtime/embedder.js';
import { MicroBatcher } from '../models/runtime/micro-batcher.js';
import { loadModelManifest } from '../core/model-manifest.js';
import { preprocess } from '../models/runtime/preprocess.js';

export interface FrameVector {
  readonly frameNumber: number;
  readonly vector: Float32Array;
  readonly featureMap?: { data: Float32Array; channels: number; height: number; width: number };
}

export type EmbedResult = { ok: true; meta: InstanceMeta; vectors: FrameVector[] } | DecodeRefusal;

export interface PipelineOptions extends EmbedderOptions {
  /** models/manifest.json or an .onnx path; default: the shipped model. */
  readonly model?: string | undefined;
  readonly batchSize?: number;
  readonly batchWaitMs?: number;
  readonly decode?: DecodeOptions;
}

/** The decoder's options a worker process takes from its configuration (`cbmir worker`, and `cbmir reindex`'s local worker alike). */
export function workerDecodeOptions(config: Pick<Config, 'worker'>): DecodeOptions {
  return { maxPixelsPerFrame: config.worker.maxFramePixels };
}

interface BatchItem {
  image: Float32Array;
  withFeatureMap: boolean;
}

export class EmbeddingPipeline {
  private readonly batcher: MicroBatcher<BatchItem, Omit<FrameVector, 'frameNumber'>>;

  private constructor(
    readonly embedder: Embedder,
    private readonly decodeOpts: DecodeOptions,
    batchSize: number,
    batchWaitMs: number,
  ) {
    this.batcher = new MicroBatcher(async (items) => {
      const wantMaps = items.some((i) => i.withFeatureMap);
      const out = await this.embedder.embed(
        items.map((i) => i.image),
        wantMaps,
      );
      return out.embeddings.map((vector, k) => ({
        vector,
        ...(items[k]?.withFeatureMap && out.featureMaps?.[k] ? { featureMap: out.featureMaps[k] } : {}),
      }));
    }, batchSize, batchWaitMs);
  }

  static async create(opts: PipelineOptions = {}): Promise<EmbeddingPipeline> {
    const manifest = loadModelManifest(opts.model);
    const embedder = await Embedder.load(manifest, opts);
    return new EmbeddingPipeline(embedder, opts.decode ?? {}, opts.batchSize ?? 16, opts.batchWaitMs ?? 10);
  }

  get modelVersion(): string {
    return this.embedder.manifest.version;
  }

  get modelName(): string {
    return this.embedder.manifest.name;
  }

  get dims(): number {
    return this.embedder.manifest.dims;
  }

  /** Embed one preprocessed-ready grayscale frame (rows × cols floats). */
  async embedPixels(pixels: Float32Array, rows: number, cols: number, withFeatureMap = false): Promise<Omit<FrameVector, 'frameNumber'>> {
    const image = preprocess(pixels, rows, cols, this.embedder.inputSize);
    return this.batcher.submit({ image, withFeatureMap });
  }

  /** The frame (1-based) of a `count`-frame object whose vector embedDicom returns first: the one indexing keeps. */
  frameToEmbed(count: number): number {
    return selectFrames(count, this.decodeOpts.frames, this.decodeOpts.maxFrames)[0]! + 1;
  }

  /** Decode and embed a DICOM Part-10 object; refusals carry a reason; a DecoderResourceError (out of memory) is thrown, for a retry. */
  async embedDicom(bytes: Uint8Array, withFeatureMap = false): Promise<EmbedResult> {
    const decoded = await decodeDicom(bytes, this.decodeOpts);
    if (!decoded.ok) return decoded;
    const vectors = await Promise.all(
      decoded.frames.map(async (f) => ({ frameNumber: f.frameNumber, ...(await this.embedPixels(f.pixels, f.rows, f.cols, withFeatureMap)) })),
    );
    return { ok: true, meta: decoded.meta, vectors };
  }

  async close(): Promise<void> {
    await this.batcher.close();
    await this.embedder.close();
  }
}
