/**
 * A dataset folder for `cbmir load`: images plus labels.csv with the columns
 *   file,label,class_name[,patient_id,fold]
 * (../shared/datasets/*, test/fixtures/*-sample). This module reads the CSV, checks
 * every row, and plans the DICOM hierarchy deterministically:
 *
 *   one study per patient, one series per (patient, class), one instance per image.
 *
 * The plan is made on the whole CSV *before* filters (--patients/--folds/--limit), so a
 * subset load gives each image the same UIDs and Instance Number as a full load.
 * Rows without patient_id become their own patient (the file's relative path without its
 * extension: glioma/1.png and meningioma/1.png are two patients), so no two unrelated images
 * ever share a study or a patient key.
 *
 * File paths are normalised first (backslashes, ./, //), so one image written two ways is
 * one image; a path that is already normal keeps the UIDs it always had.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { deterministicUid } from '../../core/dicom/uids.js';

export interface DatasetRow {
  /** Path relative to the dataset folder, normalised (normaliseFile). */
  readonly file: string;
  readonly label: number | undefined;
  readonly className: string;
  readonly patientId: string;
  readonly fold: number | undefined;
  /** 1-based CSV line, for messages. */
  readonly line: number;
}

export interface PlannedInstance extends DatasetRow {
  readonly dataset: string;
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopInstanceUid: string;
  readonly seriesNumber: number;
  readonly instanceNumber: number;
}

export interface DatasetPlan {
  readonly dataset: string;
  readonly dir: string;
  readonly instances: PlannedInstance[];
  /** Rows that cannot be loaded (bad path, empty class …), with the reason. */
  readonly rejected: { line: number; file: string; reason: string }[];
}

export class DatasetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatasetError';
  }
}

/** Minimal RFC 4180 line split: commas, double-quoted fields with "" escapes. */
export function splitCsvLine(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"' && cur === '') quoted = true;
    else if (c === ',') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out.map((s) => s.trim());
}

// LO (PatientID) allows 64 characters and no backslash or control characters (PS3.5 §6.2).
// eslint-disable-next-line no-control-regex -- control characters are exactly what LO forbids
const PATIENT_RE = /^[^\\\u0000-\u001f]{1,64}$/;

/** The one spelling of a relative path: `/` separators, no `.` or empty segments. */
export function normaliseFile(file: string): string {
  return path.posix.normalize(file.replace(/\\/g, '/')).replace(/^(\.\/)+/, '');
}

/** `raw` as in the CSV, `file` normalised. */
function checkFile(raw: string, file: string): string | undefined {
  if (!raw) return 'empty file column';
  // '..' is refused as written, before normalising could fold a/../b into b.
  if (path.posix.isAbsolute(file) || /^[A-Za-z]:/.test(file) || raw.split(/[\\/]/).includes('..') || file === '.') {
    return 'file must be a relative path inside the dataset folder';
  }
  if (!/\.(jpe?g|png)$/i.test(file)) return 'file must be a .jpg/.jpeg/.png image';
  return undefined;
}

/**
 * Patient of a row without patient_id: the whole relative path without extension (the stem
 * alone would make glioma/1.png and meningioma/1.png one patient). Past the 64 characters of
 * LO, its start and a hash of the whole.
 */
export function patientFromFile(file: string): string {
  const id = file.replace(/\.[^./]+$/, '');
  if (id.length <= 64) return id;
  return `${id.slice(0, 31)}~${createHash('sha256').update(id).digest('hex').slice(0, 32)}`;
}

export function parseLabelsCsv(text: string): { rows: DatasetRow[]; rejected: DatasetPlan['rejected'] } {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const header = splitCsvLine(lines[0] ?? '').map((h) => h.toLowerCase());
  const col = (name: string) => header.indexOf(name);
  const iFile = col('file');
  const iLabel = col('label');
  const iClass = col('class_name');
  const iPatient = col('patient_id');
  const iFold = col('fold');
  if (iFile < 0 || iClass < 0) {
    throw new DatasetError(`labels.csv header must have file and class_name columns (file,label,class_name[,patient_id,fold]); got: ${lines[0] ?? '(empty)'}`);
  }
  const rows: DatasetRow[] = [];
  const rejected: DatasetPlan['rejected'] = [];
  for (let n = 1; n < lines.length; n++) {
    const raw = lines[n]!;
    if (raw.trim() === '') continue;
    const f = splitCsvLine(raw);
    const line = n + 1;
    const written = f[iFile] ?? '';
    const file = normaliseFile(written);
    const bad = (reason: string) => rejected.push({ line, file: written, reason });
    const fileProblem = checkFile(written, file);
    if (fileProblem) {
      bad(fileProblem);
      continue;
    }
    const className = f[iClass] ?? '';
    // eslint-disable-next-line no-control-regex -- control characters are exactly what LO forbids
    if (!className || className.length > 64 || /[\\\u0000-\u001f]/.test(className)) {
      bad('class_name must be 1–64 printable characters');
      continue;
    }
    const labelText = iLabel >= 0 ? (f[iLabel] ?? '') : '';
    const label = labelText === '' ? undefined : Number(labelText);
    if (label !== undefined && !Number.isInteger(label)) {
      bad(`label must be an integer, got ${labelText}`);
      continue;
    }
    const patientText = iPatient >= 0 ? (f[iPatient] ?? '') : '';
    const patientId = patientText || patientFromFile(file);
    if (!PATIENT_RE.test(patientId)) {
      bad('patient_id must be 1–64 characters without backslash or control characters');
      continue;
    }
    const foldText = iFold >= 0 ? (f[iFold] ?? '') : '';
    const fold = foldText === '' ? undefined : Number(foldText);
    if (fold !== undefined && !Number.isInteger(fold)) {
      bad(`fold must be an integer, got ${foldText}`);
      continue;
    }
    rows.push({ file, label, className, patientId, fold, line });
  }
  return { rows, rejected };
}

/** UIDs and numbers for every row (see the module comment). */
export function planDataset(dataset: string, dir: string, rows: DatasetRow[], rejected: DatasetPlan['rejected'] = []): DatasetPlan {
  const classOrder = new Map<string, string[]>(); // patient → classes in order of first appearance
  const seriesCount = new Map<string, number>(); // series key → instances so far
  const seenFiles = new Map<string, number>(); // file → its line
  const instances: PlannedInstance[] = [];
  const rej = [...rejected];
  for (const r of rows) {
    const first = seenFiles.get(r.file);
    if (first !== undefined) {
      rej.push({ line: r.line, file: r.file, reason: `duplicate file row (the same image as line ${first})` });
      continue;
    }
    seenFiles.set(r.file, r.line);
    const classes = classOrder.get(r.patientId) ?? [];
    if (!classes.includes(r.className)) classes.push(r.className);
    classOrder.set(r.patientId, classes);
    const seriesKey = `${r.patientId}\u0000${r.className}`;
    const instanceNumber = (seriesCount.get(seriesKey) ?? 0) + 1;
    seriesCount.set(seriesKey, instanceNumber);
    instances.push({
      ...r,
      dataset,
      studyInstanceUid: deterministicUid('study', dataset, r.patientId),
      seriesInstanceUid: deterministicUid('series', dataset, r.patientId, r.className),
      sopInstanceUid: deterministicUid('instance', dataset, r.file),
      seriesNumber: classes.indexOf(r.className) + 1,
      instanceNumber,
    });
  }
  return { dataset, dir, instances, rejected: rej };
}

/**
 * A sample folder can say which dataset it is part of in dataset.json ({"name": "figshare-cheng"}):
 * then its images get the same UIDs as in a full load of that dataset.
 */
async function datasetNameFromFolder(dir: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(path.join(dir, 'dataset.json'), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const name = (JSON.parse(text) as { name?: unknown }).name;
    if (typeof name === 'string') return name;
  } catch {
    /* fall through */
  }
  throw new DatasetError(`${path.join(dir, 'dataset.json')} must be JSON with a string "name"`);
}

export async function readDataset(dir: string, datasetName?: string): Promise<DatasetPlan> {
  const csvPath = path.join(dir, 'labels.csv');
  let text: string;
  try {
    text = await readFile(csvPath, 'utf8');
  } catch (err) {
    throw new DatasetError(`cannot read ${csvPath}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const name = datasetName ?? (await datasetNameFromFolder(dir)) ?? path.basename(path.resolve(dir));
  if (!/^[A-Za-z0-9._-]{1,48}$/.test(name)) throw new DatasetError(`dataset name must be 1–48 letters, digits, . _ or -: ${name}`);
  const { rows, rejected } = parseLabelsCsv(text);
  return planDataset(name, dir, rows, rejected);
}

export interface Filters {
  readonly patients?: ReadonlySet<string>;
  readonly folds?: ReadonlySet<number>;
  readonly classes?: ReadonlySet<string>;
  readonly limit?: number;
}

/** A filter value that matches no row of labels.csv, with the values there are (when few). */
export interface UnmatchedFilter {
  readonly filter: '--patients' | '--folds' | '--classes';
  readonly values: string[];
  readonly known?: string[];
}

const KNOWN_LISTED = 20;

/** Each value of each filter that matches no row at all (alone, not combined with the other filters). */
export function unmatchedFilters(plan: DatasetPlan, f: Filters): UnmatchedFilter[] {
  const out: UnmatchedFilter[] = [];
  const check = <T extends string | number>(filter: UnmatchedFilter['filter'], wanted: ReadonlySet<T> | undefined, have: Set<T>) => {
    if (!wanted) return;
    const values = [...wanted].filter((v) => !have.has(v));
    if (values.length === 0) return;
    const known = [...have].sort((a, b) => (typeof a === 'number' && typeof b === 'number' ? a - b : String(a).localeCompare(String(b))));
    out.push({ filter, values: values.map(String), ...(known.length <= KNOWN_LISTED ? { known: known.map(String) } : {}) });
  };
  check('--patients', f.patients, new Set(plan.instances.map((i) => i.patientId)));
  check('--folds', f.folds, new Set(plan.instances.flatMap((i) => (i.fold === undefined ? [] : [i.fold]))));
  check('--classes', f.classes, new Set(plan.instances.map((i) => i.className)));
  return out;
}

/** Apply filters in CSV order; limit last. */
export function selectInstances(plan: DatasetPlan, f: Filters): PlannedInstance[] {
  const out = plan.instances.filter(
    (i) =>
      (!f.patients || f.patients.has(i.patientId)) &&
      (!f.folds || (i.fold !== undefined && f.folds.has(i.fold))) &&
      (!f.classes || f.classes.has(i.className)),
  );
  return f.limit !== undefined ? out.slice(0, f.limit) : out;
}
