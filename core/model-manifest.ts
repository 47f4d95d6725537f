/**
 * The model manifest (read here in core/ because the gateway needs the model
 * version for job ids without loading the runtime).
 * The model manifest (models/manifest.json) is the one place the runtime learns
 * which ONNX file to load and which version string to stamp on every vector.
 */
import { readFileSync, existsSync, statSync } from 'node:fs';
import { dirname, resolve, basename } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ModelManifest {
  readonly name: string;
  readonly version: string;
  /** Absolute path of the .onnx file. */
  readonly file: string;
  readonly sha256?: string;
  readonly dims: number;
  readonly inputSize: number;
  readonly classes?: Record<string, string>;
}

const modelsDir = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'models');

export const DEFAULT_MANIFEST = resolve(modelsDir, 'manifest.json');

/**
 * Resolve a model reference: a manifest.json path, an .onnx path (version taken
 * from its file name), or undefined for the shipped default.
 */
export function loadModelManifest(ref: string | undefined = undefined): ModelManifest {
  const path = resolve(ref ?? DEFAULT_MANIFEST);
  if (!existsSync(path)) throw new Error(`model not found: ${path} (set CBMIR_MODEL to a manifest.json or .onnx file)`);
  if (path.endsWith('.onnx')) {
    const stem = basename(path, '.onnx');
    const m = /^(.*)-(\d+\.\d+\.\d+[\w.-]*)$/.exec(stem);
    return Object.freeze({ name: m?.[1] ?? stem, version: m?.[2] ?? `${statSync(path).size}`, file: path, dims: 256, inputSize: 224 });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`model manifest ${path} is not valid JSON: ${(err as Error).message}`);
  }
  const j = raw as Record<string, unknown>;
  const need = (k: string, t: string) => {
    if (typeof j[k] !== t) throw new Error(`model manifest ${path}: field "${k}" must be a ${t}`);
  };
  need('name', 'string');
  need('version', 'string');
  need('file', 'string');
  const input = (j.input ?? {}) as Record<string, unknown>;
  const shape = Array.isArray(input.shape) ? (input.shape as unknown[]) : [];
  const size = typeof shape[3] === 'number' ? (shape[3] as number) : 224;
  return Object.freeze({
    name: j.name as string,
    version: j.version as string,
    file: resolve(dirname(path), j.file as string),
    sha256: typeof j.sha256 === 'string' ? j.sha256 : undefined,
    dims: typeof j.dims === 'number' ? j.dims : 256,
    inputSize: size,
    classes: (j.classes as Record<string, string> | undefined) ?? undefined,
  });
}
