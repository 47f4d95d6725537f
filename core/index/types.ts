/**
 * The vector index contract: one interface, two backends (Elasticsearch for a cluster,
 * an embedded SQLite store for one machine), the same answers on the same data.
 *
 * Storage is versioned by model version: vectors from different models are not
 * comparable, so each model version gets its own storage and a "live" pointer (an
 * alias in Elasticsearch, a row in the embedded store) names the one queries use.
 * A new model is indexed beside the old one and swapped in atomically (`cbmir reindex`).
 *
 * A handle is either *bound* to a version (after `ensure(dims, modelVersion)`: workers,
 * reindex; reads and writes then target that version) or *unbound* (the gateway: reads
 * follow the live version, even when it is swapped while the process runs; writes
 * refuse until `ensure` is called).
 */

/** One indexed image. The document id is the SOP Instance UID. No names or IDs of patients. */
export interface VectorDoc {
  readonly sopInstanceUid: string;
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopClassUid?: string;
  readonly modality?: string;
  readonly bodyPartExamined?: string;
  /** Dataset label (e.g. tumour class of a research dataset) when the source provides one. */
  readonly label?: string;
  /** Salted hash of PatientID (core/index/patient-key.ts): lets excludeSamePatient work without PHI. */
  readonly patientKey?: string;
  /** Frame the vector was computed from (multi-frame instances: one representative frame). */
  readonly frame?: number;
  readonly modelVersion: string;
  /** ISO 8601 time the vector was written. */
  readonly indexedAt: string;
  /** The embedding, float32, length = dims of the model. */
  readonly vector: Float32Array | readonly number[];
}

/** Where an indexed instance sits, and when it was indexed. */
export interface StudyDocRef {
  readonly sopInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly indexedAt: string;
}

/** A document without its vector: what search hits carry (vectors stay in the index). */
export type VectorDocMeta = Omit<VectorDoc, 'vector'>;

/** Filters applied *before* ranking, so k hits still come back when many documents are excluded. */
export interface KnnFilter {
  /** Keep only these modalities (exact match of the stored value). */
  readonly modality?: string | readonly string[];
  readonly bodyPartExamined?: string | readonly string[];
  readonly excludeStudyUids?: readonly string[];
  readonly excludeSeriesUids?: readonly string[];
  readonly excludeSopInstanceUids?: readonly string[];
  readonly excludePatientKeys?: readonly string[];
}

export interface KnnOptions {
  /** How many hits (1 … MAX_K). */
  readonly k: number;
  readonly filter?: KnnFilter;
  /** HNSW candidates per shard (Elasticsearch only; exact search ignores it). Default min(10000, max(200, 4k)). */
  readonly numCandidates?: number;
}

export interface KnnHit {
  /** The hit's fields; no vector (use get() for one), so hits stay small on the wire. */
  readonly doc: VectorDocMeta;
  /** Euclidean (L2) distance between the query and this document's vector. */
  readonly distance: number;
}

export interface WriteOptions {
  /**
   * Make the write visible to searches before returning. Elasticsearch: refresh
   * 'wait_for' (true forces a refresh). The embedded store is always read-after-write.
   */
  readonly refresh?: boolean | 'wait_for';
}

export interface UpsertResult {
  readonly written: number;
  /** Documents refused, with the reason, by SOP Instance UID (bulk writes are per-document). */
  readonly failed: ReadonlyArray<{ readonly sopInstanceUid: string; readonly reason: string; readonly transient: boolean }>;
}

export interface VectorIndex {
  readonly backend: 'embedded' | 'elasticsearch';
  /**
   * Create storage for a model version if missing (idempotent) and bind this handle to it.
   * The first version ever created becomes live. Throws if the version exists with other dims.
   */
  ensure(dims: number, modelVersion: string): Promise<void>;
  /** Bulk insert-or-replace by SOP Instance UID. Bound handles only. */
  upsert(docs: readonly VectorDoc[], opts?: WriteOptions): Promise<UpsertResult>;
  get(sopInstanceUid: string): Promise<VectorDoc | undefined>;
  /** Which of these UIDs are indexed (for the reconciler). */
  has(sopInstanceUids: readonly string[]): Promise<Set<string>>;
  /** Nearest neighbours by Euclidean distance, ascending. */
  knn(vector: Float32Array | readonly number[], opts: KnnOptions): Promise<KnnHit[]>;
  count(): Promise<number>;
  delete(sopInstanceUid: string, opts?: WriteOptions): Promise<boolean>;
  /** Delete these documents (missing ones are ignored); returns how many were deleted. */
  deleteMany(sopInstanceUids: readonly string[], opts?: WriteOptions): Promise<number>;
  /**
   * The documents of one study (at most `max`, in no particular order): what the reconciler
   * compares with the PACS's own listing to find documents whose instance is gone.
   */
  listStudy(studyInstanceUid: string, max: number): Promise<StudyDocRef[]>;
  /** Every study UID with at least one document (the reconciler finds studies deleted from the PACS). */
  studyUids(): Promise<string[]>;
  /** The model version queries currently use (undefined before any ensure). */
  liveVersion(): Promise<string | undefined>;
  /** Model versions that have storage. */
  versions(): Promise<string[]>;
  /** Point the live pointer at another (existing) version, atomically. */
  swapAlias(modelVersion: string): Promise<void>;
  /** Remove a version's storage (not the live one). */
  dropVersion(modelVersion: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * Upper bound on k. Large on purpose: evaluation ranks a whole test database (mAP needs
 * the full ranking); 10 000 is also Elasticsearch's limit for k and num_candidates. The
 * gateway bounds what a client may ask for (`limit`) far lower.
 */
export const MAX_K = 10_000;
