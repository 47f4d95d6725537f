import assert from 'node:assert/strict';
import { test } from 'node:test';
import { proxyVerdicts } from '../../bench/lib/proxy-targets.js';

test('proxyVerdicts: each endpoint judged on ratio ≥ 0.90 and added p50 ≤ 1 ms', () => {
  const v = proxyVerdicts({ qido: { ratio: 0.875, added_p50_ms: 1.291 }, wado: { ratio: 0.9, added_p50_ms: 1 } });
  assert.deepEqual(v.byEndpoint, {
    qido: { ratio: 'missed', added_p50_ms: 'missed' },
    wado: { ratio: 'met', added_p50_ms: 'met' },
  });
  assert.equal(v.met, false);
  assert.deepEqual(v.rows, [
    ['qido: req/s ratio gateway ÷ direct ≥ 0.90', '**missed** (0.875)'],
    ['qido: added p50 ≤ 1 ms', '**missed** (1.291 ms)'],
    ['wado: req/s ratio gateway ÷ direct ≥ 0.90', 'met (0.9)'],
    ['wado: added p50 ≤ 1 ms', 'met (1 ms)'],
  ]);
});

test('proxyVerdicts: all met is met; a figure that was not measured (NaN) is not a pass', () => {
  assert.equal(proxyVerdicts({ qido: { ratio: 0.95, added_p50_ms: 0.4 }, wado: { ratio: 1.01, added_p50_ms: -0.1 } }).met, true);
  const v = proxyVerdicts({ qido: { ratio: Number.NaN, added_p50_ms: 0.4 } });
  assert.equal(v.byEndpoint.qido?.ratio, 'not run');
  assert.equal(v.met, false);
});
