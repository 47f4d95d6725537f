/**
 * `cbmir load`: a dataset folder (images + labels.csv) → DICOM MR instances → STOW-RS
 * (through the gateway, or any DICOMweb root), or → .dcm files (--out), or → nothing
 * (--dry-run: convert and check only).
 *
 * Pipeline per batch: read image → decode exactly as stored (core/dicom/source-image) →
 * MR instance with the label block (core/dicom/mr-writer) → one multipart STOW request
 * per batch, `concurrency` batches in flight, retries on transient faults
 * (workers/load/stow). UIDs are deterministic (workers/load/dataset), so a re-run
 * re-sends the same instances and the PACS and the index dedupe them.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { writeMrInstance } from '../core/dicom/mr-writer.js';
import { decodeSourceImage } from '../core/dicom/source-image.js';
import {
  readDataset,
  selectInstances,
  unmatchedFilters,
  type Filters,
  type PlannedInstance,
  type UnmatchedFilter,
} from './load/dataset.js';
import { StowClient, type StowPart } from './load/stow.js';

export type LoadMode = 'send' | 'dry-run' | 'write';

export interface LoadOptions {
  readonly dir: string;
  readonly datasetName?: string;
  readonly mode: LoadMode;
  /** DICOMweb root for mode 'send'. */
  readonly url?: string;
  readonly authorization?: string | undefined;
  /** Folder for mode 'write': files <outDir>/<dataset>/<patient>/<SOP Instance UID>.dcm. */
  readonly outDir?: string;
  readonly filters?: Filters;
  readonly batchSize?: number;
  readonly concurrency?: number;
  readonly retries?: number;
  readonly timeoutMs?: number;
  /** YYYYMMDD for Study/Series/Content Date; default today (UTC). */
  readonly studyDate?: string;
  readonly onProgress?: (p: LoadProgress) => void;
  readonly signal?: AbortSignal;
}

export interface LoadProgress {
  readonly total: number;
  readonly done: number;
  readonly stored: number;
  readonly converted: number;
  readonly failed: number;
}

export interface ClassCounts {
  selected: number;
  converted: number;
  stored: number;
  failed: number;
}

export interface LoadSummary {
  readonly dataset: string;
  readonly mode: LoadMode;
  readonly target?: string;
  /** Rows in labels.csv that passed validation. */
  readonly rows: number;
  /** Rows refused while reading labels.csv (bad path, bad class …). */
  readonly rejectedRows: number;
  /** Those rows: labels.csv line, file, why (at most the first 100). */
  readonly rejected: readonly { readonly line: number; readonly file: string; readonly reason: string }[];
  /** Instances after filters and limit. */
  readonly selected: number;
  /** Filter values that match no row of labels.csv (a misspelt class, a fold that does not exist). */
  readonly unmatched?: UnmatchedFilter[];
  readonly converted: number;
  /** Sent in STOW requests (mode 'send'). */
  readonly sent: number;
  /** Stored per the STOW answers (mode 'send'), or written (mode 'write'). */
  readonly stored: number;
  readonly failed: number;
  readonly studies: number;
  readonly series: number;
  readonly byClass: Record<string, ClassCounts>;
  /** The first failures with their reasons (at most 100). */
  readonly failures: { file: string; reason: string }[];
  readonly elapsedMs: number;
  readonly imagesPerSecond: number;
  /** Why the run stopped before sending (or writing) every image: the target refused a batch as it would refuse them all, could not be reached, or a file could not be written. */
  readonly stopped?: string;
}

export const MAX_FAILURES_LISTED = 100;

/** Answers every later batch would get too: a wrong URL (404, 405) or a refused login (401, 403). */
const TARGET_REFUSED = new Set([401, 403, 404, 405]);

/** Batches in a row that got no HTTP answer (after their retries) before a run gives up on the target. */
export const MAX_UNREACHABLE_BATCHES = 3;

/** Whether YYYYMMDD names a day of the calendar (20250229 and 00000000 do not). */
export function isCalendarDate(v: string): boolean {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(v);
  if (!m) return false;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mo - 1];
  return y >= 1 && days !== undefined && d >= 1 && d <= days;
}

function todayUtc(): string {
  return new Date().toISOString().slice(0, 10).replace(/-/g, '');
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]/g, '_');
}

/** Convert one planned row into Part-10 bytes; throws with a reason on a bad image. */
export async function convertInstance(dir: string, inst: PlannedInstance, studyDate: string): Promise<Uint8Array> {
  const root = path.resolve(dir);
  const file = path.resolve(root, inst.file);
  if (!file.startsWith(root + path.sep)) throw new Error('file path leaves the dataset folder');
  let data: Buffer;
  try {
    data = await readFile(file);
  } catch (err) {
    throw new Error(`cannot read image: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const img = await decodeSourceImage(data);
  return writeMrInstance({
    pixels: img.pixels,
    rows: img.rows,
    cols: img.cols,
    bitsStored: img.bitsStored,
    studyInstanceUid: inst.studyInstanceUid,
    seriesInstanceUid: inst.seriesInstanceUid,
    sopInstanceUid: inst.sopInstanceUid,
    patientId: inst.patientId,
    patientName: `${inst.dataset}^${inst.patientId}`,
    studyDescription: inst.dataset,
    seriesDescription: `${inst.dataset} ${inst.className}`,
    seriesNumber: inst.seriesNumber,
    instanceNumber: inst.instanceNumber,
    studyDate,
    bodyPartExamined: 'BRAIN',
    derivationDescription: `cbmir load: ${inst.dataset}/${inst.file} (${img.format.toUpperCase()} ${img.rows}x${img.cols}, ${img.bitsStored}-bit, pixels as stored)`,
    ...(img.lossy ? { lossySource: { method: 'ISO_10918_1' } } : {}),
    label: {
      className: inst.className,
      ...(inst.label !== undefined ? { code: inst.label } : {}),
      dataset: inst.dataset,
      sourceFile: inst.file,
      ...(inst.fold !== undefined ? { fold: inst.fold } : {}),
    },
  });
}

/**
 * Why files cannot be written under `outDir` (created if missing), or undefined: checked before
 * anything is converted, so that a wrong --out fails at once rather than once per image.
 */
export function outDirProblem(outDir: string): string | undefined {
  try {
    mkdirSync(outDir, { recursive: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EEXIST' || code === 'ENOTDIR'
      ? `${outDir} is not a folder (a file is in the way)`
      : `cannot create ${outDir} (${code ?? (err as Error).message})`;
  }
  const probe = path.join(outDir, `.cbmir-load-${process.pid}.tmp`);
  try {
    writeFileSync(probe, 'cbmir load: writable?\n');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOTDIR'
      ? `${outDir} is not a folder (a file is in the way)`
      : `cannot write in ${outDir} (${code ?? (err as Error).message})`;
  } finally {
    rmSync(probe, { force: true });
  }
  return undefined;
}

/**
 * The file of one instance under --out. Named by its SOP Instance UID, unique per (dataset, file):
 * a file stem is not (t1/slice_001.png and t2/slice_001.png of one patient, a.png next to a.jpg).
 */
export function outputFile(outDir: string, inst: PlannedInstance): string {
  return path.join(outDir, safeName(inst.dataset), safeName(inst.patientId), `${inst.sopInstanceUid}.dcm`);
}

export async function runLoad(o: LoadOptions): Promise<LoadSummary> {
  const started = performance.now();
  const plan = await readDataset(o.dir, o.datasetName);
  const selected = selectInstances(plan, o.filters ?? {});
  const studyDate = o.studyDate ?? todayUtc();
  if (!isCalendarDate(studyDate)) throw new Error(`study date must be a date YYYYMMDD, got ${studyDate}`);
  const batchSize = Math.max(1, o.batchSize ?? 16);
  const concurrency = Math.max(1, o.concurrency ?? 4);
  if (o.mode === 'send' && !o.url) throw new Error('a DICOMweb URL is needed to send');
  if (o.mode === 'write' && !o.outDir) throw new Error('an output folder is needed to write files');

  const byClass: Record<string, ClassCounts> = {};
  for (const i of selected) (byClass[i.className] ??= { selected: 0, converted: 0, stored: 0, failed: 0 }).selected++;
  const failures: { file: string; reason: string }[] = [];
  let converted = 0;
  let sent = 0;
  let stored = 0;
  let failed = 0;
  let done = 0;
  const progress = () => o.onProgress?.({ total: selected.length, done, stored, converted, failed });
  const fail = (inst: PlannedInstance, reason: string) => {
    failed++;
    byClass[inst.className]!.failed++;
    if (failures.length < MAX_FAILURES_LISTED) failures.push({ file: inst.file, reason });
  };
  const ok = (inst: PlannedInstance) => {
    stored++;
    byClass[inst.className]!.stored++;
  };

  // Named by the instance's deterministic SOP Instance UID (outputFile): no two images of a run
  // share a name (planDataset refuses a file row twice), and a file from an earlier run is the
  // same instance, replaced as a re-run re-sends it to a PACS.
  const writeOut = async (inst: PlannedInstance, bytes: Uint8Array) => {
    const file = outputFile(o.outDir!, inst);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, bytes);
  };

  const client = o.mode === 'send' ? new StowClient({ url: o.url!, authorization: o.authorization, retries: o.retries, timeoutMs: o.timeoutMs, connections: concurrency }) : undefined;
  let stopped: string | undefined;
  let unreachable = 0;
  let next = 0;
  const takeBatch = () => {
    const batch = selected.slice(next, next + batchSize);
    next += batch.length;
    return batch;
  };
  const runBatch = async (batch: PlannedInstance[]) => {
    const parts: (StowPart & { inst: PlannedInstance })[] = [];
    for (const inst of batch) {
      // A write that failed (a full disk, a folder that cannot be written) fails every image alike.
      if (o.mode === 'write' && stopped) break;
      try {
        const bytes = await convertInstance(plan.dir, inst, studyDate);
        converted++;
        byClass[inst.className]!.converted++;
        if (o.mode === 'write') {
          try {
            await writeOut(inst, bytes);
          } catch (err) {
            const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
            stopped ??= `writing ${outputFile(o.outDir!, inst)} failed (${why}): every image would fail alike, so no more were written`;
            throw new Error(`cannot write: ${why}`);
          }
          ok(inst);
          done++;
        } else if (o.mode === 'dry-run') {
          done++;
        } else {
          parts.push({ sopInstanceUid: inst.sopInstanceUid, bytes, inst });
        }
      } catch (err) {
        fail(inst, err instanceof Error ? err.message : String(err));
        done++;
      }
    }
    if (client && parts.length > 0) {
      sent += parts.length;
      const outcome = await client.store(parts, o.signal);
      for (const p of parts) {
        if (outcome.stored.has(p.sopInstanceUid)) ok(p.inst);
        else fail(p.inst, outcome.failed.get(p.sopInstanceUid) ?? 'not stored');
        done++;
      }
      const reason = outcome.failed.values().next().value ?? `HTTP ${outcome.status}`;
      if (TARGET_REFUSED.has(outcome.status)) stopped ??= `${reason}: every batch would get that answer, so no more were sent`;
      else if (!outcome.networkError) unreachable = 0;
      else if (++unreachable >= MAX_UNREACHABLE_BATCHES)
        stopped ??= `${MAX_UNREACHABLE_BATCHES} batches in a row got no answer (${reason}): the target looks down or unreachable, so no more were sent`;
    }
    progress();
  };
  const worker = async () => {
    while (next < selected.length && !o.signal?.aborted && !stopped) await runBatch(takeBatch());
  };
  try {
    progress();
    // One batch alone first: a wrong URL or login, or a target that is down, shows in its answer
    // before the other batches are converted and sent.
    if (client && selected.length > 0) await runBatch(takeBatch());
    await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, Math.ceil(selected.length / batchSize))) }, worker));
  } finally {
    await client?.close();
  }
  const elapsedMs = performance.now() - started;
  const unmatched = unmatchedFilters(plan, o.filters ?? {});
  return {
    dataset: plan.dataset,
    mode: o.mode,
    ...(o.mode === 'send' ? { target: o.url } : o.mode === 'write' ? { target: o.outDir } : {}),
    rows: plan.instances.length,
    rejectedRows: plan.rejected.length,
    rejected: plan.rejected.slice(0, 100),
    selected: selected.length,
    ...(unmatched.length > 0 ? { unmatched } : {}),
    converted,
    sent,
    stored,
    failed,
    studies: new Set(selected.map((i) => i.studyInstanceUid)).size,
    series: new Set(selected.map((i) => i.seriesInstanceUid)).size,
    byClass,
    failures,
    elapsedMs: Math.round(elapsedMs),
    imagesPerSecond: Number(((selected.length * 1000) / Math.max(1, elapsedMs)).toFixed(1)),
    ...(stopped ? { stopped } : {}),
  };
}
