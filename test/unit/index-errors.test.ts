/**
 * Error classification for the worker's retry decision. Real failures where they are
 * cheap to cause (a refused connection, a real SQLite lock between two connections);
 * errors the ES client builds from HTTP answers are constructed with the client's own
 * classes, as its transport would.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { errors as esErrors } from '@elastic/elasticsearch';
import { classifyIndexError, IndexError, toIndexError } from '../../core/index/errors.js';
import { ElasticsearchIndex } from '../../core/index/elasticsearch/es-index.js';

const dir = mkdtempSync(join(tmpdir(), 'cbmir-err-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function esResponse(statusCode: number, type?: string) {
  return new esErrors.ResponseError({
    body: type ? { error: { type, reason: 'x', root_cause: [{ type, reason: 'x' }] }, status: statusCode } : undefined,
    statusCode,
    headers: {},
    warnings: null,
    meta: {} as never,
  });
}

test('IndexError carries its own verdict', () => {
  assert.equal(classifyIndexError(new IndexError('UNAVAILABLE', 'down')), 'transient');
  assert.equal(classifyIndexError(new IndexError('DIMS_MISMATCH', 'wrong')), 'permanent');
  assert.equal(classifyIndexError(new IndexError('BACKEND', 'odd', true)), 'transient');
});

test('a refused TCP connection is transient', async () => {
  const err = await new Promise<Error>((resolve) => connect({ host: '127.0.0.1', port: 1 }).on('error', resolve));
  assert.equal((err as NodeJS.ErrnoException).code, 'ECONNREFUSED');
  assert.equal(classifyIndexError(err), 'transient');
});

test('Elasticsearch answers: overload, unavailability and any 5xx are transient, bad requests permanent', () => {
  for (const status of [408, 429, 500, 502, 503, 504, 507])
    assert.equal(classifyIndexError(esResponse(status)), 'transient', `HTTP ${status}`);
  assert.equal(classifyIndexError(esResponse(500, 'es_rejected_execution_exception')), 'transient');
  // Not in the list of known types, yet a server-side failure: a primary relocating, a node closing.
  for (const type of ['already_closed_exception', 'illegal_index_shard_state_exception', 'node_closed_exception'])
    assert.equal(classifyIndexError(esResponse(503, type)), 'transient', type);
  assert.equal(classifyIndexError(esResponse(500, 'null_pointer_exception')), 'transient', 'retried until the attempts run out');
  assert.equal(classifyIndexError(esResponse(403, 'cluster_block_exception')), 'transient', 'read-only until disk frees up');
  assert.equal(classifyIndexError(esResponse(400, 'mapper_parsing_exception')), 'permanent');
  assert.equal(classifyIndexError(esResponse(400, 'illegal_argument_exception')), 'permanent');
  assert.equal(classifyIndexError(new esErrors.ConnectionError('socket hang up')), 'transient');
  assert.equal(classifyIndexError(new esErrors.TimeoutError('Request timed out')), 'transient');
});

test('a SQLite write lock held by another connection is transient', () => {
  const path = join(dir, 'lock.sqlite');
  const a = new Database(path);
  const b = new Database(path);
  try {
    a.exec('CREATE TABLE t (x)');
    b.pragma('busy_timeout = 0');
    a.exec('BEGIN IMMEDIATE');
    let caught: unknown;
    try {
      b.exec('BEGIN IMMEDIATE');
    } catch (err) {
      caught = err;
    }
    assert.equal((caught as { code?: string }).code, 'SQLITE_BUSY');
    assert.equal(classifyIndexError(caught), 'transient');
    const wrapped = toIndexError(caught, 'embedded index upsert');
    assert.equal(wrapped.code, 'UNAVAILABLE');
    assert.equal(wrapped.cause, caught);
    a.exec('ROLLBACK');
  } finally {
    a.close();
    b.close();
  }
});

test('anything unknown is permanent (a retry loop on a bug helps nobody)', () => {
  assert.equal(classifyIndexError(new TypeError('x is undefined')), 'permanent');
  assert.equal(classifyIndexError('a string'), 'permanent');
  assert.equal(classifyIndexError(undefined), 'permanent');
});

test("SQLite's extended lock codes and a full disk are transient; a constraint or corruption is not", () => {
  const sqlite = (code: string) => Object.assign(new Error(code), { code });
  for (const c of ['SQLITE_BUSY_RECOVERY', 'SQLITE_BUSY_SNAPSHOT', 'SQLITE_LOCKED_SHAREDCACHE', 'SQLITE_FULL', 'SQLITE_PROTOCOL'])
    assert.equal(classifyIndexError(sqlite(c)), 'transient', c);
  for (const c of ['SQLITE_CONSTRAINT_PRIMARYKEY', 'SQLITE_CORRUPT', 'SQLITE_BUSYNESS'])
    assert.equal(classifyIndexError(sqlite(c)), 'permanent', c);
});

test('Elasticsearch bulk: an item refused with a 5xx is transient whatever its type; a 4xx item is permanent', async () => {
  // The client answers as a cluster would: the index exists (ensure binds to it), then one _bulk
  // whose items failed one way each. Only the calls ensure and upsert make are answered.
  const index = 'cbmir-t-0.4.0';
  const statuses: Record<string, [number, string]> = {
    '1.1': [503, 'already_closed_exception'],
    '1.2': [500, 'illegal_index_shard_state_exception'],
    '1.3': [429, 'es_rejected_execution_exception'],
    '1.4': [400, 'mapper_parsing_exception'],
  };
  const client = {
    indices: {
      getMapping: async () => ({ [index]: { mappings: { _meta: { modelVersion: '0.4.0', dims: 4, schema: 1 } } } }),
      existsAlias: async () => true,
    },
    bulk: async () => ({
      errors: true,
      items: Object.entries(statuses).map(([id, [status, type]]) => ({ index: { _id: id, status, error: { type, reason: 'x' } } })),
    }),
  };
  const es = new ElasticsearchIndex({ base: 'cbmir-t', client: client as never });
  await es.ensure(4, '0.4.0');
  const doc = (sop: string) => ({
    sopInstanceUid: sop,
    studyInstanceUid: '1',
    seriesInstanceUid: '1.0',
    modelVersion: '0.4.0',
    frame: 1,
    indexedAt: new Date(0).toISOString(),
    vector: Float32Array.of(0.5, 0.5, 0.5, 0.5),
  });
  const r = await es.upsert(Object.keys(statuses).map(doc));
  assert.equal(r.written, 0);
  assert.deepEqual(Object.fromEntries(r.failed.map((f) => [f.sopInstanceUid, f.transient])), {
    '1.1': true,
    '1.2': true,
    '1.3': true,
    '1.4': false,
  });
});
