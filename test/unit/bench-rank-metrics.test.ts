import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rankMetrics } from '../../bench/lib/rank-metrics.js';

test('rankMetrics: AP and P@k of a hand-computed ranking (metrics.py definitions)', () => {
  // Ranks 1, 3, 4 relevant; R = 4 (one relevant item never returned).
  const rel = [true, false, true, true, false, false, false, false, false, false, false];
  const m = rankMetrics(rel, 4);
  assert.ok(Math.abs(m.ap - (1 / 1 + 2 / 3 + 3 / 4) / 4) < 1e-12);
  assert.equal(m.p1, 1);
  assert.equal(m.p5, 3 / 5);
  assert.equal(m.p10, 3 / 10);
});

test('rankMetrics: a ranking shorter than k counts the missing slots as misses; R = 0 gives NaN', () => {
  const m = rankMetrics([false, true], 1);
  assert.equal(m.p1, 0);
  assert.equal(m.p5, 1 / 5);
  assert.equal(m.p10, 1 / 10);
  assert.equal(m.ap, 1 / 2);
  assert.ok(Number.isNaN(rankMetrics([false], 0).ap));
});
