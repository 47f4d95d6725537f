/**
 * How the worker turns a PACS fetch failure into "retry" or "give up", and how
 * `cbmir failed` then reads the reason it recorded.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UnrecoverableError } from 'bullmq';
import { PacsHttpError } from '../../core/pacs/client.js';
import { classifyFailure } from '../../workers/failed-jobs.js';
import { embedConcurrency, fetchFailure, toDoc } from '../../workers/index-worker.js';
import type { InstanceMeta } from '../../core/dicom/decode.js';
import { docProblem } from '../../core/index/validate.js';

const path = '/dicom-web/studies/1.2/series/1.3/instances/1.4';

test('a refused service login is retried and listed as retryable, naming the settings', () => {
  for (const status of [401, 403]) {
    const e = fetchFailure('fetch (WADO-RS)', new PacsHttpError(status, path));
    assert.ok(!(e instanceof UnrecoverableError), String(status));
    assert.match(e.message, /CBMIR_PACS_USER \/ CBMIR_PACS_PASSWORD/);
    assert.equal(classifyFailure(e.message).retryable, true);
  }
});

test('an instance the PACS does not have is given up at once, as permanent', () => {
  const e = fetchFailure('fetch (WADO-RS)', new PacsHttpError(404, path));
  assert.ok(e instanceof UnrecoverableError);
  const c = classifyFailure(e.message);
  assert.deepEqual([c.step, c.retryable], ['fetch', false]);
});

test('5xx and connection faults are retried', () => {
  assert.ok(!(fetchFailure('fetch (WADO-RS)', new PacsHttpError(503, path)) instanceof UnrecoverableError));
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8042'), { code: 'ECONNREFUSED' });
  assert.ok(!(fetchFailure('fetch (WADO-RS)', refused) instanceof UnrecoverableError));
  // A PACS whose name does not resolve (its container stopped) or whose route is down is away, not gone.
  for (const code of ['ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']) {
    const e = fetchFailure('fetch (WADO-RS)', Object.assign(new Error(`getaddrinfo ${code} orthanc`), { code }));
    assert.ok(!(e instanceof UnrecoverableError), code);
  }
});

test('an optional text over the index limit (a 300-character label) is left out, not the image refused', () => {
  const meta = {
    studyInstanceUid: '1.2',
    seriesInstanceUid: '1.2.3',
    modality: 'MR',
    label: { className: 'x'.repeat(300) },
  } as unknown as InstanceMeta;
  const doc = toDoc(
    meta,
    { studyInstanceUid: '1.2', seriesInstanceUid: '1.2.3', sopInstanceUid: '1.2.3.4' },
    new Float32Array(4).fill(0.5),
    1,
    '0.4.0',
    undefined,
  );
  assert.equal(doc.label, undefined);
  assert.equal(doc.modality, 'MR');
  assert.equal(docProblem(doc, 4, '0.4.0'), undefined);
  // Code strings are stored as the standard writes them, so the filters match "Brain" as BRAIN.
  const mixed = toDoc(
    { ...meta, bodyPartExamined: ' Brain ', modality: 'mr' } as InstanceMeta,
    { studyInstanceUid: '1.2', seriesInstanceUid: '1.2.3', sopInstanceUid: '1.2.3.4' },
    new Float32Array(4).fill(0.5),
    1,
    '0.4.0',
    undefined,
  );
  assert.deepEqual([mixed.bodyPartExamined, mixed.modality], ['BRAIN', 'MR']);
});

test('interactive embed jobs are bounded by the decode limit, not by the index-job concurrency', () => {
  assert.equal(embedConcurrency(64, 32), 32);
  assert.equal(embedConcurrency(64, 4), 4);
  assert.equal(embedConcurrency(8, 32), 8);
  assert.equal(embedConcurrency(1, 1), 2);
  assert.equal(embedConcurrency(64), 32);
});
