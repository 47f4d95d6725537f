/**
 * Embedded vector index: SQLite (better-sqlite3, WAL) on disk, exact brute-force L2 search
 * over an in-memory matrix per process. The default when no Elasticsearch is configured.
 *
 * - Survives restarts: SQLite is the store; the matrix is only a cache rebuilt on demand.
 * - Shared by processes: the gateway and the workers open the same file. WAL lets readers
 *   and one writer proceed together; writers wait on busy_timeout. Before every search a
 *   handle reads its version's (seq, generation) counters (one primary-key lookup, µs) and
 *   pulls only the rows written since, so a vector written by a worker is searchable by the
 *   gateway on its next query.
 * - Exact: every vector is compared, so recall is 1 by construction; 10k × 256 dims takes a
 *   few ms in this loop (see docs/index.md for measured figures).
 *
 * better-sqlite3 is synchronous: calls block the event loop for their duration (a bulk
 * write of 64 docs is < 1 ms; a cold load of 100k vectors ≈ 100 ms, once per process).
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { IndexError, toIndexError } from '../errors.js';
import { MatrixCache, type CacheRow } from './matrix-cache.js';
import { SCHEMA_SQL, SCHEMA_VERSION, type DocRow, type VersionRow } from './schema.js';
import { assertDims, assertK, assertVersionName, docProblem, toVector } from '../validate.js';
import type { KnnHit, KnnOptions, StudyDocRef, UpsertResult, VectorDoc, VectorDocMeta, VectorIndex, WriteOptions } from '../types.js';

export interface EmbeddedIndexOptions {
  /** Path of the SQLite file (created with its directory if missing). */
  readonly path: string;
  /** How long a writer waits for another process's write lock before failing (transiently). */
  readonly busyTimeoutMs?: number;
}

/** How many UIDs per IN (…) query: well under SQLite's variable limit (32766). */
const IN_CHUNK = 500;

export class EmbeddedIndex implements VectorIndex {
  readonly backend = 'embedded' as const;
  private readonly db: Database.Database;
  private bound: VersionRow | undefined;
  private readonly caches = new Map<string, MatrixCache>();
  private closed = false;

  constructor(readonly options: EmbeddedIndexOptions) {
    mkdirSync(dirname(options.path), { recursive: true });
    try {
      this.db = new Database(options.path);
      this.db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5_000}`);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.exec(SCHEMA_SQL);
      const v = this.db.prepare("SELECT value FROM meta WHERE key = 'schema'").get() as { value: string } | undefined;
      if (!v) this.db.prepare("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)").run(String(SCHEMA_VERSION));
      else if (Number(v.value) > SCHEMA_VERSION) {
        throw new IndexError('BACKEND', `${options.path} was written by a newer schema (${v.value}); this build reads ${SCHEMA_VERSION}`, false);
      }
    } catch (err) {
      throw toIndexError(err, `cannot open embedded index ${options.path}`);
    }
  }

  async ensure(dims: number, modelVersion: string): Promise<void> {
    assertDims(dims);
    const storage = assertVersionName(modelVersion);
    this.run('ensure', () =>
      this.db.transaction(() => {
        const existing = this.db.prepare('SELECT version, storage, dims, seq, generation FROM versions WHERE storage = ?').get(storage) as VersionRow | undefined;
        if (existing) {
          if (existing.version !== modelVersion) {
            throw new IndexError('BAD_INPUT', `model version ${modelVersion} maps to the same storage as ${existing.version}; use a distinct version string`);
          }
          if (existing.dims !== dims) {
            throw new IndexError('DIMS_MISMATCH', `model version ${modelVersion} is stored with ${existing.dims} dims, not ${dims}`);
          }
        } else {
          // A version dropped and created again must not reuse its counters: a process that cached
          // the old incarnation would see equal counters and keep serving the old rows. Each
          // incarnation's generation starts in a range of its own (deletes bump it by 1).
          const { value } = this.db
            .prepare(
              "INSERT INTO meta (key, value) VALUES ('incarnation', '1') ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1 RETURNING value",
            )
            .get() as { value: string | number };
          this.db
            .prepare('INSERT INTO versions (version, storage, dims, created_at, generation) VALUES (?, ?, ?, ?, ?)')
            .run(modelVersion, storage, dims, new Date().toISOString(), Number(value) * 2 ** 32);
        }
        this.db.prepare("INSERT OR IGNORE INTO meta (key, value) VALUES ('live', ?)").run(modelVersion);
      }).immediate(),
    );
    this.bound = this.versionRow(modelVersion);
  }

  async upsert(docs: readonly VectorDoc[], _opts?: WriteOptions): Promise<UpsertResult> {
    const v = this.requireBound();
    const failed: Array<{ sopInstanceUid: string; reason: string; transient: boolean }> = [];
    const good: Array<{ doc: VectorDoc; blob: Buffer }> = [];
    // Last write wins inside one batch, as in an Elasticsearch bulk request.
    const seen = new Map<string, number>();
    for (const doc of docs) {
      const problem = docProblem(doc, v.dims, v.version);
      if (problem) {
        failed.push({ sopInstanceUid: String(doc.sopInstanceUid), reason: problem, transient: false });
        continue;
      }
      const vec = toVector(doc.vector, v.dims);
      const entry = { doc, blob: Buffer.from(vec.buffer, vec.byteOffset, vec.byteLength) };
      const at = seen.get(doc.sopInstanceUid);
      if (at === undefined) {
        seen.set(doc.sopInstanceUid, good.length);
        good.push(entry);
      } else good[at] = entry;
    }
    if (good.length === 0) return { written: 0, failed };
    this.run('upsert', () =>
      this.db.transaction(() => {
        const row = this.db
          .prepare('UPDATE versions SET seq = seq + ? WHERE storage = ? RETURNING seq')
          .get(good.length, v.storage) as { seq: number } | undefined;
        // Dropped under us (`cbmir reindex --drop-old` while this worker still runs the old model).
        if (!row) throw new IndexError('UNKNOWN_VERSION', `model version ${v.version} was dropped from the index; this worker runs an old model`);
        const { seq } = row;
        const stmt = this.db.prepare(
          `INSERT INTO docs (storage, sop, study, series, sop_class, modality, body_part, label, patient_key, frame, model_version, indexed_at, vector, seq)
           VALUES (@storage, @sop, @study, @series, @sopClass, @modality, @bodyPart, @label, @patientKey, @frame, @modelVersion, @indexedAt, @vector, @seq)
           ON CONFLICT (storage, sop) DO UPDATE SET study = excluded.study, series = excluded.series, sop_class = excluded.sop_class,
             modality = excluded.modality, body_part = excluded.body_part, label = excluded.label, patient_key = excluded.patient_key,
             frame = excluded.frame, model_version = excluded.model_version, indexed_at = excluded.indexed_at, vector = excluded.vector, seq = excluded.seq`,
        );
        let s = seq - good.length;
        for (const { doc, blob } of good) {
          stmt.run({
            storage: v.storage,
            sop: doc.sopInstanceUid,
            study: doc.studyInstanceUid,
            series: doc.seriesInstanceUid,
            sopClass: doc.sopClassUid ?? null,
            modality: doc.modality ?? null,
            bodyPart: doc.bodyPartExamined ?? null,
            label: doc.label ?? null,
            patientKey: doc.patientKey ?? null,
            frame: doc.frame ?? null,
            modelVersion: doc.modelVersion,
            indexedAt: doc.indexedAt,
            vector: blob,
            seq: ++s,
          });
        }
      }).immediate(),
    );
    return { written: good.length, failed };
  }

  async get(sopInstanceUid: string): Promise<VectorDoc | undefined> {
    const v = this.target();
    if (!v) return undefined;
    const row = this.run('get', () => this.db.prepare('SELECT * FROM docs WHERE storage = ? AND sop = ?').get(v.storage, sopInstanceUid) as DocRow | undefined);
    return row ? rowToDoc(row) : undefined;
  }

  async has(sopInstanceUids: readonly string[]): Promise<Set<string>> {
    const out = new Set<string>();
    const v = this.target();
    if (!v) return out;
    this.run('has', () => {
      for (let i = 0; i < sopInstanceUids.length; i += IN_CHUNK) {
        const chunk = sopInstanceUids.slice(i, i + IN_CHUNK);
        const rows = this.db
          .prepare(`SELECT sop FROM docs WHERE storage = ? AND sop IN (${chunk.map(() => '?').join(',')})`)
          .all(v.storage, ...chunk) as Array<{ sop: string }>;
        for (const r of rows) out.add(r.sop);
      }
    });
    return out;
  }

  async knn(vector: Float32Array | readonly number[], opts: KnnOptions): Promise<KnnHit[]> {
    const k = assertK(opts);
    const v = this.target();
    if (!v) throw new IndexError('NOT_READY', 'the index holds no model version yet');
    const q = toVector(vector, v.dims, 'query vector');
    const cache = this.refreshed(v.storage);
    const ranked = cache.search(q, k, opts.filter);
    const docs = this.loadMeta(v.storage, ranked.map((r) => r.uid));
    const hits: KnnHit[] = [];
    for (const r of ranked) {
      const doc = docs.get(r.uid);
      if (doc) hits.push({ doc, distance: r.distance }); // deleted between scan and load: skip
    }
    return hits;
  }

  async count(): Promise<number> {
    const v = this.target();
    if (!v) return 0;
    return this.run('count', () => (this.db.prepare('SELECT count(*) AS n FROM docs WHERE storage = ?').get(v.storage) as { n: number }).n);
  }

  async delete(sopInstanceUid: string, _opts?: WriteOptions): Promise<boolean> {
    const v = this.requireBound();
    return this.run('delete', () =>
      this.db.transaction(() => {
        const r = this.db.prepare('DELETE FROM docs WHERE storage = ? AND sop = ?').run(v.storage, sopInstanceUid);
        if (r.changes > 0) this.db.prepare('UPDATE versions SET generation = generation + 1 WHERE storage = ?').run(v.storage);
        return r.changes > 0;
      }).immediate(),
    );
  }

  async deleteMany(sopInstanceUids: readonly string[], _opts?: WriteOptions): Promise<number> {
    const v = this.requireBound();
    if (sopInstanceUids.length === 0) return 0;
    return this.run('deleteMany', () =>
      this.db.transaction(() => {
        let n = 0;
        for (let i = 0; i < sopInstanceUids.length; i += IN_CHUNK) {
          const chunk = sopInstanceUids.slice(i, i + IN_CHUNK);
          n += this.db.prepare(`DELETE FROM docs WHERE storage = ? AND sop IN (${chunk.map(() => '?').join(',')})`).run(v.storage, ...chunk).changes;
        }
        if (n > 0) this.db.prepare('UPDATE versions SET generation = generation + 1 WHERE storage = ?').run(v.storage);
        return n;
      }).immediate(),
    );
  }

  async listStudy(studyInstanceUid: string, max: number): Promise<StudyDocRef[]> {
    const v = this.target();
    if (!v) return [];
    const rows = this.run('listStudy', () =>
      this.db.prepare('SELECT sop, series, indexed_at FROM docs WHERE storage = ? AND study = ? LIMIT ?').all(v.storage, studyInstanceUid, max) as Array<{
        sop: string;
        series: string;
        indexed_at: string;
      }>,
    );
    return rows.map((r) => ({ sopInstanceUid: r.sop, seriesInstanceUid: r.series, indexedAt: r.indexed_at }));
  }

  async studyUids(): Promise<string[]> {
    const v = this.target();
    if (!v) return [];
    return this.run('studyUids', () =>
      (this.db.prepare('SELECT DISTINCT study FROM docs WHERE storage = ?').all(v.storage) as Array<{ study: string }>).map((r) => r.study),
    );
  }

  async liveVersion(): Promise<string | undefined> {
    return this.run('liveVersion', () => (this.db.prepare("SELECT value FROM meta WHERE key = 'live'").get() as { value: string } | undefined)?.value);
  }

  async versions(): Promise<string[]> {
    return this.run('versions', () => (this.db.prepare('SELECT version FROM versions ORDER BY created_at, version').all() as Array<{ version: string }>).map((r) => r.version));
  }

  async swapAlias(modelVersion: string): Promise<void> {
    this.run('swapAlias', () =>
      this.db.transaction(() => {
        if (!this.versionRow(modelVersion)) throw new IndexError('UNKNOWN_VERSION', `model version ${modelVersion} has no storage; index it first`);
        this.db.prepare("INSERT INTO meta (key, value) VALUES ('live', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(modelVersion);
      }).immediate(),
    );
  }

  async dropVersion(modelVersion: string): Promise<void> {
    this.run('dropVersion', () =>
      this.db.transaction(() => {
        const row = this.versionRow(modelVersion);
        if (!row) return;
        const live = (this.db.prepare("SELECT value FROM meta WHERE key = 'live'").get() as { value: string } | undefined)?.value;
        if (live === modelVersion) throw new IndexError('BAD_INPUT', `model version ${modelVersion} is live; swap to another version first`);
        this.db.prepare('DELETE FROM docs WHERE storage = ?').run(row.storage);
        this.db.prepare('DELETE FROM versions WHERE storage = ?').run(row.storage);
      }).immediate(),
    );
    this.caches.delete(assertVersionName(modelVersion));
    if (this.bound?.version === modelVersion) this.bound = undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.caches.clear();
    this.db.close();
  }

  // ---- internals ----

  /** The version this handle reads: the bound one, else the live one (followed on every call). */
  private target(): VersionRow | undefined {
    if (this.bound) return this.bound;
    const live = this.run('live', () => (this.db.prepare("SELECT value FROM meta WHERE key = 'live'").get() as { value: string } | undefined)?.value);
    return live === undefined ? undefined : this.versionRow(live);
  }

  private requireBound(): VersionRow {
    if (!this.bound) throw new IndexError('NOT_READY', 'call ensure(dims, modelVersion) before writing');
    return this.bound;
  }

  private versionRow(modelVersion: string): VersionRow | undefined {
    return this.run('version', () =>
      this.db.prepare('SELECT version, storage, dims, seq, generation FROM versions WHERE version = ?').get(modelVersion) as VersionRow | undefined,
    );
  }

  /** The storage's cache, brought up to date with what any process committed. */
  private refreshed(storage: string): MatrixCache {
    return this.run('refresh', () => {
      const counters = this.db.prepare('SELECT dims, seq, generation FROM versions WHERE storage = ?').get(storage) as
        | { dims: number; seq: number; generation: number }
        | undefined;
      if (!counters) throw new IndexError('UNKNOWN_VERSION', 'the model version was dropped');
      let cache = this.caches.get(storage);
      if (!cache || cache.generation !== counters.generation || cache.dims !== counters.dims) {
        cache = new MatrixCache(counters.dims);
        cache.generation = counters.generation;
        // An unbound handle (the gateway's) follows the live version: after a swap, the previous
        // version's matrix would otherwise stay in memory for the life of the process.
        if (!this.bound) this.caches.clear();
        this.caches.set(storage, cache);
      }
      if (cache.seq < counters.seq) {
        const rows = this.db
          .prepare('SELECT sop, study, series, modality, body_part, patient_key, vector, seq FROM docs WHERE storage = ? AND seq > ? ORDER BY seq')
          .iterate(storage, cache.seq) as IterableIterator<CacheRow>;
        cache.apply(rows);
        // A write that committed between the counter read and the scan is picked up; one
        // that bumped seq without rows (all refused) must not make us rescan forever.
        if (cache.seq < counters.seq) cache.seq = counters.seq;
      }
      return cache;
    });
  }

  /** The hits' fields (no vectors), in one query per 500 UIDs. */
  private loadMeta(storage: string, uids: readonly string[]): Map<string, VectorDocMeta> {
    const out = new Map<string, VectorDocMeta>();
    if (uids.length === 0) return out;
    this.run('load', () => {
      for (let i = 0; i < uids.length; i += IN_CHUNK) {
        const chunk = uids.slice(i, i + IN_CHUNK);
        const rows = this.db
          .prepare(
            `SELECT sop, study, series, sop_class, modality, body_part, label, patient_key, frame, model_version, indexed_at
             FROM docs WHERE storage = ? AND sop IN (${chunk.map(() => '?').join(',')})`,
          )
          .all(storage, ...chunk) as Array<Omit<DocRow, 'vector' | 'seq'>>;
        for (const r of rows) out.set(r.sop, rowToMeta(r));
      }
    });
    return out;
  }

  /** Run a synchronous SQLite call, turning its errors into classified IndexErrors. */
  private run<T>(what: string, fn: () => T): T {
    if (this.closed) throw new IndexError('NOT_READY', 'the index is closed');
    try {
      return fn();
    } catch (err) {
      throw toIndexError(err, `embedded index ${what}`);
    }
  }
}

function rowToDoc(r: DocRow): VectorDoc {
  // Copy: the Buffer may not be 4-byte aligned, which a Float32Array view requires.
  const vector = new Float32Array(r.vector.byteLength / 4);
  new Uint8Array(vector.buffer).set(r.vector);
  return { ...rowToMeta(r), vector };
}

function rowToMeta(r: Omit<DocRow, 'vector' | 'seq'>): VectorDocMeta {
  return {
    sopInstanceUid: r.sop,
    studyInstanceUid: r.study,
    seriesInstanceUid: r.series,
    ...(r.sop_class !== null ? { sopClassUid: r.sop_class } : {}),
    ...(r.modality !== null ? { modality: r.modality } : {}),
    ...(r.body_part !== null ? { bodyPartExamined: r.body_part } : {}),
    ...(r.label !== null ? { label: r.label } : {}),
    ...(r.patient_key !== null ? { patientKey: r.patient_key } : {}),
    ...(r.frame !== null ? { frame: r.frame } : {}),
    modelVersion: r.model_version,
    indexedAt: r.indexed_at,
  };
}
