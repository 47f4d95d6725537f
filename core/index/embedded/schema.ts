/**
 * SQLite schema of the embedded index (one database file per index base name).
 *
 *   versions  one row per model version: its storage name, dims, and two counters the
 *             per-process caches poll before every search:
 *               seq         bumped by every upsert (rows carry the seq they were written at)
 *               generation  bumped by every delete (a cache then reloads in full)
 *   meta      key/value; 'live' = the model version queries use (the "alias")
 *   docs      one row per (storage, SOP Instance UID); the vector as a little-endian
 *             float32 BLOB (a rowid table: WITHOUT ROWID suits rows far smaller than
 *             a 1 KiB vector)
 *
 * WAL mode: readers (gateway) never block the writer (worker) and vice versa; writers
 * queue on busy_timeout. synchronous=NORMAL is durable across process crashes (the WAL
 * is fsynced at checkpoints; a power cut can lose the last transactions, which the
 * reconciler re-indexes).
 */
export const SCHEMA_VERSION = 1;

export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS versions (
  version    TEXT PRIMARY KEY,
  storage    TEXT NOT NULL UNIQUE,
  dims       INTEGER NOT NULL,
  seq        INTEGER NOT NULL DEFAULT 0,
  generation INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS docs (
  storage       TEXT NOT NULL,
  sop           TEXT NOT NULL,
  study         TEXT NOT NULL,
  series        TEXT NOT NULL,
  sop_class     TEXT,
  modality      TEXT,
  body_part     TEXT,
  label         TEXT,
  patient_key   TEXT,
  frame         INTEGER,
  model_version TEXT NOT NULL,
  indexed_at    TEXT NOT NULL,
  vector        BLOB NOT NULL,
  seq           INTEGER NOT NULL,
  PRIMARY KEY (storage, sop)
);
CREATE INDEX IF NOT EXISTS docs_by_seq ON docs (storage, seq);
CREATE INDEX IF NOT EXISTS docs_by_study ON docs (storage, study);
`;

/** Row shape as SQLite returns it. */
export interface DocRow {
  sop: string;
  study: string;
  series: string;
  sop_class: string | null;
  modality: string | null;
  body_part: string | null;
  label: string | null;
  patient_key: string | null;
  frame: number | null;
  model_version: string;
  indexed_at: string;
  vector: Buffer;
  seq: number;
}

export interface VersionRow {
  version: string;
  storage: string;
  dims: number;
  seq: number;
  generation: number;
}
