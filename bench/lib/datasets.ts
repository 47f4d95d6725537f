/**
 * Where the benchmarks find the real datasets. CBMIR_DATASETS is the PARENT folder of
 * the dataset folders (figshare-cheng/, ixi-normal/), as README.md, models/train/data.py
 * and models/train/eval_onnx.py read it, so one setting serves training, eval:model and
 * every benchmark alike.
 */
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../..');

/** $CBMIR_DATASETS, else <repo>/../shared/datasets. A relative value is taken from the working directory, as Python's Path() does. */
export function datasetsRoot(env: NodeJS.ProcessEnv = process.env): string {
  const v = env.CBMIR_DATASETS?.trim();
  return v ? path.resolve(v) : path.resolve(ROOT, '../shared/datasets');
}

/** A dataset folder: a name under datasetsRoot(), or an absolute path kept as given. */
export function datasetDir(nameOrPath: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.isAbsolute(nameOrPath) ? path.normalize(nameOrPath) : path.resolve(datasetsRoot(env), nameOrPath);
}

/** A comma-separated list of dataset names or absolute paths (blank: `dflt`), as folders. */
export function datasetDirs(list: string | undefined, dflt: readonly string[], env: NodeJS.ProcessEnv = process.env): string[] {
  const items = (list ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return (items.length ? items : dflt).map((d) => datasetDir(d, env));
}
