/** core/jobs.ts: job ids and queue names BullMQ accepts, whatever the model version string. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { indexJobId, QUEUE_NAMES, queueName } from '../../core/jobs.js';

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
