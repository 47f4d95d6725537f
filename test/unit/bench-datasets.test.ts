import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { datasetDir, datasetDirs, datasetsRoot } from '../../bench/lib/datasets.js';
import { numberRanges } from '../../bench/lib/report.js';

const REPO = path.resolve(import.meta.dirname, '../..');

test('datasetsRoot: CBMIR_DATASETS is the folder holding the datasets, default <repo>/../shared/datasets', () => {
  assert.equal(datasetsRoot({}), path.resolve(REPO, '../shared/datasets'));
  assert.equal(datasetsRoot({ CBMIR_DATASETS: '/data/sets' }), '/data/sets');
  assert.equal(datasetsRoot({ CBMIR_DATASETS: 'rel/sets' }), path.resolve('rel/sets'));
});

test('datasetDir / datasetDirs: names under the root, absolute paths as given, default list when blank', () => {
  const env = { CBMIR_DATASETS: '/data/sets' };
  assert.equal(datasetDir('figshare-cheng', env), '/data/sets/figshare-cheng');
  assert.equal(datasetDir('/elsewhere/ixi-normal', env), '/elsewhere/ixi-normal');
  assert.deepEqual(datasetDirs(undefined, ['figshare-cheng', 'ixi-normal'], env), ['/data/sets/figshare-cheng', '/data/sets/ixi-normal']);
  assert.deepEqual(datasetDirs(' ', ['figshare-cheng'], env), ['/data/sets/figshare-cheng']);
  assert.deepEqual(datasetDirs('ixi-normal, /x/figshare-cheng', ['figshare-cheng'], env), ['/data/sets/ixi-normal', '/x/figshare-cheng']);
});

test('numberRanges: folds as runs for prose', () => {
  assert.equal(numberRanges([4, 1, 2, 3]), '1–4');
  assert.equal(numberRanges([1, 2, 4, 5, 7]), '1–2, 4–5, 7');
  assert.equal(numberRanges([5]), '5');
  assert.equal(numberRanges([]), '');
});
