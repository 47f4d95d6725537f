/**
 * What a PACS refusal of an access QIDO means (gateway/similar-access.ts): a 403 of a list may be
 * about one study of it (an authorization plugin refuses the whole request), so it is neither
 * given to every study asked nor cached for them; a 401 is about the credential; and a client
 * asked to log in is told the PACS's own challenge.
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

test('a 403 of a list is not every study’s: each is asked alone, and only the refused one is cached as forbidden', async () => {
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
  for (const a of out.values()) assert.deepEqual(a, { verdict: 401, challenge: 'Bearer realm="pacs"' });
  await assert.rejects(access.requireReadable(READABLE, caller, 'the study'), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'UNAUTHORIZED');
    assert.equal(wwwAuthenticate(e as never), 'Bearer realm="pacs"');
    return true;
  });
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
