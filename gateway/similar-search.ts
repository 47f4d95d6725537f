/**
 * /similar, the work behind the routes (similar.ts): find the query vector,
 * rank the index, keep what the caller may see.
 *
 * Query vector (ARCHITECTURE.md flow 5):
 *   indexed instance   → its stored vector (no re-embedding: the published system
 *                        re-extracted features per query and collapsed at 128 users);
 *                        the caller must be able to read its study (else 401/403/404;
 *                        checked in the same QIDO as the first results)
 *   in the PACS only   → the PACS is asked with the caller's credentials whether the
 *                        instance exists (404/401/403 otherwise), then an "embed" job
 *                        computes it and also indexes it (index: true)
 *   upload (POST)      → an "embed" job computes it; nothing is stored
 *
 * Ranking in rounds: kNN with the filters inside the search (pre-filter: Modality,
 * BodyPartExamined, the query instance, its study/patient), then the distinct studies
 * of the hits are checked against the PACS with the caller's credentials
 * (similar-access.ts). Unreadable studies, and the groups already found, are added to
 * the exclusions of the next round, which asks for what is still missing — so a page
 * is filled from farther candidates instead of coming back short. At most MAX_ROUNDS.
 */
import type { Logger } from '../core/log.js';
import { HttpProblem } from '../core/errors.js';
import { IndexError } from '../core/index/errors.js';
import { MAX_K, type KnnFilter, type VectorIndex } from '../core/index/types.js';
import type { EmbedJobResult } from '../core/jobs.js';
import type { EmbedRequester } from '../core/similar/embed-requester.js';
import { Grouper, type ResultGroup } from '../core/similar/groups.js';
import type { InstanceUids, SimilarParams } from '../core/similar/params.js';
import { throwUnlessReadable, type AccessChecker, type PatientInfo } from './similar-access.js';
import type { Caller } from './caller.js';

/** Where the query vector came from (also a metrics label). */
export type QuerySource = 'index' | 'on-demand' | 'upload';

export interface QueryVector {
  readonly vector: Float32Array | readonly number[];
  readonly source: QuerySource;
  readonly modelVersion: string;
  readonly studyInstanceUid?: string | undefined;
  readonly seriesInstanceUid?: string | undefined;
  readonly sopInstanceUid?: string | undefined;
  readonly patientKey?: string | undefined;
  readonly modality?: string | undefined;
  readonly bodyPartExamined?: string | undefined;
  readonly label?: string | undefined;
  /** The frame that was embedded (1-based), where the instance has several. */
  readonly frame?: number | undefined;
  /** A study the caller must be able to read before anything is answered (an indexed query's own study). */
  readonly checkStudy?: string | undefined;
}

export interface SearchOutcome {
  readonly results: ResultGroup[];
  /** Patient per result study (only when the access checker reads patients: CBMIR_SHOW_PATIENT). */
  readonly patients: ReadonlyMap<string, PatientInfo>;
  /** kNN rounds run and studies dropped as unreadable (for logs/metrics; no UIDs). */
  readonly rounds: number;
  readonly unreadableStudies: number;
}

/** Instances fetched per wanted group in a round (a study has many matching slices). */
const PER_GROUP = { instance: 1, series: 4, study: 8 } as const;
/** Extra candidates per round, for results the access check may drop. */
const HEADROOM = 10;
const MAX_ROUNDS = 5;
/**
 * Distinct studies one search may ask the PACS about, over all its rounds. A caller who may
 * read few studies would otherwise widen k to MAX_K and have thousands checked (hundreds of
 * QIDOs through the shared, 2-slot access queue, holding up every other caller's checks);
 * past this the page is answered short.
 */
export const MAX_STUDIES_CHECKED = 1000;

export interface SimilarSearchDeps {
  readonly index: VectorIndex;
  readonly access: AccessChecker;
  readonly embed: Pick<EmbedRequester, 'embed'>;
  /** Model version of this deployment's manifest (used when the index has no live version yet). */
  readonly modelVersion: string;
  readonly log: Logger;
}

function indexProblem(err: unknown): HttpProblem {
  if (err instanceof HttpProblem) return err;
  if (err instanceof IndexError && err.code === 'NOT_READY') return new HttpProblem('INDEX_UNAVAILABLE', 'the index holds no images yet');
  return new HttpProblem('INDEX_UNAVAILABLE', 'the vector index could not be reached', { retryAfter: 5 });
}

export class SimilarSearch {
  constructor(private readonly d: SimilarSearchDeps) {}

  private async liveVersion(): Promise<string> {
    try {
      return (await this.d.index.liveVersion()) ?? this.d.modelVersion;
    } catch (err) {
      throw indexProblem(err);
    }
  }

  /** Query vector for an instance named by its three UIDs. */
  async byUids(uids: InstanceUids, caller: Caller): Promise<QueryVector> {
    let doc;
    try {
      doc = await this.d.index.get(uids.sopInstanceUid);
    } catch (err) {
      if (!(err instanceof IndexError && err.code === 'NOT_READY')) throw indexProblem(err);
    }
    // The SOP Instance UID alone finds the document; the path must agree with it. One that does
    // not is treated as not indexed, so the caller's own QIDO answers it as it answers any UID
    // the index lacks (a 404 decided by the index alone would tell any caller, even one without
    // credentials, which SOP Instance UIDs it holds).
    if (doc && (doc.studyInstanceUid !== uids.studyInstanceUid || doc.seriesInstanceUid !== uids.seriesInstanceUid)) doc = undefined;
    if (doc) {
      // The caller's access to the query study is checked in search()'s first access QIDO,
      // together with the result studies: one PACS round trip instead of two on a cache miss.
      return {
        vector: doc.vector,
        source: 'index',
        checkStudy: doc.studyInstanceUid,
        modelVersion: doc.modelVersion,
        studyInstanceUid: doc.studyInstanceUid,
        seriesInstanceUid: doc.seriesInstanceUid,
        sopInstanceUid: doc.sopInstanceUid,
        patientKey: doc.patientKey,
        modality: doc.modality,
        bodyPartExamined: doc.bodyPartExamined,
        label: doc.label,
        frame: doc.frame,
      };
    }
    // Not indexed: is it in the PACS, for this caller? (Its own credentials: a caller
    // must not make the worker fetch, with the service's credentials, what it cannot read.)
    await this.d.access.requireInstance(uids, caller, 'the instance');
    const modelVersion = await this.liveVersion();
    const r = await this.d.embed.embed({
      kind: 'instance',
      ...uids,
      modelVersion,
      index: true,
      enqueuedAt: Date.now(),
    });
    return fromEmbed(r, 'on-demand', uids);
  }

  /** Query vector for an uploaded Part-10 file (never stored). */
  async byUpload(bytes: Uint8Array): Promise<QueryVector> {
    const modelVersion = await this.liveVersion();
    const r = await this.d.embed.embed({
      kind: 'upload',
      dicomBase64: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64'),
      modelVersion,
      enqueuedAt: Date.now(),
    });
    return fromEmbed(r, 'upload');
  }

  async search(q: QueryVector, p: SimilarParams, caller: Caller): Promise<SearchOutcome> {
    const base: KnnFilter = {
      ...(p.modality ? { modality: p.modality } : {}),
      ...(p.bodyPartExamined ? { bodyPartExamined: p.bodyPartExamined } : {}),
    };
    const excludeSops = new Set<string>(q.sopInstanceUid ? [q.sopInstanceUid] : []);
    const excludeStudies = new Set<string>(p.excludeSameStudy && q.studyInstanceUid ? [q.studyInstanceUid] : []);
    const excludeSeries = new Set<string>();
    const excludePatients = p.excludeSamePatient && q.patientKey ? [q.patientKey] : [];
    const unreadable = new Set<string>();
    const grouper = new Grouper(p.groupBy);
    const patients = new Map<string, PatientInfo>();
    let rounds = 0;
    // Candidates asked per missing result; grows with what a round really needed per new result
    // (a caller who may read few studies, long series under groupBy=study), so five rounds suffice.
    let perGroup: number = PER_GROUP[p.groupBy];
    let anyReadable = false;
    const checked = new Set<string>();
    while (rounds < MAX_ROUNDS && grouper.size < p.limit) {
      rounds++;
      const need = p.limit - grouper.size;
      const k = Math.min(MAX_K, need * perGroup + HEADROOM);
      const before = grouper.size;
      const filter: KnnFilter = {
        ...base,
        ...(excludeSops.size ? { excludeSopInstanceUids: [...excludeSops] } : {}),
        ...(excludeStudies.size ? { excludeStudyUids: [...excludeStudies] } : {}),
        ...(excludeSeries.size ? { excludeSeriesUids: [...excludeSeries] } : {}),
        ...(excludePatients.length ? { excludePatientKeys: excludePatients } : {}),
      };
      let hits;
      try {
        hits = await this.d.index.knn(q.vector, { k, filter });
      } catch (err) {
        throw indexProblem(err);
      }
      const allHits = hits.length;
      hits = withinStudyBudget(hits, checked, MAX_STUDIES_CHECKED);
      const mustCheck = rounds === 1 && q.checkStudy ? [q.checkStudy] : [];
      const access = await this.d.access.checkStudies([...mustCheck, ...hits.map((h) => h.doc.studyInstanceUid)], caller);
      // Nothing is answered (not even "no results", nor a 503 below) before the query study is
      // known readable, and in the words used for a missing instance, which it must not differ from.
      if (mustCheck[0]) throwUnlessReadable(access.get(mustCheck[0]) ?? { verdict: 'no' }, 'the instance');
      // While nothing has been readable yet, a 401 refuses the credentials, not a study, and so
      // does a 403 for every study asked. Taken as "cannot read these" they gave an expired login
      // 200 and no results, after every round of widening (an upload has no query study to be
      // refused on first). Once something was readable, a refusal is about those studies only,
      // and they are dropped.
      const verdicts = [...access.values()];
      const unauthorized = verdicts.find((a) => a.verdict === 401);
      if (!anyReadable && unauthorized) throwUnlessReadable(unauthorized, 'the PACS');
      if (!anyReadable && verdicts.length > 0 && verdicts.every((a) => a.verdict === 403))
        throwUnlessReadable({ verdict: 403 }, 'the PACS');
      if (verdicts.some((a) => a.verdict === 'yes')) anyReadable = true;
      // A query embedded while the live version was swapped: its vector and the index come from
      // two models, and a ranking across them means nothing. Ask again (it takes seconds).
      const searched = hits[0]?.doc.modelVersion;
      if (searched !== undefined && searched !== q.modelVersion) {
        throw new HttpProblem('NOT_READY', `the live model changed to ${searched} during this query; try again`, { retryAfter: 1 });
      }
      if (hits.length === 0) break;
      for (const h of hits) {
        const a = access.get(h.doc.studyInstanceUid);
        if (a?.verdict === 'yes') {
          grouper.add(h);
          if (a.patient) patients.set(h.doc.studyInstanceUid, a.patient);
        } else unreadable.add(h.doc.studyInstanceUid);
      }
      if (allHits < k) break; // the index has nothing more that passes the filters
      if (hits.length < allHits) break; // MAX_STUDIES_CHECKED reached
      const gained = grouper.size - before;
      perGroup = gained > 0 ? Math.max(perGroup, Math.ceil((hits.length / gained) * 1.5)) : perGroup * 4;
      for (const s of unreadable) excludeStudies.add(s);
      const found = grouper.keys();
      if (p.groupBy === 'study') for (const s of found) excludeStudies.add(s);
      else if (p.groupBy === 'series') for (const s of found) excludeSeries.add(s);
      else for (const s of found) excludeSops.add(s);
    }
    const results = grouper.top(p.limit);
    const shown = new Set(results.flatMap((g) => g.matches.map((m) => m.doc.studyInstanceUid)));
    return {
      results,
      patients: new Map([...patients].filter(([study]) => shown.has(study))),
      rounds,
      unreadableStudies: unreadable.size,
    };
  }
}

/** The leading hits whose studies fit in what is left of the budget; `checked` gains their studies. */
function withinStudyBudget<H extends { doc: { studyInstanceUid: string } }>(hits: H[], checked: Set<string>, max: number): H[] {
  let n = 0;
  for (; n < hits.length; n++) {
    const study = hits[n]!.doc.studyInstanceUid;
    if (!checked.has(study)) {
      if (checked.size >= max) break;
      checked.add(study);
    }
  }
  return n === hits.length ? hits : hits.slice(0, n);
}

function fromEmbed(r: EmbedJobResult, source: QuerySource, uids?: InstanceUids): QueryVector {
  if (r.status === 'refused') throw new HttpProblem('NOT_EMBEDDABLE', r.reason.slice(0, 500));
  return {
    vector: r.vector,
    source,
    modelVersion: r.modelVersion,
    studyInstanceUid: uids?.studyInstanceUid ?? r.studyInstanceUid,
    seriesInstanceUid: uids?.seriesInstanceUid ?? r.seriesInstanceUid,
    sopInstanceUid: uids?.sopInstanceUid ?? r.sopInstanceUid,
    patientKey: r.patientKey,
    modality: r.modality,
    bodyPartExamined: r.bodyPartExamined,
    frame: r.frame,
  };
}
