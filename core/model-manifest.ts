/**
 * The model manifest (read here in core/ because the gateway needs the model
 * version for job ids without loading the runtime).
 * The model manifest (models/manifest.json) is the one place the runtime learns
 * which ONNX file to load and which version string to stamp on every vector.
 */
import { createHash } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import { dirname, resolve, basename } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ModelManifest {
  readonly name: string;
  readonly version: string;
  /** Absolute path of the .onnx file. */
  readonly file: string;
  readonly sha256?: string;
  /** The embedding size: the manifest's, else 256 until the runtime reads the graph's (models/runtime/embedder.ts). */
  readonly dims: number;
  /** Whether the manifest states `dims` (a graph that disagrees is refused) or 256 is only assumed. */
  readonly dimsDeclared: boolean;
  readonly inputSize: number;
  readonly classes?: Record<string, string>;
}

/** models/manifest.json of the source tree, from core/ or from a build in dist/core/ (the build copies no models). */
function defaultManifest(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [resolve(here, '..', 'models', 'manifest.json'), resolve(here, '..', '..', 'models', 'manifest.json')];
  return candidates.find((p) => existsSync(p)) ?? candidates[0]!;
}

export const DEFAULT_MANIFEST = defaultManifest();

function sha256Of(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/**
 * Resolve a model reference: a manifest.json path, an .onnx path (version taken
 * from its file name, or from its content when the name has none), or undefined
 * for the shipped default. The version is stamped on every vector and names its
 * index, so two different files must never get the same one: a manifest's sha256
 * is checked against its file.
 */
export function loadModelManifest(ref: string | undefined = undefined): ModelManifest {
  const path = resolve(ref ?? DEFAULT_MANIFEST);
  if (!existsSync(path)) throw new Error(`model not found: ${path} (set CBMIR_MODEL to a manifest.json or .onnx file)`);
  if (path.endsWith('.onnx')) {
    const stem = basename(path, '.onnx');
    const m = /^(.*)-(\d+\.\d+\.\d+[\w.-]*)$/.exec(stem);
    const version = m?.[2] ?? `sha256-${sha256Of(path).slice(0, 16)}`;
    return Object.freeze({ name: m?.[1] ?? stem, version, file: path, dims: 256, dimsDeclared: false, inputSize: 224 });
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
  const file = resolve(dirname(path), j.file as string);
  if (!existsSync(file)) throw new Error(`model manifest ${path}: its file ${file} does not exist`);
  if (typeof j.sha256 === 'string') {
    const actual = sha256Of(file);
    if (actual !== j.sha256.toLowerCase())
      throw new Error(
        `model manifest ${path}: ${file} has sha256 ${actual}, not the manifest's ${j.sha256}; ` +
          'a changed model needs its own manifest and version, or its vectors would mix with the old ones in one index',
      );
  }
  const input = (j.input ?? {}) as Record<string, unknown>;
  const shape = Array.isArray(input.shape) ? (input.shape as unknown[]) : [];
  const size = typeof shape[3] === 'number' ? (shape[3] as number) : 224;
  return Object.freeze({
    name: j.name as string,
    version: j.version as string,
    file,
    sha256: typeof j.sha256 === 'string' ? j.sha256 : undefined,
    dims: typeof j.dims === 'number' ? j.dims : 256,
    dimsDeclared: typeof j.dims === 'number',
    inputSize: size,
    classes: (j.classes as Record<string, string> | undefined) ?? undefined,
  });
}
