/**
 * The per-process in-memory copy of one version's vectors, for exact search.
 *
 * Layout: one row-major Float32Array (n × dims, grown by doubling) plus, per row, small
 * integer ids of the fields filters use (strings interned into per-field dictionaries),
 * so a filtered scan compares integers, not strings, in its inner loop.
 *
 * Kept current incrementally: rows written since the last refresh (seq > cache.seq) are
 * read and placed (an updated UID overwrites its row); a delete anywhere bumps the
 * version's generation, and the cache then reloads in full (deletes are rare).
 */
import { l2sqRow, TopK } from '../distance.js';
import { asList } from '../validate.js';
import type { KnnFilter } from '../types.js';

/** Interns strings of one field to small integers; 0 means "absent". */
class Dictionary {
  private readonly ids = new Map<string, number>();
  id(s: string | null | undefined): number {
    if (s === null || s === undefined) return 0;
    let id = this.ids.get(s);
    if (id === undefined) {
      id = this.ids.size + 1;
      this.ids.set(s, id);
    }
    return id;
  }
  /** Ids of known values (unknown values cannot match any row, so they are dropped). */
  lookup(values: readonly string[]): Set<number> {
    const out = new Set<number>();
    for (const v of values) {
      const id = this.ids.get(v);
      if (id !== undefined) out.add(id);
    }
    return out;
  }
}

export interface CacheRow {
  sop: string;
  study: string;
  series: string;
  modality: string | null;
  body_part: string | null;
  patient_key: string | null;
  vector: Buffer;
  seq: number;
}

const FIELDS = ['study', 'series', 'modality', 'bodyPart', 'patientKey'] as const;
type Field = (typeof FIELDS)[number];

export class MatrixCache {
  seq = 0;
  generation = -1;
  private n = 0;
  private capacity = 0;
  private matrix = new Float32Array(0);
  private uids: string[] = [];
  private readonly rowOf = new Map<string, number>();
  private readonly dict: Record<Field, Dictionary> = {
    study: new Dictionary(),
    series: new Dictionary(),
    modality: new Dictionary(),
    bodyPart: new Dictionary(),
    patientKey: new Dictionary(),
  };
  private col: Record<Field, Int32Array> = emptyCols(0);

  constructor(readonly dims: number) {}

  get size(): number {
    return this.n;
  }

  /** Apply rows written after this.seq, in seq order. */
  apply(rows: Iterable<CacheRow>): void {
    for (const r of rows) {
      let row = this.rowOf.get(r.sop);
      if (row === undefined) {
        if (this.n === this.capacity) this.grow();
        row = this.n++;
        this.rowOf.set(r.sop, row);
        this.uids[row] = r.sop;
      }
      if (r.vector.byteLength !== this.dims * 4) continue; // cannot happen via our writer; never poison the matrix
      new Uint8Array(this.matrix.buffer, row * this.dims * 4, this.dims * 4).set(r.vector);
      this.col.study[row] = this.dict.study.id(r.study);
      this.col.series[row] = this.dict.series.id(r.series);
      this.col.modality[row] = this.dict.modality.id(r.modality);
      this.col.bodyPart[row] = this.dict.bodyPart.id(r.body_part);
      this.col.patientKey[row] = this.dict.patientKey.id(r.patient_key);
      if (r.seq > this.seq) this.seq = r.seq;
    }
  }

  /** Exact k nearest rows to q under a filter: [{uid, distance}] ascending. */
  search(q: Float32Array, k: number, filter: KnnFilter | undefined): Array<{ uid: string; distance: number }> {
    const keep = this.compileFilter(filter);
    const uids = this.uids;
    // Equal distances (the same pixels stored twice) rank by UID, as documented, also at
    // the k-th place: rows follow insertion order, which a reindex changes.
    const top = new TopK(k, (r1, r2) => uids[r1]! > uids[r2]!);
    const dims = this.dims;
    const m = this.matrix;
    for (let row = 0; row < this.n; row++) {
      if (keep !== undefined && !keep(row)) continue;
      const d2 = l2sqRow(m, row, dims, q);
      if (d2 <= top.worst) top.push(d2, row);
    }
    return top.sorted().map(({ d2, row }) => ({ uid: uids[row]!, distance: Math.sqrt(d2) }));
  }

  /** A row predicate, or undefined when the filter constrains nothing. */
  private compileFilter(f: KnnFilter | undefined): ((row: number) => boolean) | undefined {
    if (!f) return undefined;
    const tests: Array<(row: number) => boolean> = [];
    const include = (field: Field, values: readonly string[]) => {
      if (values.length === 0) return;
      const ids = this.dict[field].lookup(values);
      const col = this.col[field];
      tests.push((row) => ids.has(col[row]!));
    };
    const exclude = (field: Field, values: readonly string[] | undefined) => {
      if (!values || values.length === 0) return;
      const ids = this.dict[field].lookup(values);
      if (ids.size === 0) return;
      const col = this.col[field];
      tests.push((row) => !ids.has(col[row]!));
    };
    include('modality', asList(f.modality));
    include('bodyPart', asList(f.bodyPartExamined));
    exclude('study', f.excludeStudyUids);
    exclude('series', f.excludeSeriesUids);
    exclude('patientKey', f.excludePatientKeys);
    if (f.excludeSopInstanceUids && f.excludeSopInstanceUids.length > 0) {
      const rows = new Set<number>();
      for (const uid of f.excludeSopInstanceUids) {
        const r = this.rowOf.get(uid);
        if (r !== undefined) rows.add(r);
      }
      if (rows.size) tests.push((row) => !rows.has(row));
    }
    if (tests.length === 0) return undefined;
    if (tests.length === 1) return tests[0];
    return (row) => {
      for (const t of tests) if (!t(row)) return false;
      return true;
    };
  }

  private grow(): void {
    const cap = Math.max(1024, this.capacity * 2);
    const m = new Float32Array(cap * this.dims);
    m.set(this.matrix);
    this.matrix = m;
    const cols = emptyCols(cap);
    for (const f of FIELDS) cols[f].set(this.col[f]);
    this.col = cols;
    this.capacity = cap;
  }
}

function emptyCols(n: number): Record<Field, Int32Array> {
  return {
    study: new Int32Array(n),
    series: new Int32Array(n),
    modality: new Int32Array(n),
    bodyPart: new Int32Array(n),
    patientKey: new Int32Array(n),
  };
}
