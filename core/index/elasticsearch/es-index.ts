/**
 * Elasticsearch vector index (client @elastic/elasticsearch 8.19, the major of the server
 * the stack runs: Maven Central has no 9.x integ-test distribution).
 *
 * - Versioned storage: `${base}-${version}` per model version, the alias `${base}` names
 *   the live one; swapAlias() moves it in one atomic _aliases call.
 * - kNN: approximate (HNSW) with filters inside `knn.filter`, so Elasticsearch filters
 *   *while* walking the graph and k hits still come back when most documents are excluded
 *   (a post-filter would return fewer). num_candidates defaults to max(200, 4k).
 * - Distances: l2_norm scores are 1/(1+d²); converted back (distance.ts).
 * - Writes: one _bulk per upsert; per-document failures come back in UpsertResult with a
 *   transient flag; retrying is the caller's job (BullMQ backoff), so the client itself
 *   retries at most once (a keep-alive socket the server closed).
 * - Vectors in _source: Elasticsearch 9.x leaves them out of _source by default and
 *   rebuilds them on request (GET `_source_exclude_vectors=false`); 8.x keeps them in
 *   _source. get() asks for them in whichever way the server understands (major version
 *   read once from _nodes). knn() never fetches vectors: hits carry metadata only.
 */
import { Client, type estypes } from '@elastic/elasticsearch';
import { Batcher } from '../../batcher.js';
import { esScoreToDistance } from '../distance.js';
import { esErrorType, IndexError, isTransientEsType, isTransientStatus, toIndexError } from '../errors.js';
import { assertDims, assertK, assertVersionName, asList, docProblem, toVector } from '../validate.js';
import { DEFAULT_VECTOR_MAPPING, F, indexBody, type IndexMeta, type VectorIndexType, type VectorMappingOptions } from './mapping.js';
import type { KnnFilter, KnnHit, KnnOptions, StudyDocRef, UpsertResult, VectorDoc, VectorIndex, WriteOptions } from '../types.js';

export interface EsIndexOptions {
  /** Cluster URL, e.g. http://127.0.0.1:9200 (ignored when `client` is given). */
  readonly url?: string;
  /** An existing client to share (not closed by close()). */
  readonly client?: Client;
  /** Alias name; versioned indices are `${base}-${version}`. Lower case, [a-z0-9_-]. */
  readonly base: string;
  readonly mapping?: VectorMappingOptions;
  /** Query-time re-scoring of quantised hits with the raw float vectors (oversample factor; 0 = off). Default 2 for int8. */
  readonly rescoreOversample?: number;
  readonly requestTimeoutMs?: number;
}

/** How long an unbound handle trusts what it learnt about the live version. */
const LIVE_TTL_MS = 2_000;
/** Ids per has() multi-get request. */
const HAS_CHUNK = 1_000;
/** Deletes per bulk request. */
const DELETE_CHUNK = 1_000;

interface Target {
  /** Index or alias name to address. */
  readonly name: string;
  readonly dims: number;
  readonly modelVersion: string;
  /** How the index stores vectors (from its _meta), when known. */
  readonly vectorType: VectorIndexType | undefined;
}

type Source = Record<string, unknown>;

/** HTTP status of a failed client call (404: index or document absent), if it got an answer. */
function httpStatus(err: unknown): number | undefined {
  return (err as { meta?: { statusCode?: number } }).meta?.statusCode;
}

export class ElasticsearchIndex implements VectorIndex {
  readonly backend = 'elasticsearch' as const;
  readonly client: Client;
  private readonly ownsClient: boolean;
  private bound: Target | undefined;
  private live: { at: number; target: Target | undefined } | undefined;
  private major: number | undefined;

  constructor(readonly options: EsIndexOptions) {
    if (!/^[a-z0-9][a-z0-9_-]*$/.test(options.base)) {
      throw new IndexError('BAD_INPUT', `index base name must match [a-z0-9][a-z0-9_-]*, got ${JSON.stringify(options.base)}`);
    }
    if (options.client) {
      this.client = options.client;
      this.ownsClient = false;
    } else {
      if (!options.url) throw new IndexError('BAD_INPUT', 'Elasticsearch index needs a url or a client');
      this.client = new Client({
        node: options.url,
        maxRetries: 1,
        requestTimeout: options.requestTimeoutMs ?? 30_000,
      });
      this.ownsClient = true;
    }
  }

  /** Name of the index holding a model version. */
  indexName(modelVersion: string): string {
    return `${this.options.base}-${assertVersionName(modelVersion)}`;
  }

  async ensure(dims: number, modelVersion: string): Promise<void> {
    assertDims(dims);
    const index = this.indexName(modelVersion);
    let vectorType: VectorIndexType | undefined = this.options.mapping?.type ?? DEFAULT_VECTOR_MAPPING.type;
    await this.call('ensure', async () => {
      const existing = await this.metaOf(index);
      if (existing) {
        checkMeta(existing, index, dims, modelVersion);
        vectorType = existing.vectorType; // the index as it was created, not as this handle would create it
      } else {
        try {
          await this.client.indices.create({ index, ...indexBody(dims, modelVersion, this.options.mapping) });
        } catch (err) {
          // Another process created it first: fine if it is the same version and dims.
          if (esErrorType((err as { body?: unknown }).body) !== 'resource_already_exists_exception') throw err;
          const meta = await this.metaOf(index);
          if (!meta) throw err;
          checkMeta(meta, index, dims, modelVersion);
          vectorType = meta.vectorType;
        }
      }
      if (!(await this.client.indices.existsAlias({ name: this.options.base }))) {
        if (await this.client.indices.exists({ index: this.options.base })) {
          // exists() answers for an alias too: one another process has just made is no squatter.
          if (await this.client.indices.existsAlias({ name: this.options.base })) return;
          throw new IndexError('BAD_INPUT', `"${this.options.base}" exists as an index, so it cannot be the alias; rename or delete it`);
        }
        await this.client.indices.updateAliases({ actions: [{ add: { index, alias: this.options.base } }] });
        // Two processes creating the first versions at once can both add (check-then-act): the
        // alias would then name two indices and every read would fail. Keep the oldest, in one
        // atomic update, whichever process gets here.
        const named = Object.keys(await this.client.indices.getAlias({ name: this.options.base }));
        if (named.length > 1) {
          const settings = await this.client.indices.getSettings({ index: named, name: 'index.creation_date' });
          const created = (n: string) => Number(settings[n]?.settings?.index?.creation_date ?? Number.MAX_SAFE_INTEGER);
          const [keep, ...drop] = [...named].sort((a, b) => created(a) - created(b) || cmp(a, b));
          await this.client.indices.updateAliases({
            actions: [{ add: { index: keep!, alias: this.options.base } }, ...drop.map((i) => ({ remove: { index: i, alias: this.options.base, must_exist: false } }))],
          });
        }
      }
    });
    this.bound = { name: index, dims, modelVersion, vectorType };
    this.live = undefined;
  }

  async upsert(docs: readonly VectorDoc[], opts: WriteOptions = {}): Promise<UpsertResult> {
    const t = this.requireBound();
    const failed: Array<{ sopInstanceUid: string; reason: string; transient: boolean }> = [];
    const operations: unknown[] = [];
    const order: string[] = [];
    for (const doc of docs) {
      const problem = docProblem(doc, t.dims, t.modelVersion);
      if (problem) {
        failed.push({ sopInstanceUid: String(doc.sopInstanceUid), reason: problem, transient: false });
        continue;
      }
      operations.push({ index: { _index: t.name, _id: doc.sopInstanceUid } }, toSource(doc, t.dims));
      order.push(doc.sopInstanceUid);
    }
    if (order.length === 0) return { written: 0, failed };
    const res = await this.call('upsert', () => this.client.bulk({ operations, refresh: opts.refresh ?? false }));
    let written = 0;
    res.items.forEach((item, i) => {
      const r = item.index;
      if (r && !r.error && (r.status ?? 500) < 300) {
        written++;
        return;
      }
      const type = r?.error?.type;
      failed.push({
        sopInstanceUid: order[i] ?? String(r?._id),
        reason: `${type ?? 'error'}: ${r?.error?.reason ?? `status ${r?.status}`}`,
        transient: isTransientStatus(r?.status) || isTransientEsType(type),
      });
    });
    return { written, failed };
  }

  /**
   * Realtime GET (sees a write before the next refresh: /similar right after indexing).
   * Concurrent gets share one `_mget` (core/batcher.ts): Elasticsearch spends about half
   * the CPU per document that way, which counts when hundreds of /similar run at once.
   */
  async get(sopInstanceUid: string): Promise<VectorDoc | undefined> {
    const t = await this.target();
    if (!t) return undefined;
    const major = await this.serverMajor();
    if (major < 9) return this.getBatcher.get(`${t.name}\u0000${sopInstanceUid}`, { index: t.name, id: sopInstanceUid });
    // 9.x rebuilds vectors into _source only when asked; keep to the documented GET parameter.
    try {
      const withVectors = { _source_exclude_vectors: false }; // not in the 8.x client's types
      const res = await this.client.get<Source>({ index: t.name, id: sopInstanceUid, ...withVectors });
      return res.found && res._source ? fromSource(res._source) : undefined;
    } catch (err) {
      if (httpStatus(err) === 404) return undefined;
      throw toIndexError(err, 'elasticsearch get');
    }
  }

  private readonly getBatcher = new Batcher<string, VectorDoc | undefined, { index: string; id: string }>({
    load: async (batch) => {
      const byIndex = new Map<string, string[]>();
      for (const { payload } of batch) {
        const ids = byIndex.get(payload.index);
        if (ids) ids.push(payload.id);
        else byIndex.set(payload.index, [payload.id]);
      }
      const out = new Map<string, VectorDoc | undefined>();
      for (const [index, ids] of byIndex) {
        let res;
        try {
          res = await this.client.mget<Source>({ index, ids });
        } catch (err) {
          if (httpStatus(err) === 404) continue; // index gone: none found
          throw toIndexError(err, 'elasticsearch get');
        }
        for (const d of res.docs) {
          if ('error' in d) {
            if (esErrorType({ error: d.error }) === 'index_not_found_exception') continue;
            throw new IndexError('BACKEND', `elasticsearch get: ${d.error.type}: ${d.error.reason ?? ''}`, isTransientEsType(d.error.type));
          }
          if (d.found && d._source) out.set(`${index}\u0000${d._id}`, fromSource(d._source));
        }
      }
      return out;
    },
    missing: undefined,
    maxBatch: 64,
    maxInFlight: 2,
  });

  /** Realtime multi-get of ids only. */
  async has(sopInstanceUids: readonly string[]): Promise<Set<string>> {
    const out = new Set<string>();
    const t = await this.target();
    if (!t) return out;
    for (let i = 0; i < sopInstanceUids.length; i += HAS_CHUNK) {
      const chunk = sopInstanceUids.slice(i, i + HAS_CHUNK);
      const res = await this.call('has', () => this.client.mget({ index: t.name, ids: chunk, _source: false }));
      for (const d of res.docs) if ('found' in d && d.found) out.add(d._id);
    }
    return out;
  }

  async knn(vector: Float32Array | readonly number[], opts: KnnOptions): Promise<KnnHit[]> {
    const k = assertK(opts);
    const t = await this.target();
    if (!t) throw new IndexError('NOT_READY', 'the index holds no model version yet');
    const q = Array.from(toVector(vector, t.dims, 'query vector'));
    // 200 rather than 100 at small k: measured recall@10 0.9975 → 0.9995 on 100k semi-real
    // vectors at no latency cost (docs/index.md).
    const numCandidates = opts.numCandidates ?? Math.min(10_000, Math.max(200, 4 * k));
    const filter = esFilter(opts.filter);
    const oversample = this.rescoreOversample(t);
    const res = await this.call('knn', () =>
      this.client.search<Source>({
        index: t.name,
        size: k,
        knn: {
          field: F.vector,
          query_vector: q,
          k,
          num_candidates: numCandidates,
          ...(filter ? { filter } : {}),
          ...(oversample > 0 ? { rescore_vector: { oversample } } : {}),
        },
        _source: { excludes: [F.vector] },
      }),
    );
    const hits: KnnHit[] = [];
    for (const h of res.hits.hits) {
      if (!h._source || h._score === undefined || h._score === null) continue;
      const { vector: _none, ...doc } = fromSource(h._source);
      hits.push({ doc, distance: esScoreToDistance(h._score) });
    }
    // Elasticsearch sorts by score (higher first) = distance ascending; keep the order
    // stable for equal scores by UID, as the embedded index does.
    return hits.sort((a, b) => a.distance - b.distance || cmp(a.doc.sopInstanceUid, b.doc.sopInstanceUid));
  }

  async count(): Promise<number> {
    const t = await this.target();
    if (!t) return 0;
    return (await this.call('count', () => this.client.count({ index: t.name }))).count;
  }

  async delete(sopInstanceUid: string, opts: WriteOptions = {}): Promise<boolean> {
    const t = this.requireBound();
    try {
      await this.client.delete({ index: t.name, id: sopInstanceUid, refresh: opts.refresh ?? false });
      return true;
    } catch (err) {
      if (httpStatus(err) === 404) return false;
      throw toIndexError(err, 'elasticsearch delete');
    }
  }

  async deleteMany(sopInstanceUids: readonly string[], opts: WriteOptions = {}): Promise<number> {
    const t = this.requireBound();
    let n = 0;
    for (let i = 0; i < sopInstanceUids.length; i += DELETE_CHUNK) {
      const operations = sopInstanceUids.slice(i, i + DELETE_CHUNK).map((id) => ({ delete: { _index: t.name, _id: id } }));
      const res = await this.call('deleteMany', () => this.client.bulk({ operations, refresh: opts.refresh ?? false }));
      for (const item of res.items) {
        const r = item.delete;
        if (r && !r.error && r.status === 200) n++;
        else if (r && r.status !== 404) throw new IndexError('UNAVAILABLE', `elasticsearch delete: ${r.error?.type ?? r.status}: ${r.error?.reason ?? ''}`);
      }
    }
    return n;
  }

  async listStudy(studyInstanceUid: string, max: number): Promise<StudyDocRef[]> {
    const t = await this.target();
    if (!t) return [];
    const res = await this.call('listStudy', () =>
      this.client.search<Source>({
        index: t.name,
        size: Math.min(max, 10_000), // index.max_result_window
        query: { term: { [F.study]: studyInstanceUid } },
        _source: [F.sop, F.series, F.indexedAt],
      }),
    );
    const out: StudyDocRef[] = [];
    for (const h of res.hits.hits) {
      const sop = h._source?.[F.sop];
      const series = h._source?.[F.series];
      if (typeof sop === 'string' && typeof series === 'string')
        out.push({ sopInstanceUid: sop, seriesInstanceUid: series, indexedAt: String(h._source?.[F.indexedAt] ?? '') });
    }
    return out;
  }

  async studyUids(): Promise<string[]> {
    const t = await this.target();
    if (!t) return [];
    const out: string[] = [];
    // A composite aggregation pages through every distinct value; a terms aggregation would cap them.
    for (let after: Record<string, string | number | null> | undefined; ; ) {
      const res = await this.call('studyUids', () =>
        this.client.search({
          index: t.name,
          size: 0,
          aggs: { s: { composite: { size: 1_000, sources: [{ study: { terms: { field: F.study } } }], ...(after ? { after } : {}) } } },
        }),
      );
      const agg = res.aggregations?.s as estypes.AggregationsCompositeAggregate | undefined;
      const buckets = Array.isArray(agg?.buckets) ? agg.buckets : [];
      for (const b of buckets) if (typeof b.key.study === 'string') out.push(b.key.study);
      if (!agg?.after_key || buckets.length === 0) break;
      after = agg.after_key as Record<string, string | number | null>;
    }
    return out;
  }

  async liveVersion(): Promise<string | undefined> {
    return (await this.resolveLive(true))?.modelVersion;
  }

  async versions(): Promise<string[]> {
    const res = await this.call('versions', () =>
      this.client.indices.getMapping({ index: `${this.options.base}-*`, allow_no_indices: true, expand_wildcards: 'open' }),
    );
    const out: Array<{ v: string; name: string }> = [];
    for (const [name, m] of Object.entries(res)) {
      const meta = m.mappings?._meta as Partial<IndexMeta> | undefined;
      if (typeof meta?.modelVersion === 'string' && name === this.indexName(meta.modelVersion)) out.push({ v: meta.modelVersion, name });
    }
    return out.sort((a, b) => cmp(a.name, b.name)).map((x) => x.v);
  }

  async swapAlias(modelVersion: string): Promise<void> {
    const index = this.indexName(modelVersion);
    await this.call('swapAlias', async () => {
      const meta = await this.metaOf(index);
      if (!meta || meta.modelVersion !== modelVersion) {
        throw new IndexError('UNKNOWN_VERSION', `model version ${modelVersion} has no index (${index}); index it first`);
      }
      const current = await this.aliasIndices();
      const actions: NonNullable<estypes.IndicesUpdateAliasesRequest['actions']> = current
        .filter((name) => name !== index)
        .map((name) => ({ remove: { index: name, alias: this.options.base } }));
      actions.push({ add: { index, alias: this.options.base } });
      // One request: Elasticsearch applies all actions atomically, so no query ever sees
      // zero or two versions behind the alias.
      await this.client.indices.updateAliases({ actions });
    });
    this.live = undefined;
  }

  async dropVersion(modelVersion: string): Promise<void> {
    const index = this.indexName(modelVersion);
    await this.call('dropVersion', async () => {
      if ((await this.aliasIndices()).includes(index)) {
        throw new IndexError('BAD_INPUT', `model version ${modelVersion} is live; swap to another version first`);
      }
      await this.client.indices.delete({ index, ignore_unavailable: true });
    });
    if (this.bound?.name === index) this.bound = undefined;
  }

  async close(): Promise<void> {
    if (this.ownsClient) await this.client.close();
  }

  /** Make recent writes searchable now (tests; bulk loads that want to query at once). */
  async refresh(): Promise<void> {
    const t = await this.target();
    if (t) await this.call('refresh', () => this.client.indices.refresh({ index: t.name }));
  }

  // ---- internals ----

  /** Re-score quantised indices (int8_*) by default; float indices need none. */
  private rescoreOversample(t: Target): number {
    if (this.options.rescoreOversample !== undefined) return this.options.rescoreOversample;
    const type = t.vectorType ?? this.options.mapping?.type ?? DEFAULT_VECTOR_MAPPING.type;
    return type.startsWith('int8') ? 2 : 0;
  }

  private requireBound(): Target {
    if (!this.bound) throw new IndexError('NOT_READY', 'call ensure(dims, modelVersion) before writing');
    return this.bound;
  }

  private async target(): Promise<Target | undefined> {
    return this.bound ?? (await this.resolveLive(false));
  }

  /** The live version behind the alias (cached briefly for unbound handles). */
  private async resolveLive(fresh: boolean): Promise<Target | undefined> {
    const now = Date.now();
    if (!fresh && this.live && now - this.live.at < LIVE_TTL_MS) return this.live.target;
    const indices = await this.call('live', () => this.aliasIndices());
    let target: Target | undefined;
    if (indices.length === 1) {
      const meta = await this.call('live', () => this.metaOf(indices[0]!));
      // Address the alias, not the index: a swap between this lookup and the query then
      // only costs a dims check, never a query against a deleted index.
      if (meta) target = { name: this.options.base, dims: meta.dims, modelVersion: meta.modelVersion, vectorType: meta.vectorType };
    } else if (indices.length > 1) {
      throw new IndexError('BACKEND', `alias ${this.options.base} points at ${indices.length} indices; fix it with swapAlias()`, false);
    }
    this.live = { at: now, target };
    return target;
  }

  private async aliasIndices(): Promise<string[]> {
    try {
      return Object.keys(await this.client.indices.getAlias({ name: this.options.base }));
    } catch (err) {
      if (httpStatus(err) === 404) return [];
      throw err;
    }
  }

  private async metaOf(index: string): Promise<IndexMeta | undefined> {
    try {
      const res = await this.client.indices.getMapping({ index });
      const meta = res[index]?.mappings?._meta as Partial<IndexMeta> | undefined;
      if (typeof meta?.modelVersion !== 'string' || typeof meta.dims !== 'number') {
        throw new IndexError('BACKEND', `index ${index} exists but was not created by cbmir (no _meta.modelVersion/dims)`, false);
      }
      return { modelVersion: meta.modelVersion, dims: meta.dims, schema: meta.schema ?? 0, ...(meta.vectorType ? { vectorType: meta.vectorType } : {}) };
    } catch (err) {
      if (httpStatus(err) === 404) return undefined;
      throw err;
    }
  }

  /** Major version of the server (from _nodes: the integ-test build has no GET /). */
  private async serverMajor(): Promise<number> {
    if (this.major !== undefined) return this.major;
    const res = await this.call('version', () => this.client.nodes.info({ node_id: '_local', metric: '_none', filter_path: 'nodes.*.version' }));
    const v = Object.values(res.nodes ?? {})[0]?.version ?? '0';
    this.major = Number.parseInt(v, 10) || 0;
    return this.major;
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const e = toIndexError(err, `elasticsearch ${what}`);
      // A 400 on a search is our query's fault (e.g. wrong dims): say so, never retry.
      if (!e.transient && httpStatus(err) === 400) {
        throw new IndexError('BAD_INPUT', e.message, false, { cause: err });
      }
      throw e;
    }
  }
}

function checkMeta(meta: IndexMeta, index: string, dims: number, modelVersion: string): void {
  if (meta.modelVersion !== modelVersion) {
    throw new IndexError('BAD_INPUT', `index ${index} holds model version ${meta.modelVersion}, not ${modelVersion}; use a distinct version string`);
  }
  if (meta.dims !== dims) throw new IndexError('DIMS_MISMATCH', `index ${index} has ${meta.dims} dims, not ${dims}`);
}

function toSource(doc: VectorDoc, dims: number): Source {
  const s: Source = {
    [F.sop]: doc.sopInstanceUid,
    [F.study]: doc.studyInstanceUid,
    [F.series]: doc.seriesInstanceUid,
    [F.modelVersion]: doc.modelVersion,
    [F.indexedAt]: doc.indexedAt,
    [F.vector]: Array.from(toVector(doc.vector, dims)),
  };
  if (doc.sopClassUid !== undefined) s[F.sopClass] = doc.sopClassUid;
  if (doc.modality !== undefined) s[F.modality] = doc.modality;
  if (doc.bodyPartExamined !== undefined) s[F.bodyPart] = doc.bodyPartExamined;
  if (doc.label !== undefined) s[F.label] = doc.label;
  if (doc.patientKey !== undefined) s[F.patientKey] = doc.patientKey;
  if (doc.frame !== undefined) s[F.frame] = doc.frame;
  return s;
}

function fromSource(s: Source): VectorDoc {
  const str = (k: string) => (typeof s[k] === 'string' ? (s[k] as string) : undefined);
  const vec = s[F.vector];
  const frame = s[F.frame];
  return {
    sopInstanceUid: str(F.sop) ?? '',
    studyInstanceUid: str(F.study) ?? '',
    seriesInstanceUid: str(F.series) ?? '',
    ...(str(F.sopClass) !== undefined ? { sopClassUid: str(F.sopClass) } : {}),
    ...(str(F.modality) !== undefined ? { modality: str(F.modality) } : {}),
    ...(str(F.bodyPart) !== undefined ? { bodyPartExamined: str(F.bodyPart) } : {}),
    ...(str(F.label) !== undefined ? { label: str(F.label) } : {}),
    ...(str(F.patientKey) !== undefined ? { patientKey: str(F.patientKey) } : {}),
    ...(typeof frame === 'number' ? { frame } : {}),
    modelVersion: str(F.modelVersion) ?? '',
    indexedAt: str(F.indexedAt) ?? '',
    vector: Array.isArray(vec) ? Float32Array.from(vec as number[]) : new Float32Array(0),
  };
}

/** The knn pre-filter: includes as `filter`, exclusions as `must_not`. */
function esFilter(f: KnnFilter | undefined): estypes.QueryDslQueryContainer | undefined {
  if (!f) return undefined;
  const filter: estypes.QueryDslQueryContainer[] = [];
  const mustNot: estypes.QueryDslQueryContainer[] = [];
  const modality = asList(f.modality);
  if (modality.length) filter.push({ terms: { [F.modality]: [...modality] } });
  const bodyPart = asList(f.bodyPartExamined);
  if (bodyPart.length) filter.push({ terms: { [F.bodyPart]: [...bodyPart] } });
  if (f.excludeStudyUids?.length) mustNot.push({ terms: { [F.study]: [...f.excludeStudyUids] } });
  if (f.excludeSeriesUids?.length) mustNot.push({ terms: { [F.series]: [...f.excludeSeriesUids] } });
  if (f.excludePatientKeys?.length) mustNot.push({ terms: { [F.patientKey]: [...f.excludePatientKeys] } });
  if (f.excludeSopInstanceUids?.length) mustNot.push({ ids: { values: [...f.excludeSopInstanceUids] } });
  if (!filter.length && !mustNot.length) return undefined;
  return { bool: { ...(filter.length ? { filter } : {}), ...(mustNot.length ? { must_not: mustNot } : {}) } };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
