/**
 * The multi-round /similar search on a real embedded index: when the caller may read only
 * a few of the nearest studies, later rounds ask for more candidates, so the answer is
 * not short while readable results exist.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { EmbeddedIndex } from '../../core/index/embedded/embedded-index.js';
import type { VectorDoc } from '../../core/index/types.js';
import { createLogger } from '../../core/log.js';
import type { AccessChecker, StudyAccess } from '../../gateway/similar-access.js';
import { MAX_STUDIES_CHECKED, SimilarSearch, type SimilarSearchDeps } from '../../gateway/similar-search.js';
import { ANONYMOUS } from '../../gateway/caller.js';
import { unitVectors } from './index-suite.js';

const dir = mkdtempSync(join(tmpdir(), 'cbmir-rounds-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('a caller who may read 1 study in 20 still gets `limit` results when the index holds them', async () => {
  const dims = 16;
  const index = new EmbeddedIndex({ path: join(dir, 'rounds.sqlite') });
  await index.ensure(dims, 'v1');
  const vectors = unitVectors(1001, dims, 3);
  const docs: VectorDoc[] = vectors.slice(1).map((vector, i) => ({
    sopInstanceUid: `2.25.9.${i}.1.1`,
    studyInstanceUid: `2.25.9.${i}`,
    seriesInstanceUid: `2.25.9.${i}.1`,
    modelVersion: 'v1',
    indexedAt: new Date(0).toISOString(),
    vector,
  }));
  await index.upsert(docs);
  const asked: number[] = [];
  const access = {
    async checkStudies(studies: Iterable<string>): Promise<Map<string, StudyAccess>> {
      const list = [...studies];
      asked.push(list.length);
      return new Map(list.map((s) => [s, { verdict: Number(s.split('.')[3]) % 20 === 0 ? 'yes' : 'no' }] as const));
    },
  } as unknown as AccessChecker;
  const search = new SimilarSearch({
    index,
    access,
    modelVersion: 'v1',
    log: createLogger('silent', 'test'),
  } as unknown as SimilarSearchDeps);
  try {
    const out = await search.search(
      { vector: vectors[0]!, source: 'upload', modelVersion: 'v1' },
      { limit: 10, groupBy: 'instance', excludeSameStudy: true, excludeSamePatient: true },
      ANONYMOUS,
    );
    assert.equal(out.results.length, 10, `rounds ${out.rounds}, candidates per round ${asked.join(',')}`);
    assert.ok(out.rounds <= 5);
    for (const g of out.results) assert.equal(Number(g.best.doc.studyInstanceUid.split('.')[3]) % 20, 0);
    // A query vector of another model (embedded while the live version was swapped) is never ranked here.
    await assert.rejects(
      search.search(
        { vector: vectors[0]!, source: 'upload', modelVersion: 'v0' },
        { limit: 10, groupBy: 'instance', excludeSameStudy: true, excludeSamePatient: true },
        ANONYMOUS,
      ),
      (e: Error & { code?: string; status?: number }) => e.code === 'NOT_READY' && e.status === 503 && /changed to v1/.test(e.message),
    );
  } finally {
    await index.close();
  }
});

test('refused credentials: an answer while nothing was readable; after a readable study, refused studies are only dropped', async () => {
  const dims = 16;
  const index = new EmbeddedIndex({ path: join(dir, 'refused.sqlite') });
  await index.ensure(dims, 'v1');
  const vectors = unitVectors(201, dims, 5);
  await index.upsert(
    vectors.slice(1).map((vector, i) => ({
      sopInstanceUid: `2.25.8.${i}.1.1`,
      studyInstanceUid: `2.25.8.${i}`,
      seriesInstanceUid: `2.25.8.${i}.1`,
      modelVersion: 'v1',
      indexedAt: new Date(0).toISOString(),
      vector,
    })),
  );
  const searchWith = (verdict: (study: string, round: number, position: number) => 'yes' | 'no' | 401 | 403) => {
    let round = 0;
    const access = {
      async checkStudies(studies: Iterable<string>): Promise<Map<string, StudyAccess>> {
        round++;
        return new Map([...studies].map((s, k) => [s, { verdict: verdict(s, round, k) }] as const));
      },
    } as unknown as AccessChecker;
    return new SimilarSearch({
      index,
      access,
      modelVersion: 'v1',
      log: createLogger('silent', 'test'),
    } as unknown as SimilarSearchDeps).search(
      { vector: vectors[0]!, source: 'upload', modelVersion: 'v1' },
      { limit: 10, groupBy: 'instance', excludeSameStudy: true, excludeSamePatient: true },
      ANONYMOUS,
    );
  };
  try {
    await assert.rejects(
      searchWith(() => 401),
      (e: Error & { code?: string }) => e.code === 'UNAUTHORIZED',
    );
    await assert.rejects(
      searchWith(() => 403),
      (e: Error & { code?: string }) => e.code === 'FORBIDDEN',
    );
    // Round 1 finds one readable study (its nearest hit); the later rounds' QIDOs are refused as a
    // whole (one study in their batch is forbidden): the readable result stays, nothing is thrown.
    let readable = '';
    const kept = await searchWith((s, round, k) => {
      if (round === 1 && k === 0) readable = s;
      return round === 1 ? (s === readable ? 'yes' : 'no') : 403;
    });
    assert.ok(kept.rounds > 1, 'the search widened after round 1');
    assert.deepEqual(
      kept.results.map((g) => g.best.doc.studyInstanceUid),
      [readable],
    );
  } finally {
    await index.close();
  }
});

test('one search asks the PACS about at most MAX_STUDIES_CHECKED studies, then answers short', async () => {
  const dims = 16;
  const index = new EmbeddedIndex({ path: join(dir, 'budget.sqlite') });
  await index.ensure(dims, 'v1');
  const vectors = unitVectors(4001, dims, 9);
  await index.upsert(
    vectors.slice(1).map((vector, i) => ({
      sopInstanceUid: `2.25.7.${i}.1.1`,
      studyInstanceUid: `2.25.7.${i}`,
      seriesInstanceUid: `2.25.7.${i}.1`,
      modelVersion: 'v1',
      indexedAt: new Date(0).toISOString(),
      vector,
    })),
  );
  const asked = new Set<string>();
  let readable = 0;
  // Readable: 1 study in 700, so 10 results would take ~7,000 studies checked.
  const access = {
    async checkStudies(studies: Iterable<string>): Promise<Map<string, StudyAccess>> {
      const list = [...studies];
      for (const s of list) asked.add(s);
      return new Map(
        list.map((s) => {
          const yes = Number(s.split('.')[3]) % 700 === 0;
          if (yes) readable++;
          return [s, { verdict: yes ? 'yes' : 'no' }] as const;
        }),
      );
    },
  } as unknown as AccessChecker;
  const search = new SimilarSearch({
    index,
    access,
    modelVersion: 'v1',
    log: createLogger('silent', 'test'),
  } as unknown as SimilarSearchDeps);
  try {
    const out = await search.search(
      { vector: vectors[0]!, source: 'upload', modelVersion: 'v1' },
      { limit: 10, groupBy: 'instance', excludeSameStudy: true, excludeSamePatient: true },
      ANONYMOUS,
    );
    assert.equal(asked.size, MAX_STUDIES_CHECKED, `rounds ${out.rounds}`);
    assert.ok(out.results.length < 10 && out.results.length === readable, `${out.results.length} results, ${readable} readable asked`);
    for (const g of out.results) assert.equal(Number(g.best.doc.studyInstanceUid.split('.')[3]) % 700, 0);
  } finally {
    await index.close();
  }
});
