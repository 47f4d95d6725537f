/**
 * Any viewer, one URL (issue 5): a virtual DICOMweb root per query image,
 *
 *   /similar-to/{SOPInstanceUID}/dicom-web
 *
 * whose QIDO-RS study search (PS3.18 §10.6, `GET …/studies`) lists the studies most
 * similar to that instance, most similar first, and whose every other resource
 * (series, instances, metadata, frames, rendered, thumbnail, bulk data, and
 * /similar-to/{sop}/wado for WADO-URI) is the PACS's, through the same route table
 * and pass-through as /dicom-web (server.ts, prefix stripped). Point an unmodified
 * viewer (OHIF) at it and its worklist is the similar cases. STOW is refused (405):
 * the root is a view of one query.
 *
 * The study search:
 *   1. the query instance's three UIDs: from the index, else a QIDO for it with the
 *      caller's credentials (none → 404);
 *   2. the /similar search (similar-search.ts, the same code as GET /similar) with
 *      groupBy=study, limit 100 (MAX_LIMIT) or CBMIR_SIMILAR_MAX_LIMIT if lower,
 *      excludeSameStudy and excludeSamePatient on — as the caller: its Authorization
 *      passes through and the access checks apply (no study it could not read from
 *      the PACS is ever named);
 *   3. the PACS's own QIDO study records of those studies: ONE QIDO
 *      `/studies?StudyInstanceUID=u1,u2,…` per 50 studies, with the caller's
 *      credentials and the viewer's includefield and filters (virtual-root-query.ts);
 *   4. the records in rank order, then offset/limit; each unchanged except URLs
 *      (RetrieveURL 0008,1190 set to the virtual root's study URL, any other PACS URL
 *      mapped to the virtual root) and the CBMIR private block added: (0009,0010)
 *      "CBMIR", (0009,1010) IS rank (1 = most similar, over the whole list, not the
 *      page), (0009,1011) DS score, (0009,1012) DS distance (similar-render.ts).
 *
 * Errors are problem bodies as for /similar: malformed UID 400 (path guard), unknown
 * or unreadable instance 404, 401/403 from the PACS, another 4xx of the PACS (a filter
 * it refuses) 400, an Accept that rules out JSON 406, 503 when the index or the
 * embedding worker is unavailable.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config } from '../core/config.js';
import { stringValue, type DicomJsonDataset } from '../core/dicom-json.js';
import { HttpProblem } from '../core/errors.js';
import { IndexError } from '../core/index/errors.js';
import type { VectorIndex } from '../core/index/types.js';
import type { Logger } from '../core/log.js';
import { PacsClient, PacsHttpError } from '../core/pacs/client.js';
import { MAX_LIMIT, type InstanceUids, type SimilarParams } from '../core/similar/params.js';
import { round6, scoreFromDistance } from '../core/similar/score.js';
import { PRIVATE_CREATOR } from '../core/dicom/label.js';
import { DICOMWEB_ROOT, WADO_URI_ROOT } from './path-guard.js';
import { sendProblem } from './problem.js';
import { answerProblem } from './problem-answer.js';
import type { PublicBase } from './public-url.js';
import type { Gateway } from './server.js';
import { notFound, pacsProblem, pacsQueryProblem } from './similar-access.js';
import { callerOf, type Caller } from './caller.js';
import { CBMIR_TAGS } from './similar-render.js';
import type { SimilarSearch } from './similar-search.js';
import { takeAcceptParam } from './accept.js';
import { UrlRewriter } from './url-rewrite.js';
import { parseEndpoint } from './upstream.js';
import { acceptsDicomJson, pacsStudyQuery, parseVirtualStudyQuery, type VirtualStudyQuery } from './virtual-root-query.js';
import { mergeVary } from './headers.js';

export interface VirtualRootDeps {
  readonly config: Config;
  readonly index: VectorIndex;
  /** The /similar search (attachSimilar's handle): one ranking, one set of access rules. */
  readonly search: SimilarSearch;
  readonly logger: Logger;
}

/**
 * What a virtual root lists: the defaults of GET /similar, grouped by study, as deep as /similar
 * goes by default, or less where the operator bounds /similar lower (CBMIR_SIMILAR_MAX_LIMIT
 * limits the PACS load of a search; a higher one is for evaluation, not worklists).
 */
export function virtualRootParams(maxLimit: number): SimilarParams {
  return { limit: Math.min(MAX_LIMIT, maxLimit), groupBy: 'study', excludeSameStudy: true, excludeSamePatient: true };
}

/** Studies per PACS QIDO (≈ 65 bytes each: far below URL limits), as similar-access.ts. */
const UIDS_PER_QIDO = 50;
const RETRIEVE_URL = '00081190';
const STUDY_UID = '0020000D';

interface Ranked {
  readonly study: string;
  readonly rank: number;
  readonly distance: number;
}

export function attachVirtualRoot(gateway: Gateway, deps: VirtualRootDeps): void {
  const { config, index, search, logger } = deps;
  const pacs = new PacsClient({
    url: config.pacs.url,
    user: config.pacs.user,
    password: config.pacs.password,
    timeoutMs: Math.min(config.pacs.timeoutMs, 10_000),
  });
  // Maps the PACS's own URLs (the client sends no Forwarded) onto base + /dicom-web|/wado;
  // with the virtual root's base, that is the virtual root.
  const rewriter = new UrlRewriter(parseEndpoint(config.pacs.url), parseEndpoint(config.pacs.wadoUriUrl), DICOMWEB_ROOT, WADO_URI_ROOT);

  /** The three UIDs of the query instance: the index knows indexed ones; the PACS (as the caller) the rest. */
  const uidsOf = async (sop: string, caller: Caller): Promise<InstanceUids> => {
    try {
      const doc = await index.get(sop);
      if (doc) return { studyInstanceUid: doc.studyInstanceUid, seriesInstanceUid: doc.seriesInstanceUid, sopInstanceUid: sop };
    } catch (err) {
      if (!(err instanceof IndexError && err.code === 'NOT_READY'))
        throw new HttpProblem('INDEX_UNAVAILABLE', 'the vector index could not be reached', { retryAfter: 5 });
    }
    // Worded as the indexed-but-unreadable refusal (similar-access.ts), which it must not differ from:
    // otherwise the answer tells a caller which UIDs the index holds.
    const missing = notFound('the instance');
    let found: DicomJsonDataset[];
    try {
      found = await pacs.qido('/instances', { SOPInstanceUID: sop }, caller);
    } catch (err) {
      // The gateway's own query, no filter of the viewer's in it: a PACS that refuses it is not the
      // viewer's mistake (pacsQueryProblem), and one that answers "no match" with 404 means none.
      if (err instanceof PacsHttpError && err.status === 404) throw missing;
      throw pacsProblem(err);
    }
    const st = stringValue(found[0], STUDY_UID);
    const se = stringValue(found[0], '0020000E');
    if (!st || !se) throw missing;
    return { studyInstanceUid: st, seriesInstanceUid: se, sopInstanceUid: sop };
  };

  /** The PACS's study records of `studies`, by study UID (those it does not list — filtered out, unreadable — are absent). */
  const records = async (studies: readonly string[], q: VirtualStudyQuery, caller: Caller) => {
    const chunks: string[][] = [];
    for (let i = 0; i < studies.length; i += UIDS_PER_QIDO) chunks.push(studies.slice(i, i + UIDS_PER_QIDO));
    let answers: DicomJsonDataset[][];
    try {
      answers = await Promise.all(chunks.map((c) => pacs.qido(`/studies?${pacsStudyQuery(c, q)}`, {}, caller)));
    } catch (err) {
      throw pacsQueryProblem(err);
    }
    const byUid = new Map<string, DicomJsonDataset>();
    for (const ds of answers.flat()) {
      const uid = stringValue(ds, STUDY_UID);
      if (uid) byUid.set(uid, ds);
    }
    return byUid;
  };

  const params = virtualRootParams(config.similar.maxLimit);

  const serve = async (req: IncomingMessage, res: ServerResponse, sop: string, query: string, base: PublicBase): Promise<void> => {
    if (!acceptsDicomJson(takeAcceptParam(query).accept ?? req.headers.accept)) {
      sendNotAcceptable(res);
      return;
    }
    const q = parseVirtualStudyQuery(query);
    const auth = callerOf(req.headers);
    const vector = await search.byUids(await uidsOf(sop, auth), auth);
    const out = await search.search(vector, params, auth);
    let ranked: Ranked[] = out.results.map((g, i) => ({ study: g.best.doc.studyInstanceUid, rank: i + 1, distance: g.best.distance }));
    if (q.studyUids) ranked = ranked.filter((r) => q.studyUids!.has(r.study));
    const byUid = ranked.length
      ? await records(
          ranked.map((r) => r.study),
          q,
          auth,
        )
      : new Map<string, DicomJsonDataset>();
    const listed = ranked.filter((r) => byUid.has(r.study));
    const page = listed.slice(q.offset, q.limit === undefined ? undefined : q.offset + q.limit);
    const root = `${base.base}${DICOMWEB_ROOT}`;
    const body = page.map((r) => withRank(byUid.get(r.study) as DicomJsonDataset, r, `${root}/studies/${r.study}`));
    const raw = Buffer.from(JSON.stringify(body), 'utf8');
    const mapped = rewriter.mapBody(raw, base.base) ?? raw;
    res.writeHead(200, {
      'content-type': 'application/dicom+json',
      'content-length': mapped.length,
      'cache-control': 'private, no-store',
      vary: mergeVary(res.getHeader('vary'), 'Accept, Authorization'),
    });
    res.end(mapped);
  };

  gateway.setVirtualStudies((req, res, ctx) => {
    serve(req, res, ctx.sopInstanceUid, ctx.query, ctx.publicBase).catch((err: unknown) => {
      answerProblem(res, err, { log: logger, failed: 'virtual root study search failed', unavailable: 'virtual root: no query vector' });
    });
  });
  gateway.addCloseHook(() => pacs.close());
}

/** 406: the answer varies with Accept, so the problem says so for caches. */
function sendNotAcceptable(res: ServerResponse): void {
  sendProblem(res, new HttpProblem('NOT_ACCEPTABLE', 'a virtual root answers its study search as application/dicom+json only'), { vary: mergeVary(res.getHeader('vary'), 'Accept') });
}

/** The PACS's record with the virtual root's RetrieveURL and the CBMIR rank block, attributes in tag order. */
function withRank(ds: DicomJsonDataset, r: Ranked, retrieveUrl: string): DicomJsonDataset {
  const out: Record<string, unknown> = { ...ds };
  out[RETRIEVE_URL] = { vr: 'UR', Value: [retrieveUrl] };
  out[CBMIR_TAGS.creator] = { vr: 'LO', Value: [PRIVATE_CREATOR] };
  out[CBMIR_TAGS.rank] = { vr: 'IS', Value: [r.rank] };
  out[CBMIR_TAGS.score] = { vr: 'DS', Value: [round6(scoreFromDistance(r.distance))] };
  out[CBMIR_TAGS.distance] = { vr: 'DS', Value: [round6(r.distance)] };
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a.toUpperCase() < b.toUpperCase() ? -1 : 1))) as DicomJsonDataset;
}
