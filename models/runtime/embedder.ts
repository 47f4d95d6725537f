/**
 * ONNX embedding runtime (onnxruntime-node). Input contract (models/PREPROCESSING.md):
 * `image` float32 [N,1,S,S] in [0,1], already resized and normalised; outputs
 * `embedding` [N,D] (L2-normalised) and optionally `feature_map` [N,C,h,w].
 * GPU execution provider when present, CPU otherwise.
 */
import { existsSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import type { ModelManifest } from '../../core/model-manifest.js';

export interface EmbedOutput {
  readonly embeddings: Float32Array[];
  readonly featureMaps?: { data: Float32Array; channels: number; height: number; width: number }[];
}

export interface EmbedderOptions {
  /** Intra-op threads; default: onnxruntime's choice (all cores). */
  readonly threads?: number;
  /** Try CUDA first (falls back to CPU if unavailable). */
  readonly preferGpu?: boolean;
}

/**
 * The square input side the graph declares ([N,1,S,S]), or undefined where it leaves it open.
 * A model loaded by its .onnx path has no manifest to say it; export.py fixes every dimension
 * but the batch, so a model trained at another size says so here.
 */
export function declaredInputSide(session: Pick<ort.InferenceSession, 'inputMetadata'>): number | undefined {
  const m = session.inputMetadata[0];
  const shape = m && m.isTensor ? m.shape : [];
  const [h, w] = [shape[2], shape[3]];
  return typeof h === 'number' && h === w ? h : undefined;
}

/** A graph that does not keep the runtime's contract, or disagrees with its manifest: named, never started on. */
export class ModelContractError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelContractError';
  }
}

type GraphMetadata = Pick<ort.InferenceSession, 'inputNames' | 'outputNames' | 'inputMetadata' | 'outputMetadata'>;

const dimsOf = (m: ort.InferenceSession.ValueMetadata | undefined): ReadonlyArray<number | string> | undefined => (m && m.isTensor ? m.shape : undefined);

/**
 * The embedding size D, checked: the graph keeps the runtime's contract (`image` in, `embedding`
 * [N,D] out, any batch size) and agrees with a manifest that states D. Where the graph leaves D
 * open (onnxruntime infers it for any export.py graph) only a manifest can say it.
 */
export function embeddingDims(session: GraphMetadata, manifest: Pick<ModelManifest, 'file' | 'dims' | 'dimsDeclared'>): number {
  const model = `model ${manifest.file}`;
  const input = session.inputMetadata.find((m) => m.name === 'image');
  if (!input) throw new ModelContractError(`${model}: the graph has no input "image" (it has ${session.inputNames.join(', ') || 'none'}); see models/PREPROCESSING.md`);
  const batch = dimsOf(input)?.[0];
  if (typeof batch === 'number')
    throw new ModelContractError(`${model}: the graph's input "image" has a fixed batch of ${batch}; images are embedded in batches of any size (export it with a dynamic first dimension)`);
  const output = session.outputMetadata.find((m) => m.name === 'embedding');
  if (!output) throw new ModelContractError(`${model}: the graph has no output "embedding" (it has ${session.outputNames.join(', ') || 'none'}); see models/PREPROCESSING.md`);
  const shape = dimsOf(output);
  if (shape && shape.length !== 2) throw new ModelContractError(`${model}: the graph's output "embedding" has ${shape.length} dimensions, not [N, D]`);
  const dims = shape?.[1];
  if (typeof dims !== 'number') {
    if (manifest.dimsDeclared) return manifest.dims;
    throw new ModelContractError(`${model}: the graph leaves the size of "embedding" open; load it through a manifest that states its "dims"`);
  }
  if (manifest.dimsDeclared && dims !== manifest.dims)
    throw new ModelContractError(`${model}: its manifest says ${manifest.dims} dimensions, the graph's embedding has ${dims}`);
  return dims;
}

export class Embedder {
  private constructor(
    /** As loaded, with `dims` the graph's. */
    readonly manifest: ModelManifest,
    private readonly session: ort.InferenceSession,
    readonly executionProvider: string,
    /** The input side images are resized to: the graph's own where it declares one. */
    readonly inputSize: number,
  ) {}

  /**
   * The graph is the truth: another input side is a shape error on the first image, and another
   * embedding size than the index's a refusal of every write, so a model of another size would
   * start cleanly and fail every job.
   */
  private static async make(manifest: ModelManifest, session: ort.InferenceSession, ep: string): Promise<Embedder> {
    let dims: number;
    try {
      dims = embeddingDims(session, manifest);
    } catch (err) {
      await session.release();
      throw err;
    }
    return new Embedder(Object.freeze({ ...manifest, dims }), session, ep, declaredInputSide(session) ?? manifest.inputSize);
  }

  static async load(manifest: ModelManifest, opts: EmbedderOptions = {}): Promise<Embedder> {
    const base: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: 'all',
      ...(opts.threads ? { intraOpNumThreads: opts.threads, interOpNumThreads: 1 } : {}),
    };
    // Only try CUDA where a GPU is visible: the attempt itself logs a loud error otherwise.
    const gpuVisible = existsSync('/dev/nvidiactl') || process.env.CBMIR_GPU === '1';
    if ((opts.preferGpu ?? process.env.CBMIR_GPU !== '0') && gpuVisible) {
      try {
        const s = await ort.InferenceSession.create(manifest.file, { ...base, executionProviders: ['cuda'] });
        return await Embedder.make(manifest, s, 'cuda');
      } catch (err) {
        if (err instanceof ModelContractError) throw err;
        // No CUDA provider in this build/machine: CPU it is.
      }
    }
    const s = await ort.InferenceSession.create(manifest.file, { ...base, executionProviders: ['cpu'] });
    return Embedder.make(manifest, s, 'cpu');
  }

  get hasFeatureMap(): boolean {
    return this.session.outputNames.includes('feature_map');
  }

  /** Embed a batch of preprocessed images (each S×S floats in [0,1]). */
  async embed(images: readonly Float32Array[], withFeatureMap = false): Promise<EmbedOutput> {
    const s = this.inputSize;
    const n = images.length;
    if (n === 0) return { embeddings: [] };
    const input = new Float32Array(n * s * s);
    images.forEach((img, i) => {
      if (img.length !== s * s) throw new Error(`image ${i} has ${img.length} values, expected ${s * s}`);
      input.set(img, i * s * s);
    });
    const fetches = withFeatureMap && this.hasFeatureMap ? ['embedding', 'feature_map'] : ['embedding'];
    const out = await this.session.run({ image: new ort.Tensor('float32', input, [n, 1, s, s]) }, fetches);
    const emb = out.embedding as ort.Tensor;
    const d = emb.dims[1] as number;
    const data = emb.data as Float32Array;
    const embeddings = Array.from({ length: n }, (_, i) => data.slice(i * d, (i + 1) * d));
    if (!out.feature_map) return { embeddings };
    const fm = out.feature_map as ort.Tensor;
    const [, c, h, w] = fm.dims as number[];
    const per = (c as number) * (h as number) * (w as number);
    const fd = fm.data as Float32Array;
    return {
      embeddings,
      featureMaps: Array.from({ length: n }, (_, i) => ({
        data: fd.slice(i * per, (i + 1) * per),
        channels: c as number,
        height: h as number,
        width: w as number,
      })),
    };
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}
