/** The vector index: interface, backends, factory and helpers (see docs/index.md). */
export type { KnnFilter, KnnHit, KnnOptions, UpsertResult, VectorDoc, VectorDocMeta, VectorIndex, WriteOptions } from './types.js';
export { MAX_K } from './types.js';
export { createVectorIndex, DEFAULT_INDEX_NAME, type VectorIndexConfig } from './factory.js';
export { EmbeddedIndex, type EmbeddedIndexOptions } from './embedded/embedded-index.js';
export { ElasticsearchIndex, type EsIndexOptions } from './elasticsearch/es-index.js';
export { DEFAULT_VECTOR_MAPPING, type VectorIndexType, type VectorMappingOptions } from './elasticsearch/mapping.js';
export { IndexError, classifyIndexError, type ErrorClass, type IndexErrorCode } from './errors.js';
export { esScoreToDistance, distanceToEsScore, l2 } from './distance.js';
export { patientKey, loadPatientKeySecret } from './patient-key.js';
