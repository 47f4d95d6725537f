/**
 * createVectorIndex: Elasticsearch when a URL is configured (CBMIR_ES_URL), the embedded
 * SQLite store otherwise (file `${dataDir}/${indexName}.sqlite`: cbmir-vectors.sqlite for the
 * services, whose configuration names no other; tests and benchmarks pass their own).
 */
import { join, resolve } from 'node:path';
import { EmbeddedIndex } from './embedded/embedded-index.js';
import { ElasticsearchIndex } from './elasticsearch/es-index.js';
import type { VectorMappingOptions } from './elasticsearch/mapping.js';
import type { VectorIndex } from './types.js';

/** The part of core/config.ts's Config the factory reads (a Config fits as is). */
export interface VectorIndexConfig {
  readonly es: { readonly url: string; readonly index: string } | undefined;
  readonly dataDir: string;
  /** Base name for the embedded store when no Elasticsearch is configured. */
  readonly indexName?: string;
  /** HNSW variant for new Elasticsearch indices (CBMIR_ES_VECTOR_TYPE). */
  readonly esVectorType?: VectorMappingOptions['type'];
  /** Shards and replicas of new Elasticsearch indices (CBMIR_ES_SHARDS, CBMIR_ES_REPLICAS). */
  readonly esShards?: number;
  readonly esReplicas?: number;
  /** Elasticsearch mapping overrides (HNSW type, m, ef_construction); win over esVectorType. */
  readonly mapping?: VectorMappingOptions;
  /** Elasticsearch: how long one request may take (default 30 s; `cbmir status` asks for less). */
  readonly esRequestTimeoutMs?: number;
}

export const DEFAULT_INDEX_NAME = 'cbmir-vectors';

export function createVectorIndex(config: VectorIndexConfig): VectorIndex {
  if (config.es) {
    const mapping: VectorMappingOptions = {
      ...(config.esVectorType ? { type: config.esVectorType } : {}),
      ...(config.esShards === undefined ? {} : { shards: config.esShards }),
      ...(config.esReplicas === undefined ? {} : { replicas: config.esReplicas }),
      ...config.mapping,
    };
    return new ElasticsearchIndex({
      url: config.es.url,
      base: config.es.index,
      mapping,
      ...(config.esRequestTimeoutMs === undefined ? {} : { requestTimeoutMs: config.esRequestTimeoutMs }),
    });
  }
  return new EmbeddedIndex({ path: embeddedIndexPath(config) });
}

/** Where the embedded store of this configuration lives (whether or not it exists yet). */
export function embeddedIndexPath(config: Pick<VectorIndexConfig, 'dataDir' | 'indexName'>): string {
  return resolve(join(config.dataDir, `${config.indexName ?? DEFAULT_INDEX_NAME}.sqlite`));
}
