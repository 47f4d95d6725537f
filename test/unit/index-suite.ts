/**
 * The behavioural suite every VectorIndex backend must pass (run by
 * test/unit/index-embedded.test.ts and test/integration/index-elasticsearch.test.ts).
 *
 * Expected answers are computed here independently (float64 brute force over the same
 * vectors), never taken from a backend. Vectors come from a seeded PRNG: they are
 * embeddings-shaped numbers, not images, so nothing medical is synthesised.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IndexError } from '../../core/index/errors.js';
import type { KnnFilter, VectorDoc, VectorDocMeta, VectorIndex } from '../../core/index/types.js';
import { prng, unitVectors } from '../helpers/vectors.js';

export { prng, unitVectors };

export const DIMS = 32;

const MODALITIES = ['MR', 'CT', 'CR'];
const BODY_PARTS = ['BRAIN', 'CHEST', 'KNEE', undefined];

/**
 * A small archive: 6 patients × 2 studies × 2 series × 5 instances = 120 docs.
 * UIDs under 2.25 (UUID-derived root) with readable structure for debugging.
 */
export function makeDocs(modelVersion: string, seed = 1, dims = DIMS): VectorDoc[] {
  const vectors = unitVectors(120, dims, seed);
  const docs: VectorDoc[] = [];
  let i = 0;
  for (let p = 1; p <= 6; p++) {
    for (let s = 1; s <= 2; s++) {
      const study = `2.25.1000.${p}.${s}`;
      for (let se = 1; se <= 2; se++) {
        const series = `${study}.${se}`;
        for (let n = 1; n <= 5; n++) {
          docs.push({
            sopInstanceUid: `${series}.${n}`,
            studyInstanceUid: study,
            seriesInstanceUid: series,
            sopClassUid: '1.2.840.10008.5.1.4.1.1.4',
            modality: MODALITIES[p % 3]!,
            ...(BODY_PARTS[(p + se) % 4] !== undefined ? { bodyPartExamined: BODY_PARTS[(p + se) % 4]! } : {}),
            label: `class-${(p + n) % 3}`,
            patientKey: `pk${p.toString().padStart(30, '0')}`,
            ...(n === 3 ? { frame: 2 } : {}),
            modelVersion,
            indexedAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
            vector: vectors[i++]!,
          });
        }
      }
    }
  }
  return docs;
}

function l2d(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return Math.sqrt(s);
}

function matches(d: VectorDocMeta, f: KnnFilter | undefined): boolean {
  if (!f) return true;
  const list = (v: string | readonly string[] | undefined) => (v === undefined ? [] : typeof v === 'string' ? [v] : v);
  const mod = list(f.modality);
  if (mod.length && !mod.includes(d.modality ?? '\u0000')) return false;
  const bp = list(f.bodyPartExamined);
  if (bp.length && !bp.includes(d.bodyPartExamined ?? '\u0000')) return false;
  if (f.excludeStudyUids?.includes(d.studyInstanceUid)) return false;
  if (f.excludeSeriesUids?.includes(d.seriesInstanceUid)) return false;
  if (d.patientKey !== undefined && f.excludePatientKeys?.includes(d.patientKey)) return false;
  if (f.excludeSopInstanceUids?.includes(d.sopInstanceUid)) return false;
  return true;
}

/** Reference answer: exact k-NN in float64 over the docs that pass the filter. */
export function bruteForce(docs: readonly VectorDoc[], q: ArrayLike<number>, k: number, f?: KnnFilter) {
  return docs
    .filter((d) => matches(d, f))
    .map((d) => ({ uid: d.sopInstanceUid, distance: l2d(d.vector as ArrayLike<number>, q) }))
    .sort((a, b) => a.distance - b.distance)
    .slice(0, k);
}

export interface SuiteContext {
  /** A fresh, unbound handle on an empty index named `name` (unique per test). */
  open(name: string): Promise<VectorIndex>;
  /** Make writes searchable (ES refresh); a no-op for the embedded store. */
  settle?(index: VectorIndex): Promise<void>;
  /** Distance tolerance: 1e-6 exact float math; larger for scores read back from ES. */
  readonly distanceTolerance: number;
  /** Removes everything `name` created. */
  cleanup(name: string): Promise<void>;
}

let counter = 0;
function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter++}`;
}

/** Register the suite's tests. */
export function indexContractSuite(label: string, ctx: SuiteContext): void {
  const V1 = '0.1.0-test';
  const W = { refresh: 'wait_for' as const };

  async function withIndex(fn: (ix: VectorIndex, name: string) => Promise<void>): Promise<void> {
    const name = uniqueName('cbmir-test');
    const ix = await ctx.open(name);
    try {
      await fn(ix, name);
    } finally {
      await ix.close();
      await ctx.cleanup(name);
    }
  }

  async function loaded(ix: VectorIndex, docs = makeDocs(V1)): Promise<VectorDoc[]> {
    await ix.ensure(DIMS, V1);
    const r = await ix.upsert(docs, W);
    assert.deepEqual(r.failed, []);
    assert.equal(r.written, docs.length);
    await ctx.settle?.(ix);
    return docs;
  }

  function assertSameRanking(got: Array<{ doc: VectorDocMeta; distance: number }>, want: Array<{ uid: string; distance: number }>) {
    assert.equal(got.length, want.length, 'number of hits');
    for (let i = 0; i < want.length; i++) {
      assert.ok(Math.abs(got[i]!.distance - want[i]!.distance) <= ctx.distanceTolerance, `hit ${i}: distance ${got[i]!.distance} vs ${want[i]!.distance}`);
      // Equal up to ties: the uid at rank i must be one whose true distance equals the expected one.
      if (got[i]!.doc.sopInstanceUid !== want[i]!.uid) {
        const tie = want.find((w) => w.uid === got[i]!.doc.sopInstanceUid);
        assert.ok(tie && Math.abs(tie.distance - want[i]!.distance) <= ctx.distanceTolerance, `hit ${i}: ${got[i]!.doc.sopInstanceUid} instead of ${want[i]!.uid}`);
      }
    }
    for (let i = 1; i < got.length; i++) assert.ok(got[i]!.distance >= got[i - 1]!.distance, 'sorted ascending');
  }

  test(`${label}: upsert then get returns every field and the vector`, async () => {
    await withIndex(async (ix) => {
      const docs = await loaded(ix);
      assert.equal(await ix.count(), docs.length);
      const want = docs[17]!;
      const got = await ix.get(want.sopInstanceUid);
      assert.ok(got, 'document found');
      const { vector: gv, ...gotFields } = got;
      const { vector: wv, ...wantFields } = want;
      assert.deepEqual(gotFields, wantFields);
      assert.deepEqual(Array.from(gv), Array.from(wv as Float32Array));
      assert.equal(await ix.get('2.25.999999'), undefined);
      assert.equal(await ix.liveVersion(), V1);
      // Many gets at once (the backend may coalesce them): each answer is its own document.
      const asked = [...docs.slice(0, 40).map((d) => d.sopInstanceUid), '2.25.999998', docs[3]!.sopInstanceUid];
      const answers = await Promise.all(asked.map((uid) => ix.get(uid)));
      answers.forEach((a, i) => {
        if (asked[i] === '2.25.999998') assert.equal(a, undefined);
        else assert.equal(a?.sopInstanceUid, asked[i]);
      });
      assert.deepEqual(Array.from(answers[5]!.vector), Array.from(docs[5]!.vector as Float32Array));
    });
  });

  test(`${label}: knn ranks by Euclidean distance like exact search`, async () => {
    await withIndex(async (ix) => {
      const docs = await loaded(ix);
      const queries = unitVectors(5, DIMS, 99);
      queries.push(docs[40]!.vector as Float32Array); // a stored vector: distance 0 first
      for (const q of queries) {
        const hits = await ix.knn(q, { k: 10 });
        assertSameRanking(hits, bruteForce(docs, q, 10));
      }
      // A full ranking (evaluation computes mAP over the whole database): k > n gives all n.
      const all = await ix.knn(queries[0]!, { k: 500 });
      assertSameRanking(all, bruteForce(docs, queries[0]!, 500));
      assert.equal(all.length, docs.length);
      const self = await ix.knn(docs[40]!.vector, { k: 1 });
      assert.equal(self[0]!.doc.sopInstanceUid, docs[40]!.sopInstanceUid);
      assert.ok(self[0]!.distance < 1e-3);
      const { vector: _v, ...fields } = docs[40]!;
      assert.deepEqual(self[0]!.doc, fields, 'hits carry the document fields, not the vector');
    });
  });

  test(`${label}: filters and exclusions are applied before ranking`, async () => {
    await withIndex(async (ix) => {
      const docs = await loaded(ix);
      const q = unitVectors(1, DIMS, 7)[0]!;
      const anchor = docs[0]!;
      const filters: KnnFilter[] = [
        { modality: 'CT' },
        { modality: ['CT', 'CR'] },
        { bodyPartExamined: 'BRAIN' },
        { excludeStudyUids: [anchor.studyInstanceUid] },
        { excludeSeriesUids: [anchor.seriesInstanceUid, docs[60]!.seriesInstanceUid] },
        { excludePatientKeys: [anchor.patientKey!] },
        { excludeSopInstanceUids: [docs[5]!.sopInstanceUid] },
        { modality: 'MR', excludePatientKeys: [docs[30]!.patientKey!], excludeStudyUids: [docs[100]!.studyInstanceUid] },
        { modality: 'US' }, // no such modality: no hits
      ];
      for (const filter of filters) {
        const hits = await ix.knn(q, { k: 10, filter });
        const want = bruteForce(docs, q, 10, filter);
        assertSameRanking(hits, want);
        for (const h of hits) assert.ok(matches(h.doc, filter), `hit ${h.doc.sopInstanceUid} violates ${JSON.stringify(filter)}`);
      }
      // Exclude 5 of 6 patients: the remaining 20 docs still fill k = 15.
      const keys = [...new Set(docs.map((d) => d.patientKey!))];
      const hits = await ix.knn(q, { k: 15, filter: { excludePatientKeys: keys.slice(1) } });
      assert.equal(hits.length, 15);
      assert.ok(hits.every((h) => h.doc.patientKey === keys[0]));
    });
  });

  test(`${label}: re-upsert by SOP Instance UID replaces, never duplicates`, async () => {
    await withIndex(async (ix) => {
      const docs = await loaded(ix);
      const moved = unitVectors(1, DIMS, 1234)[0]!;
      const updated = { ...docs[3]!, label: 'relabelled', vector: moved, indexedAt: new Date(Date.UTC(2026, 5, 1)).toISOString() };
      const r = await ix.upsert([updated, ...docs.slice(0, 3)], W);
      assert.equal(r.written, 4);
      await ctx.settle?.(ix);
      assert.equal(await ix.count(), docs.length);
      const got = await ix.get(updated.sopInstanceUid);
      assert.equal(got?.label, 'relabelled');
      assert.deepEqual(Array.from(got!.vector), Array.from(moved));
      const hits = await ix.knn(moved, { k: 1 });
      assert.equal(hits[0]!.doc.sopInstanceUid, updated.sopInstanceUid);
      assert.ok(hits[0]!.distance < 1e-3);
    });
  });

  test(`${label}: has() answers which UIDs are indexed`, async () => {
    await withIndex(async (ix) => {
      const docs = await loaded(ix);
      const ask = [docs[0]!.sopInstanceUid, '2.25.42', docs[119]!.sopInstanceUid, '2.25.43'];
      assert.deepEqual([...(await ix.has(ask))].sort(), [docs[0]!.sopInstanceUid, docs[119]!.sopInstanceUid].sort());
      assert.equal((await ix.has(docs.map((d) => d.sopInstanceUid))).size, docs.length);
      assert.equal((await ix.has([])).size, 0);
    });
  });

  test(`${label}: delete removes a document from get, count and knn`, async () => {
    await withIndex(async (ix) => {
      const docs = await loaded(ix);
      const victim = docs[10]!;
      assert.equal(await ix.delete(victim.sopInstanceUid, W), true);
      assert.equal(await ix.delete(victim.sopInstanceUid, W), false);
      await ctx.settle?.(ix);
      assert.equal(await ix.get(victim.sopInstanceUid), undefined);
      assert.equal(await ix.count(), docs.length - 1);
      const hits = await ix.knn(victim.vector, { k: 5 });
      assert.ok(hits.every((h) => h.doc.sopInstanceUid !== victim.sopInstanceUid));
      assertSameRanking(hits, bruteForce(docs.filter((d) => d !== victim), victim.vector as Float32Array, 5));
    });
  });

  test(`${label}: listStudy, studyUids and deleteMany: what the reconciler compares with the PACS`, async () => {
    await withIndex(async (ix) => {
      const docs = await loaded(ix);
      const study = docs[0]!.studyInstanceUid;
      const inStudy = docs.filter((d) => d.studyInstanceUid === study);
      const listed = await ix.listStudy(study, 1_000);
      assert.deepEqual(
        listed.map((r) => `${r.sopInstanceUid}|${r.seriesInstanceUid}|${r.indexedAt}`).sort(),
        inStudy.map((d) => `${d.sopInstanceUid}|${d.seriesInstanceUid}|${d.indexedAt}`).sort(),
      );
      assert.equal((await ix.listStudy(study, 3)).length, 3, 'bounded');
      assert.deepEqual(await ix.listStudy('2.25.404', 10), []);
      assert.deepEqual((await ix.studyUids()).sort(), [...new Set(docs.map((d) => d.studyInstanceUid))].sort());
      const gone = inStudy.slice(0, 4).map((d) => d.sopInstanceUid);
      assert.equal(await ix.deleteMany([...gone, '2.25.404'], W), 4, 'missing ones are ignored');
      assert.equal(await ix.deleteMany([], W), 0);
      await ctx.settle?.(ix);
      assert.equal(await ix.count(), docs.length - 4);
      assert.equal((await ix.has(gone)).size, 0);
      assert.equal((await ix.listStudy(study, 1_000)).length, inStudy.length - 4);
      const hits = await ix.knn(inStudy[0]!.vector, { k: 3 });
      assert.ok(hits.every((h) => !gone.includes(h.doc.sopInstanceUid)), 'a deleted document is not found');
    });
  });

  test(`${label}: bad input is refused with a reason, per document`, async () => {
    await withIndex(async (ix) => {
      await assert.rejects(ix.upsert(makeDocs(V1).slice(0, 1)), (e: unknown) => e instanceof IndexError && e.code === 'NOT_READY');
      await assert.rejects(ix.knn(new Float32Array(DIMS), { k: 3 }), (e: unknown) => e instanceof IndexError && e.code === 'NOT_READY');
      assert.equal(await ix.count(), 0);
      await ix.ensure(DIMS, V1);
      const good = makeDocs(V1)[0]!;
      const r = await ix.upsert(
        [
          good,
          { ...good, sopInstanceUid: 'not a uid' },
          { ...good, sopInstanceUid: '2.25.7', vector: new Float32Array(DIMS + 1) },
          { ...good, sopInstanceUid: '2.25.8', vector: Object.assign(new Float32Array(DIMS), { 3: Number.NaN }) },
          { ...good, sopInstanceUid: '2.25.9', modelVersion: 'other' },
        ],
        W,
      );
      assert.equal(r.written, 1);
      assert.deepEqual(
        r.failed.map((f) => [f.sopInstanceUid, f.transient]),
        [['not a uid', false], ['2.25.7', false], ['2.25.8', false], ['2.25.9', false]],
      );
      assert.match(r.failed[1]!.reason, /33 dimensions, the index has 32/);
      await assert.rejects(ix.knn(new Float32Array(DIMS - 1), { k: 3 }), (e: unknown) => e instanceof IndexError && e.code === 'DIMS_MISMATCH' && !e.transient);
      await assert.rejects(ix.knn(new Float32Array(DIMS), { k: 0 }), (e: unknown) => e instanceof IndexError && e.code === 'BAD_INPUT');
      await assert.rejects(ix.knn(new Float32Array(DIMS), { k: 100_000 }), (e: unknown) => e instanceof IndexError && e.code === 'BAD_INPUT');
      await assert.rejects(ix.ensure(DIMS * 2, V1), (e: unknown) => e instanceof IndexError && e.code === 'DIMS_MISMATCH');
      await assert.rejects(ix.ensure(DIMS, '0.1.0-TEST'), (e: unknown) => e instanceof IndexError && /distinct version/.test(e.message));
    });
  });

  test(`${label}: a new model version is indexed beside the old one and swapped in`, async () => {
    const name = uniqueName('cbmir-test');
    const V2 = '0.2.0-test';
    const writer1 = await ctx.open(name);
    const writer2 = await ctx.open(name);
    const reader = await ctx.open(name);
    try {
      const docs1 = await loaded(writer1);
      const docs2 = makeDocs(V2, 2).slice(0, 50);
      await writer2.ensure(DIMS, V2);
      assert.equal((await writer2.upsert(docs2, W)).written, 50);
      await ctx.settle?.(writer2);
      assert.equal(await reader.liveVersion(), V1, 'the first version stays live');
      assert.deepEqual((await reader.versions()).sort(), [V1, V2].sort());
      assert.equal(await reader.count(), docs1.length);
      assert.equal(await writer2.count(), 50, 'a bound handle reads its own version');
      await assert.rejects(reader.swapAlias('9.9.9'), (e: unknown) => e instanceof IndexError && e.code === 'UNKNOWN_VERSION');
      await reader.swapAlias(V2);
      assert.equal(await reader.liveVersion(), V2);
      // Unbound handles follow the live version (Elasticsearch handles re-check it within 2 s).
      const deadline = Date.now() + 5_000;
      while ((await reader.count()) !== 50 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      assert.equal(await reader.count(), 50);
      const q = docs2[7]!.vector;
      assertSameRanking(await reader.knn(q, { k: 5 }), bruteForce(docs2, q as Float32Array, 5));
      await assert.rejects(reader.dropVersion(V2), (e: unknown) => e instanceof IndexError && /is live/.test(e.message));
      await reader.dropVersion(V1);
      assert.deepEqual(await reader.versions(), [V2]);
    } finally {
      await writer1.close();
      await writer2.close();
      await reader.close();
      await ctx.cleanup(name);
    }
  });
}
