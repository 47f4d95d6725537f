/**
 * What a PACS refusal of an access QIDO means (gateway/similar-access.ts): a 403 of a list may be
 * about one study of it (an authorization plugin refuses the whole request), so it is neither
 * given to every study asked nor cached for them — the list is halved until the refused studies
 * are found, in few QIDOs and without holding other callers' checks; a 401 is about the
 * credential; and a client asked to log in is told the PACS's own challenge.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { EmbeddedIndex } from '../../core/index/embedded/embedded-index.js';
import { createLogger } from '../../core/log.js';
import { PacsHttpError, type PacsClient } from '../../core/pacs/client.js';
import { callerOf } from '../../gateway/caller.js';
import { AccessChecker, FALLBACK_CHALLENGE, pacsProblem, wwwAuthenticate } from '../../gateway/similar-access.js';
import { SimilarSearch, type SimilarSearchDeps } from '../../gateway/similar-search.js';

const QUERY_STUDY = '2.25.40.1';
const READABLE = '2.25.40.2';
const FORBIDDEN = '2.25.40.9';
const caller = callerOf({ authorization: 'Basic dTpw' });
const dir = mkdtempSync(join(tmpdir(), 'cbmir-refusals-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A PACS that refuses (403) any study list naming FORBIDDEN, and lists every other study. */
function pluginPacs() {
  const lists: string[][] = [];
  const pacs = {
    async qido(path: string, params: Record<string, string | number | undefined>) {
      const list = String(params.StudyInstanceUID).split(',');
      lists.push(list);
      if (list.includes(FORBIDDEN)) throw new PacsHttpError(403, path);
      return list.map((s) => ({ '0020000D': { vr: 'UI', Value: [s] } }));
    },
  } as unknown as PacsClient;
  return { pacs, lists };
}

test('a 403 of a list is not every study’s: the list is taken apart, and only the study refused alone is cached as forbidden', async () => {
  const { pacs, lists } = pluginPacs();
  const access = new AccessChecker(pacs, { ttlMs: 60_000, maxEntries: 100, defaultAuthorization: undefined });
  const verdicts = await access.check([QUERY_STUDY, READABLE, FORBIDDEN], caller);
  assert.deepEqual(Object.fromEntries(verdicts), { [QUERY_STUDY]: 'yes', [READABLE]: 'yes', [FORBIDDEN]: 403 });
  const asked = lists.length;
  assert.deepEqual(Object.fromEntries(await access.check([QUERY_STUDY, FORBIDDEN], caller)), { [QUERY_STUDY]: 'yes', [FORBIDDEN]: 403 });
  assert.equal(lists.length, asked, 'the single-study verdicts are cached');
});

test('a 401 of a list is the credential’s: every study asked gets it from one QIDO, with the PACS’s challenge', async () => {
  let qidos = 0;
  const pacs = {
    async qido(path: string) {
      qidos++;
      throw new PacsHttpError(401, path, 'Bearer realm="pacs"');
    },
  } as unknown as PacsClient;
  const access = new AccessChecker(pacs, { ttlMs: 60_000, maxEntries: 100, defaultAuthorization: undefined });
  const out = await access.checkStudies([QUERY_STUDY, READABLE, FORBIDDEN], caller);
  assert.equal(qidos, 1);
  const refused = { verdict: 401, challenge: 'Bearer realm="pacs"' };
  assert.deepEqual(Object.fromEntries(out), { [QUERY_STUDY]: refused, [READABLE]: refused, [FORBIDDEN]: refused });
  await assert.rejects(access.requireReadable(READABLE, caller, 'the study'), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'UNAUTHORIZED');
    assert.equal(wwwAuthenticate(e as never), 'Bearer realm="pacs"');
    return true;
  });
});

test('a PACS that says "no match" with 404 (not [] or 204): the study or instance is not found, not a PACS failure', async () => {
  const asked: string[] = [];
  const pacs = {
    async qido(path: string) {
      asked.push(path);
      throw new PacsHttpError(404, path);
    },
  } as unknown as PacsClient;
  const access = new AccessChecker(pacs, { ttlMs: 60_000, maxEntries: 100, defaultAuthorization: undefined });
  assert.deepEqual(Object.fromEntries(await access.check([QUERY_STUDY, READABLE], caller)), { [QUERY_STUDY]: 'no', [READABLE]: 'no' });
  const notFound = (e: Error & { code?: string }) => {
    assert.equal(e.code, 'NOT_FOUND');
    assert.match(e.message, /^the query instance is not in the PACS/);
    return true;
  };
  await assert.rejects(access.requireReadable('2.25.40.3', caller, 'the query instance'), notFound);
  const uids = { studyInstanceUid: QUERY_STUDY, seriesInstanceUid: `${QUERY_STUDY}.1`, sopInstanceUid: `${QUERY_STUDY}.1.1` };
  await assert.rejects(access.requireInstance(uids, caller, 'the query instance'), notFound);
  assert.deepEqual(asked, ['/studies', '/studies', `/studies/${QUERY_STUDY}/series/${QUERY_STUDY}.1/instances`]);
  // Other refusals keep their meaning: a 500 is the PACS's failure.
  const failing = { qido: async (path: string) => Promise.reject(new PacsHttpError(500, path)) } as unknown as PacsClient;
  const checker = new AccessChecker(failing, { ttlMs: 60_000, maxEntries: 100, defaultAuthorization: undefined });
  await assert.rejects(checker.requireInstance(uids, caller, 'the query instance'), { code: 'UPSTREAM_UNREACHABLE' });
  await assert.rejects(checker.requireReadable(QUERY_STUDY, caller, 'the query instance'), { code: 'UPSTREAM_UNREACHABLE' });
});

test('WWW-Authenticate: the PACS’s challenge where it sent one, the gateway’s own otherwise', () => {
  assert.equal(
    wwwAuthenticate(pacsProblem(new PacsHttpError(401, '/studies', 'Digest realm="orthanc", nonce="1"'))),
    'Digest realm="orthanc", nonce="1"',
  );
  assert.equal(wwwAuthenticate(pacsProblem(new PacsHttpError(401, '/studies'))), FALLBACK_CHALLENGE);
  assert.equal(wwwAuthenticate(pacsProblem(new PacsHttpError(403, '/studies', 'Basic realm="x"'))), undefined);
});

test('search: a readable query study is answered, with its readable results, when a result study makes the PACS refuse the list', async () => {
  const index = new EmbeddedIndex({ path: join(dir, 'refusals.sqlite') });
  await index.ensure(4, 'v1');
  const doc = (study: string, vector: number[]) => ({
    sopInstanceUid: `${study}.1.1`,
    studyInstanceUid: study,
    seriesInstanceUid: `${study}.1`,
    modelVersion: 'v1',
    indexedAt: new Date(0).toISOString(),
    vector,
  });
  await index.upsert([doc(QUERY_STUDY, [1, 0, 0, 0]), doc(FORBIDDEN, [0.99, 0.141, 0, 0]), doc(READABLE, [0.9, 0.436, 0, 0])]);
  const { pacs } = pluginPacs();
  const access = new AccessChecker(pacs, { ttlMs: 60_000, maxEntries: 100, defaultAuthorization: undefined });
  const search = new SimilarSearch({
    index,
    access,
    modelVersion: 'v1',
    log: createLogger('silent', 'test'),
  } as unknown as SimilarSearchDeps);
  try {
    const q = await search.byUids(
      { studyInstanceUid: QUERY_STUDY, seriesInstanceUid: `${QUERY_STUDY}.1`, sopInstanceUid: `${QUERY_STUDY}.1.1` },
      caller,
    );
    const out = await search.search(q, { limit: 10, groupBy: 'instance', excludeSameStudy: true, excludeSamePatient: true }, caller);
    assert.deepEqual(
      out.results.map((g) => g.best.doc.studyInstanceUid),
      [READABLE],
    );
    assert.equal((await access.check([READABLE], caller)).get(READABLE), 'yes');
  } finally {
    await index.close();
  }
});

/** Fifty studies (2.25.41.0 … 2.25.41.49) of which `forbidden` make the PACS refuse a list. */
const fifty = (prefix = '2.25.41') => Array.from({ length: 50 }, (_, i) => `${prefix}.${i}`);

/** As pluginPacs(), refusing every study in `forbidden`, each QIDO answered after `delayMs`. */
function slowPluginPacs(forbidden: ReadonlySet<string>, delayMs = 0) {
  const lists: string[][] = [];
  const pacs = {
    async qido(path: string, params: Record<string, string | number | undefined>) {
      const list = String(params.StudyInstanceUID).split(',');
      lists.push(list);
      await new Promise((r) => setTimeout(r, delayMs));
      if (list.some((s) => forbidden.has(s))) throw new PacsHttpError(403, path);
      return list.map((s) => ({ '0020000D': { vr: 'UI', Value: [s] } }));
    },
  } as unknown as PacsClient;
  return { pacs, lists };
}

test('a refused list of 50 with one forbidden study is halved, not asked study by study: ≤ 15 QIDOs, every verdict its own', async () => {
  const studies = fifty();
  const bad = studies[37]!;
  const { pacs, lists } = slowPluginPacs(new Set([bad]));
  const access = new AccessChecker(pacs, { ttlMs: 60_000, maxEntries: 1000, defaultAuthorization: undefined });
  const verdicts = await access.check(studies, caller);
  assert.ok(lists.length <= 15, `${lists.length} QIDOs`);
  for (const s of studies) assert.equal(verdicts.get(s), s === bad ? 403 : 'yes', s);
  // Every cached verdict came from a QIDO its study was answered in, or refused alone in.
  const asked = lists.length;
  assert.deepEqual(Object.fromEntries(await access.check(studies, caller)), Object.fromEntries(verdicts));
  assert.equal(lists.length, asked, 'settled verdicts are cached');
  assert.ok(
    lists.some((l) => l.length === 1 && l[0] === bad),
    'the forbidden study was refused alone before it was called forbidden',
  );
});

test('a caller whose lists are refused does not hold the batch slots: another caller’s check goes out at once', async () => {
  const mine = [...fifty('2.25.42'), ...fifty('2.25.43')];
  const { pacs, lists } = slowPluginPacs(new Set(['2.25.42.10', '2.25.43.40']), 2);
  const access = new AccessChecker(pacs, { ttlMs: 60_000, maxEntries: 1000, defaultAuthorization: undefined });
  // Two batches of 50, both refused: both batch slots are taken by them first.
  const first = access.check(mine, caller);
  while (lists.length < 4) await new Promise((r) => setTimeout(r, 1));
  const sentBefore = lists.length;
  const other = await access.check(['2.25.44.1'], callerOf({ authorization: 'Basic b3RoZXI6cHc=' }));
  const sentMeanwhile = lists.length - sentBefore;
  assert.equal(other.get('2.25.44.1'), 'yes');
  assert.ok(sentMeanwhile <= 5, `${sentMeanwhile} QIDOs went out before the other caller's one was answered`);
  const verdicts = await first;
  assert.equal(verdicts.get('2.25.42.10'), 403);
  assert.equal(verdicts.get('2.25.43.40'), 403);
  assert.equal([...verdicts.values()].filter((v) => v === 'yes').length, 98);
});

test('a failure while a refused list is taken apart stops it: nothing more is sent, and the studies it left are asked next time', async () => {
  let qidos = 0;
  let failed = false;
  const pacs = {
    async qido(path: string, params: Record<string, string | number | undefined>) {
      qidos++;
      const list = String(params.StudyInstanceUID).split(',');
      await new Promise((r) => setTimeout(r, 1));
      if (list.length === 50) throw new PacsHttpError(403, path);
      if (!failed) {
        failed = true;
        throw new Error('connect ECONNREFUSED 10.9.8.7:8042');
      }
      return list.map((s) => ({ '0020000D': { vr: 'UI', Value: [s] } }));
    },
  } as unknown as PacsClient;
  const access = new AccessChecker(pacs, { ttlMs: 60_000, maxEntries: 1000, defaultAuthorization: undefined });
  await assert.rejects(access.check(fifty('2.25.45'), caller), (e: Error & { code?: string }) => e.code === 'UPSTREAM_UNREACHABLE');
  await new Promise((r) => setTimeout(r, 100)); // what would still be sent in the background
  assert.ok(qidos <= 3, `${qidos} QIDOs: the list, and at most the other half already asked`);
  const again = await access.check(fifty('2.25.45'), caller);
  assert.equal(again.size, 50);
  for (const v of again.values()) assert.equal(v, 'yes');
  assert.ok(qidos > 3, 'the studies left unsettled were not cached');
});

test('a 401 while a refused list is taken apart is the credential’s: every study gets it, nothing more is sent', async () => {
  let qidos = 0;
  const pacs = {
    async qido(path: string, params: Record<string, string | number | undefined>) {
      qidos++;
      await new Promise((r) => setTimeout(r, 1));
      if (String(params.StudyInstanceUID).split(',').length === 50) throw new PacsHttpError(403, path);
      throw new PacsHttpError(401, path, 'Bearer realm="pacs"');
    },
  } as unknown as PacsClient;
  const access = new AccessChecker(pacs, { ttlMs: 60_000, maxEntries: 1000, defaultAuthorization: undefined });
  const out = await access.checkStudies(fifty('2.25.46'), caller);
  assert.ok(qidos <= 3, `${qidos} QIDOs`);
  assert.deepEqual([...out.keys()].sort(), fifty('2.25.46').sort());
  for (const a of out.values()) assert.deepEqual(a, { verdict: 401, challenge: 'Bearer realm="pacs"' });
});
