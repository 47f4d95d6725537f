/**
 * Where the real sample data is: the repo's own small copies (test/fixtures, always
 * there) and, when present, the full ../shared collections (CBMIR_SHARED_DIR overrides).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const fixturesDir = path.join(repoRoot, 'test', 'fixtures');
export const dicomFixturesDir = path.join(fixturesDir, 'dicom-samples');
export const figshareSampleDir = path.join(fixturesDir, 'figshare-sample');
export const ixiSampleDir = path.join(fixturesDir, 'ixi-sample');

/** ../shared (or CBMIR_SHARED_DIR) when it exists, else undefined. */
export function sharedDir(): string | undefined {
  const dir = process.env.CBMIR_SHARED_DIR ?? path.resolve(repoRoot, '..', 'shared');
  return existsSync(dir) ? dir : undefined;
}

/** Every *.dcm under dir, sorted, relative paths. */
export function listDicom(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.dcm')) out.push(path.relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

export interface ManifestRow {
  file: string;
  sop_class: string;
  transfer_syntax_uid: string;
  rows: string;
  columns: string;
  bits_allocated: string;
  photometric: string;
  frames: string;
  notes: string;
}

/** manifest.csv of a dicom-samples folder (quoted fields allowed). */
export function readManifest(dir: string): Map<string, ManifestRow> {
  const lines = readFileSync(path.join(dir, 'manifest.csv'), 'utf8').trim().split('\n');
  const split = (line: string) => {
    const out: string[] = [];
    let cur = '';
    let q = false;
    for (const c of line) {
      if (c === '"') q = !q;
      else if (c === ',' && !q) {
        out.push(cur);
        cur = '';
      } else cur += c;
    }
    out.push(cur);
    return out;
  };
  const header = split(lines[0]!);
  const rows = new Map<string, ManifestRow>();
  for (const l of lines.slice(1)) {
    const f = split(l);
    const row = Object.fromEntries(header.map((h, i) => [h, f[i] ?? ''])) as unknown as ManifestRow;
    rows.set(row.file, row);
  }
  return rows;
}
