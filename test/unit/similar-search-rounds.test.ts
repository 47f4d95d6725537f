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

/** An embedded index in `dir` of `count` documents, each its own study `2.25.<tag>.<i>`, and the query vector (vectors[0]). */
async function oneStudyPerDoc(
  file: string,
  tag: number,
  count: number,
  seed: number,
): Promise<{ index: EmbeddedIndex; vectors: Float32Array[] }> {
  const dims = 16;
  const index = new EmbeddedIndex({ path: join(dir, file) });
  await index.ensure(dims, 'v1');
  const vectors = unitVectors(count + 1, dims, seed);
  const docs: VectorDoc[] = vectors.slice(1).map((vector, i) => ({
    sopInstanceUid: `2.25.${tag}.${i}.1.1`,
    studyInstanceUid: `2.25.${tag}.${i}`,
    seriesInstanceUid: `2.25.${tag}.${i}.1`,
    modelVersion: 'v1',
    indexedAt: new Date(0).toISOString(),
    vector,
  }));
  await index.upsert(docs);
  return { index, vectors };
}

/** A SimilarSearch over `index` whose access checks are `checkStudies`. */
function searchOver(index: EmbeddedIndex, checkStudies: (studies: Iterable<string>) => Promise<Map<string, StudyAccess>>): SimilarSearch {
  const access = { checkStudies } as unknown as AccessChecker;
  return new SimilarSearch({ index, access, modelVersion: 'v1', log: createLogger('silent', 'test') } as unknown as SimilarSearchDeps);
}

test('a caller who may read 1 study in 20 still gets `limit` results when the index holds them', async () => {
  const { index, vectors } = await oneStudyPerDoc('rounds.sqlite', 9, 1000, 3);
  const asked: number[] = [];
  const search = searchOver(index, async (studies) => {
    const list = [...studies];
    asked.push(list.length);
    return new Map(list.map((s) => [s, { verdict: Number(s.split('.')[3]) % 20 === 0 ? 'yes' : 'no' }] as const));
  });
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
  const { index, vectors } = await oneStudyPerDoc('refused.sqlite', 8, 200, 5);
  const searchWith = (verdict: (study: string, round: number, position: number) => 'yes' | 'no' | 401 | 403) => {
    let round = 0;
    return searchOver(index, async (studies) => {
      round++;
      return new Map([...studies].map((s, k) => [s, { verdict: verdict(s, round, k) }] as const));
    }).search(
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
  const { index, vectors } = await oneStudyPerDoc('budget.sqlite', 7, 4000, 9);
  const asked = new Set<string>();
  let readable = 0;
  // Readable: 1 study in 700, so 10 results would take ~7,000 studies checked.
  const search = searchOver(index, async (studies) => {
    const list = [...studies];
    for (const s of list) asked.add(s);
    return new Map(
      list.map((s) => {
        const yes = Number(s.split('.')[3]) % 700 === 0;
        if (yes) readable++;
        return [s, { verdict: yes ? 'yes' : 'no' }] as const;
      }),
    );
  });
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
