/**
 * The change feed's fast path (workers/reconcile/periodic.ts) on the test stack's Redis, with a
 * scripted feed and PACS: a study whose reconciliation fails is kept due and reconciled at the
 * next poll, although the feed's cursor has moved past the change that named it (before, it
 * waited for the next full crawl: never, with the full crawl off).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { createLogger } from '../../core/log.js';
import type { PacsClient } from '../../core/pacs/client.js';
import type { StoredInstance } from '../../core/pacs/stow-response.js';
import type { IndexEnqueuer } from '../../core/queue/index-enqueuer.js';
import type { ReconcileDeps, ReconcileSummary } from '../../workers/reconciler.js';
import type { OrthancChangeFeed } from '../../workers/reconcile/orthanc-changes.js';
import { startPeriodicReconciler } from '../../workers/reconcile/periodic.js';
import { testStack } from '../helpers/stack.js';

const A = '2.25.77.1';
const B = '2.25.77.2';

/**
 * The fast path over `feed`, against a PACS that lists one instance per study unless `fail(study)`
 * gives the error to throw, an empty index and a queue that takes everything: what was queued,
 * each run's summary, the Redis key prefix of its state, and how to stop it.
 */
function fastPath(feed: OrthancChangeFeed, fail: (study: string) => Error | undefined) {
  const queueName = `test-due-${randomUUID()}`;
  const pacs = {
    qido: async (path: string, params: { offset?: number }) => {
      const study = /^\/studies\/([0-9.]+)\/instances$/.exec(path)?.[1];
      const err = study ? fail(study) : undefined;
      if (err) throw err;
      return study && !params.offset
        ? [{ '0020000E': { vr: 'UI', Value: [`${study}.1`] }, '00080018': { vr: 'UI', Value: [`${study}.1.1`] } }]
        : [];
    },
  } as unknown as PacsClient;
  const queued: StoredInstance[] = [];
  const deps: ReconcileDeps = {
    pacs,
    index: { has: async () => new Set(), listStudy: async () => [], studyUids: async () => [], deleteMany: async () => 0 },
    enqueuer: {
      queue: { name: queueName, getJobState: async () => 'unknown' },
      modelVersion: 'v-test',
      enqueue: async (list: readonly StoredInstance[]) => {
        queued.push(...list);
        return { enqueued: list.length, failed: 0 };
      },
    } as unknown as IndexEnqueuer,
  };
  const passes: ReconcileSummary[] = [];
  const r = startPeriodicReconciler(deps, {
    redisUrl: testStack().redisUrl,
    intervalS: 0,
    changes: { feed, intervalS: 0.2 },
    log: createLogger('silent', 'test'),
    onPass: (s) => passes.push(s),
  });
  return { queued, passes, prefix: `cbmir-reconcile-lock:${queueName}:v-test`, stop: () => r.stop() };
}

test('a study the fast path could not reconcile stays due and is reconciled at the next poll', { timeout: 30_000 }, async () => {
  let polls = 0;
  const feed = {
    head: async () => 10,
    // One import names A and B; nothing changes after it.
    poll: async (since: number) => (polls++ === 0 ? { studies: [A, B], last: 12 } : { studies: [], last: Math.max(since, 12) }),
    close: async () => undefined,
  } as unknown as OrthancChangeFeed;
  let bFailures = 1;
  const { queued, passes, prefix, stop } = fastPath(feed, (study) =>
    study === B && bFailures-- > 0 ? new Error('the PACS answered 503') : undefined,
  );
  const redis = new Redis(testStack().redisUrl);
  const dueKey = `${prefix}:changes-due`;
  try {
    const deadline = Date.now() + 20_000;
    while (passes.length < 2 && Date.now() < deadline) await sleep(50);
    assert.equal(passes.length, 2, `passes: ${JSON.stringify(passes)}`);
    assert.deepEqual(
      passes[0]!.studyErrors.map((e) => e.study),
      [B],
    );
    assert.equal(passes[1]!.studies, 1, 'only B is asked again');
    assert.deepEqual(queued.map((i) => i.sopInstanceUid).sort(), [`${A}.1.1`, `${B}.1.1`]);
    assert.equal(await redis.get(`${prefix}:changes-cursor`), '12', 'the cursor moved past the import');
    assert.equal(await redis.scard(dueKey), 0, 'nothing left due');
    const seen = polls;
    while (polls < seen + 2 && Date.now() < deadline) await sleep(50);
    assert.equal(passes.length, 2, 'polls with nothing due run no pass');
  } finally {
    await stop();
    await redis.del(dueKey, `${prefix}:changes-cursor`);
    redis.disconnect();
  }
});

test(
  'a study that always fails does not hold back later changes, and is left to the full crawl after five polls',
  { timeout: 60_000 },
  async () => {
    const BAD = ['2.25.78.1', '2.25.78.2', '2.25.78.3', '2.25.78.4', '2.25.78.5'];
    const LATER = '2.25.78.9';
    let polls = 0;
    const feed = {
      head: async () => 10,
      // Five studies the PACS always fails (a stop after five in a row), then one more change.
      poll: async (since: number) => {
        polls++;
        if (polls === 1) return { studies: BAD, last: 15 };
        if (polls === 3) return { studies: [LATER], last: 16 };
        return { studies: [], last: Math.max(since, 16) };
      },
      close: async () => undefined,
    } as unknown as OrthancChangeFeed;
    const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8042'), { code: 'ECONNREFUSED' });
    const run = fastPath(feed, (study) => (BAD.includes(study) ? refused() : undefined));
    const { passes, prefix } = run;
    const redis = new Redis(testStack().redisUrl);
    try {
      const deadline = Date.now() + 45_000;
      while ((passes.length < 5 || (await redis.scard(`${prefix}:changes-due`)) > 0) && Date.now() < deadline) await sleep(100);
      const queued = run.queued.map((i) => i.studyInstanceUid);
      assert.deepEqual(queued, [LATER], 'the later change was reconciled although the five before it kept failing');
      const later = passes.findIndex((p) => p.enqueued === 1);
      assert.ok(later >= 0 && later <= 2, `reconciled at pass ${later}, not after the failing ones gave up`);
      assert.equal(passes.filter((p) => p.stopped).length, 5, 'each run stopped at the five failures in a row');
      assert.equal(await redis.scard(`${prefix}:changes-due`), 0, 'left to the full crawl after five polls');
      assert.equal(await redis.hlen(`${prefix}:changes-tries`), 0);
    } finally {
      await run.stop();
      await redis.del(`${prefix}:changes-due`, `${prefix}:changes-tries`, `${prefix}:changes-cursor`);
      redis.disconnect();
    }
  },
);
