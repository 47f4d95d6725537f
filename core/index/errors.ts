/**
 * Index errors and their classification. Retrying is the caller's job (BullMQ backoff
 * in the worker); the index only says whether a retry can help:
 *   transient — the backend is down, overloaded, timing out, or the store is busy
 *   permanent — bad input (wrong dims, malformed UID, mapping conflict): retrying repeats it
 */
import { errors as esErrors } from '@elastic/elasticsearch';

export type IndexErrorCode =
  | 'BAD_INPUT' // a document, vector or query the index cannot accept
  | 'NOT_READY' // no storage yet (ensure not called / no live version)
  | 'DIMS_MISMATCH' // the version exists with other dims, or a vector of the wrong length
  | 'UNKNOWN_VERSION'
  | 'UNAVAILABLE' // backend unreachable / overloaded
  | 'BACKEND'; // anything else the backend refused

export class IndexError extends Error {
  constructor(
    readonly code: IndexErrorCode,
    message: string,
    readonly transient: boolean = code === 'UNAVAILABLE',
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'IndexError';
  }
}

/**
 * HTTP statuses that mean "try again later" from Elasticsearch (and proxies in front of it):
 * any 5xx (a node restarting, a primary relocating, a proxy's own 500), a timeout or a request
 * to slow down. A 5xx that is a bug still ends in the failed set once the retries run out.
 */
export function isTransientStatus(status: number | undefined): boolean {
  return status !== undefined && (status >= 500 || status === 408 || status === 429);
}

/** Node socket errors that mean the backend is not there right now. */
const TRANSIENT_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * SQLite result codes a retry can fix: another process holds the lock (every extended
 * SQLITE_BUSY_* / SQLITE_LOCKED_* code, e.g. BUSY_RECOVERY while another process recovers
 * the WAL after a crash), or the disk is full (as Elasticsearch's disk watermark block is).
 */
function isTransientSqlite(code: string): boolean {
  return /^SQLITE_(BUSY|LOCKED)(_|$)/.test(code) || code === 'SQLITE_FULL' || code === 'SQLITE_PROTOCOL';
}

/** Elasticsearch per-document/bulk error types that a retry can fix. */
const TRANSIENT_ES_TYPES = new Set([
  'es_rejected_execution_exception',
  'circuit_breaking_exception',
  'unavailable_shards_exception',
  'no_shard_available_action_exception',
  'cluster_block_exception', // e.g. read-only while the disk watermark is exceeded
  'process_cluster_event_timeout_exception',
  'node_not_connected_exception',
  'timeout_exception',
]);

export type ErrorClass = 'transient' | 'permanent';

/** Classify an error thrown by either backend (or by the ES client, or by a socket). */
export function classifyIndexError(err: unknown): ErrorClass {
  if (err instanceof IndexError) return err.transient ? 'transient' : 'permanent';
  if (err instanceof esErrors.ConnectionError || err instanceof esErrors.TimeoutError || err instanceof esErrors.NoLivingConnectionsError) {
    return 'transient';
  }
  if (err instanceof esErrors.ResponseError) {
    if (isTransientStatus(err.statusCode)) return 'transient';
    return isTransientEsType(esErrorType(err.body)) ? 'transient' : 'permanent';
  }
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && (TRANSIENT_ERRNO.has(code) || isTransientSqlite(code))) return 'transient';
  return 'permanent';
}

export function isTransientEsType(type: string | undefined): boolean {
  return type !== undefined && TRANSIENT_ES_TYPES.has(type);
}

/** The root error type of an Elasticsearch error body, if any. */
export function esErrorType(body: unknown): string | undefined {
  const e = (body as { error?: { type?: unknown; root_cause?: Array<{ type?: unknown }> } } | undefined)?.error;
  if (!e) return undefined;
  if (typeof e.type === 'string') return e.type;
  const root = e.root_cause?.[0]?.type;
  return typeof root === 'string' ? root : undefined;
}

/** Wrap any backend error as an IndexError that keeps the cause and says if a retry helps. */
export function toIndexError(err: unknown, what: string): IndexError {
  if (err instanceof IndexError) return err;
  const transient = classifyIndexError(err) === 'transient';
  const msg = err instanceof Error ? err.message : String(err);
  return new IndexError(transient ? 'UNAVAILABLE' : 'BACKEND', `${what}: ${msg}`, transient, { cause: err });
}
