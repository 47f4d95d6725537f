import assert from 'node:assert/strict';
import { test } from 'node:test';
import { proxyVerdicts } from '../../bench/lib/proxy-targets.js';

test('proxyVerdicts: each endpoint judged on ratio ≥ 0.90 and added p50 ≤ 1 ms', () => {
  const v = proxyVerdicts({ qido: { ratio: 0.875, added_p50_ms: 1.291, errors: 0 }, wado: { ratio: 0.9, added_p50_ms: 1, errors: 0 } });
  assert.deepEqual(v.byEndpoint, {
    qido: { ratio: 'missed', added_p50_ms: 'missed', errors: 'met' },
    wado: { ratio: 'met', added_p50_ms: 'met', errors: 'met' },
  });
  assert.equal(v.met, false);
  assert.deepEqual(v.rows, [
    ['qido: req/s ratio gateway ÷ direct ≥ 0.90', '**missed** (0.875)'],
    ['qido: added p50 ≤ 1 ms', '**missed** (1.291 ms)'],
    ['qido: no failed requests (direct and gateway)', 'met (0)'],
    ['wado: req/s ratio gateway ÷ direct ≥ 0.90', 'met (0.9)'],
    ['wado: added p50 ≤ 1 ms', 'met (1 ms)'],
    ['wado: no failed requests (direct and gateway)', 'met (0)'],
  ]);
});

test('proxyVerdicts: all met is met; a figure that was not measured (NaN) is not a pass', () => {
  assert.equal(
    proxyVerdicts({ qido: { ratio: 0.95, added_p50_ms: 0.4, errors: 0 }, wado: { ratio: 1.01, added_p50_ms: -0.1, errors: 0 } }).met,
    true,
  );
  const v = proxyVerdicts({ qido: { ratio: Number.NaN, added_p50_ms: 0.4, errors: 0 } });
  assert.equal(v.byEndpoint.qido?.ratio, 'not run');
  assert.equal(v.met, false);
});

test('proxyVerdicts: fast ratios over failing requests are not met', () => {
  const v = proxyVerdicts({ qido: { ratio: 1.2, added_p50_ms: 0.1, errors: 7 }, wado: { ratio: 0.95, added_p50_ms: 0.4, errors: 0 } });
  assert.equal(v.byEndpoint.qido?.errors, 'missed');
  assert.deepEqual(v.rows[2], ['qido: no failed requests (direct and gateway)', '**missed** (7)']);
  assert.equal(v.met, false);
});
