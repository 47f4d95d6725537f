/**
 * The small parts of the reconciler and the failed-jobs view: the PACS rate limiter
 * spaces requests, the backfill checkpoint survives a torn last line and resumes, and
 * failure reasons written by the worker are classified into step / code / retryable.
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { classifyFailure } from '../../workers/failed-jobs.js';
import { Checkpoint } from '../../workers/reconcile/checkpoint.js';
import { RateLimiter } from '../../workers/reconcile/rate-limiter.js';

describe('RateLimiter', () => {
  it('spaces requests evenly: 11 takes at 50/s last ≥ 200 ms', async () => {
    const limiter = new RateLimiter(50);
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 11 }, () => limiter.take()));
    const ms = performance.now() - t0;
    assert.ok(ms >= 195, `took ${ms} ms`);
    assert.ok(ms < 1000, `took ${ms} ms`);
  });

  it('refuses a rate that is not a positive number', () => {
    assert.throws(() => new RateLimiter(0), /positive/);
    assert.throws(() => new RateLimiter(Number.NaN), /positive/);
  });

  it('a waiting take rejects when its signal aborts', async () => {
    const limiter = new RateLimiter(1);
    await limiter.take();
    const abort = new AbortController();
    const p = limiter.take(abort.signal);
    abort.abort(new Error('stop'));
    await assert.rejects(p, /stop/);
  });
});

describe('Checkpoint', () => {
  it('records finished studies, resumes them, ignores a torn last line, starts empty without --resume', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'cbmir-cp-'));
    try {
      const file = Checkpoint.fileFor(dir, 'backfill', 'googlenet:0.1.0+dev', 'ns 1');
      assert.match(path.basename(file), /^backfill-googlenet-0\.1\.0-dev-ns-1\.txt$/);
      const cp = Checkpoint.open(file, false);
      cp.markDone('1.2.3');
      cp.markDone('1.2.4');
      cp.markDone('1.2.3');
      assert.equal(readFileSync(file, 'utf8'), '1.2.3\n1.2.4\n');
      appendFileSync(file, '1.2.'); // killed mid-write: "1.2." is not a UID
      const resumed = Checkpoint.open(file, true);
      assert.equal(resumed.size, 2);
      assert.equal(resumed.has('1.2.4'), true);
      assert.equal(resumed.has('1.2.'), false);
      const fresh = Checkpoint.open(file, false);
      assert.equal(fresh.size, 0);
      fresh.remove();
      assert.equal(existsSync(file), false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('classifyFailure', () => {
  it('reads the step and the decoder code of permanent failures', () => {
    assert.deepEqual(classifyFailure('decode: NOT_AN_IMAGE: not an image: Comprehensive SR'), {
      step: 'decode',
      code: 'NOT_AN_IMAGE',
      reason: 'not an image: Comprehensive SR',
      retryable: false,
    });
    assert.deepEqual(classifyFailure('decode: no frame to embed'), { step: 'decode', reason: 'no frame to embed', retryable: false });
    assert.equal(classifyFailure('fetch (WADO-RS): PACS answered 404 for /studies/1/series/2/instances/3').step, 'fetch');
    assert.equal(classifyFailure('index write: mapper_parsing_exception').step, 'index-write');
  });

  it('everything else is a transient fault, retryable', () => {
    assert.deepEqual(classifyFailure('connect ECONNREFUSED 127.0.0.1:9200'), {
      step: 'transient',
      reason: 'connect ECONNREFUSED 127.0.0.1:9200',
      retryable: true,
    });
    assert.equal(classifyFailure('').reason, '(no reason recorded)');
  });
});
