/**
 * The model version names the index its vectors go to, so a changed model file
 * must never keep the old version.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { DEFAULT_MANIFEST, loadModelManifest } from '../../core/model-manifest.js';
import { repoRoot } from '../helpers/fixtures.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cbmir-manifest-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('the shipped manifest matches its file', () => {
  const m = loadModelManifest();
  assert.match(m.version, /^\d+\.\d+\.\d+/);
  assert.match(m.sha256 ?? '', /^[0-9a-f]{64}$/);
});

test('a model file that differs from its manifest is refused, naming both hashes', () => {
  const shipped = loadModelManifest();
  const j = JSON.parse(readFileSync(DEFAULT_MANIFEST, 'utf8')) as Record<string, unknown>;
  const file = path.join(dir, 'retrained.onnx');
  const bytes = readFileSync(shipped.file);
  bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 1, bytes.length - 1); // same size, other content: what a retrained copy over the old file looks like
  writeFileSync(file, bytes);
  const manifest = path.join(dir, 'manifest.json');
  writeFileSync(manifest, JSON.stringify({ ...j, file: 'retrained.onnx' }));
  assert.throws(() => loadModelManifest(manifest), new RegExp(`has sha256 [0-9a-f]{64}, not the manifest's ${shipped.sha256}`));
  writeFileSync(manifest, JSON.stringify({ ...j, file: 'missing.onnx' }));
  assert.throws(() => loadModelManifest(manifest), /missing\.onnx does not exist/);
});

test('an .onnx file without a version in its name is versioned by its content, not its size', () => {
  const [a, b] = ['a', 'b'].map((d) => path.join(dir, d, 'model.onnx')) as [string, string];
  mkdirSync(path.dirname(a));
  mkdirSync(path.dirname(b));
  writeFileSync(a, Buffer.alloc(1024, 1));
  writeFileSync(b, Buffer.alloc(1024, 2));
  const va = loadModelManifest(a).version;
  assert.match(va, /^sha256-[0-9a-f]{16}$/);
  assert.notEqual(loadModelManifest(b).version, va);
  assert.equal(loadModelManifest(a).version, va, 'stable for the same file');
});

test('the default manifest is <repo>/models/manifest.json from the source tree and from a build in dist/', async () => {
  const ts = (await import('typescript')).default;
  const js = ts.transpileModule(readFileSync(path.join(repoRoot, 'core/model-manifest.ts'), 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  const repo = path.join(dir, 'repo');
  mkdirSync(path.join(repo, 'models'), { recursive: true });
  writeFileSync(path.join(repo, 'models', 'manifest.json'), '{}');
  // dist/models exists after a build (models/runtime is compiled), without a manifest.
  for (const at of ['core', 'dist/core', 'dist/models']) mkdirSync(path.join(repo, at), { recursive: true });
  for (const at of ['core', 'dist/core']) {
    const file = path.join(repo, at, 'model-manifest.mjs');
    writeFileSync(file, js);
    const built = (await import(pathToFileURL(file).href)) as { DEFAULT_MANIFEST: string };
    assert.equal(built.DEFAULT_MANIFEST, path.join(repo, 'models', 'manifest.json'), at);
  }
});
