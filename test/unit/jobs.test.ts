/** core/jobs.ts: job ids and queue names BullMQ accepts, whatever the model version string. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { heatmapJobId, indexJobId, instanceQueryJobId, QUEUE_NAMES, queueName } from '../../core/jobs.js';

test('indexJobId joins SOP Instance UID and model version with an underscore', () => {
  assert.equal(indexJobId('1.2.840.113619.2.55.3', '0.1.0-dev'), '1.2.840.113619.2.55.3_0.1.0-dev');
});

test('indexJobId replaces characters BullMQ or Redis keys would trip on', () => {
  // ':' is BullMQ's key separator (custom ids containing it are refused); '/', ' ' and '+' are just unsafe.
  assert.equal(indexJobId('1.2.3', 'googlenet:2.0.0+build/7 rc'), '1.2.3_googlenet-2.0.0-build-7-rc');
  const id = indexJobId('1.2.3', 'a:b:c');
  assert.ok(!id.includes(':'));
});

test('indexJobId is never an integer (BullMQ refuses integer-looking custom ids)', () => {
  const id = indexJobId('123', '4');
  assert.notEqual(`${Number.parseInt(id, 10)}`, id);
});

test('indexJobId: same inputs, same id (that is what dedupes re-sent STOWs); different versions differ', () => {
  assert.equal(indexJobId('1.2.3', '1.0.0'), indexJobId('1.2.3', '1.0.0'));
  assert.notEqual(indexJobId('1.2.3', '1.0.0'), indexJobId('1.2.3', '1.0.1'));
  assert.notEqual(indexJobId('1.2.3', '1.0.0'), indexJobId('1.2.4', '1.0.0'));
});

test('indexJobId refuses empty parts', () => {
  assert.throws(() => indexJobId('', '1.0.0'), /sopInstanceUid is empty/);
  assert.throws(() => indexJobId('1.2.3', ''), /modelVersion is empty/);
});

test('queueName: fixed names, optional namespace for tests, never a colon', () => {
  assert.equal(queueName('index'), QUEUE_NAMES.index);
  assert.equal(queueName('embed'), 'cbmir-embed');
  assert.equal(queueName('index', 'test:42'), 'cbmir-index-test-42');
});

test('instanceQueryJobId: one id per study, series and SOP Instance UID and model version, none of them in it', () => {
  const a = { studyInstanceUid: '1.2.1', seriesInstanceUid: '1.2.1.1', sopInstanceUid: '1.2.9', modelVersion: 'googlenet:2.0' };
  assert.equal(instanceQueryJobId(a), instanceQueryJobId({ ...a }));
  assert.match(instanceQueryJobId(a), /^q_[0-9a-f]{32}_googlenet-2\.0$/);
  for (const other of [
    { ...a, studyInstanceUid: '1.3.1', seriesInstanceUid: '1.3.1.1' },
    { ...a, seriesInstanceUid: '1.2.1.2' },
    { ...a, sopInstanceUid: '1.2.8' },
    { ...a, modelVersion: 'googlenet:2.1' },
    // The UIDs' boundaries count: not the same instance as '1.2.11', '1.1', …
    { ...a, studyInstanceUid: '1.2.11', seriesInstanceUid: '1.1' },
  ]) {
    assert.notEqual(instanceQueryJobId(other), instanceQueryJobId(a), JSON.stringify(other));
  }
  assert.throws(() => instanceQueryJobId({ ...a, modelVersion: '' }), /modelVersion is empty/);
});

test('heatmapJobId: the pair in its roles and the model version; none for an uploaded query', () => {
  const q = { studyInstanceUid: '1.2', seriesInstanceUid: '1.2.3', sopInstanceUid: '1.2.3.4' };
  const r = { studyInstanceUid: '1.5', seriesInstanceUid: '1.5.6', sopInstanceUid: '1.5.6.7' };
  const d = { kind: 'heatmap' as const, query: q, result: r, modelVersion: 'v1', enqueuedAt: 0 };
  assert.match(heatmapJobId(d) ?? '', /^h_[0-9a-f]{32}_v1$/);
  assert.notEqual(heatmapJobId({ ...d, query: r, result: q }), heatmapJobId(d));
  assert.equal(heatmapJobId({ ...d, query: { dicomBase64: 'AAAA' } }), undefined);
});
