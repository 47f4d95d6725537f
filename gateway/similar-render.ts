/**
 * /similar answers in the two shapes docs/api.md describes:
 *
 *  - application/json (default): { query, groupBy, limit, metric, score, results[] }
 *    with rank, Euclidean distance, score (core/similar/score.ts), the three UIDs,
 *    gateway URLs (instance/series/study retrieve, thumbnail, /similar of the result),
 *    label, modality, body part; grouped results also list the matched instances.
 *
 *  - application/dicom+json: a QIDO-RS-shaped array of DICOM JSON datasets (PS3.18
 *    F.2) at the level of groupBy, so DICOMweb client libraries read it as a search
 *    result. Ranking data sits in a private block, creator "CBMIR" in group 0009
 *    (the block core/dicom/label.ts uses; elements 01–05 are the dataset label, so
 *    the ranking uses 10–16):
 *      (0009,0010) LO "CBMIR"            private creator
 *      (0009,1001) LO label class name   (as label.ts)
 *      (0009,1010) IS rank               1 = most similar
 *      (0009,1011) DS score              1 − d²/4, in [0, 1]
 *      (0009,1012) DS distance           Euclidean, in [0, 2]
 *      (0009,1013) IS matched instances  (series/study level)
 *      (0009,1014) UR thumbnail URL      of the best instance
 *      (0009,1015) UI best SOP Instance UID   (series/study level)
 *      (0009,1016) UI best Series Instance UID (study level)
 *    RetrieveURL (0008,1190) points at the gateway's WADO-RS resource of the level.
 * No patient names or IDs in either shape, unless CBMIR_SHOW_PATIENT: then PatientName
 * and PatientID of each result's study, as the PACS showed them to the caller (JSON
 * patientName/patientId, DICOM JSON (0010,0010)/(0010,0020)).
 */
import type { KnnHit } from '../core/index/types.js';
import type { ResultGroup } from '../core/similar/groups.js';
import type { GroupBy, SimilarParams } from '../core/similar/params.js';
import { round6, scoreFromDistance } from '../core/similar/score.js';
import { PRIVATE_CREATOR } from '../core/dicom/label.js';
import type { PatientInfo } from './similar-access.js';
import type { QueryVector } from './similar-search.js';

export const SCORE_DEFINITION = '1 - d^2/4, d = Euclidean distance of unit vectors; 1 = identical, 0.5 = orthogonal, 0 = opposite';

export const CBMIR_TAGS = Object.freeze({
  creator: '00090010',
  label: '00091001',
  rank: '00091010',
  score: '00091011',
  distance: '00091012',
  matched: '00091013',
  thumbnail: '00091014',
  bestSop: '00091015',
  bestSeries: '00091016',
});

export interface ResultUrls {
  readonly study: string;
  readonly series: string;
  readonly instance: string;
  readonly thumbnail: string;
  /** This result as a new query. */
  readonly similar: string;
}

export function urlsFor(base: string, study: string, series: string, sop: string, frame?: number): ResultUrls {
  const st = `${base}/dicom-web/studies/${study}`;
  const se = `${st}/series/${series}`;
  const inst = `${se}/instances/${sop}`;
  return {
    study: st,
    series: se,
    instance: inst,
    // The frame that was embedded (a multi-frame instance's middle one), not the PACS's default first frame.
    thumbnail: frame !== undefined && frame > 1 ? `${inst}/frames/${frame}/thumbnail` : `${inst}/thumbnail`,
    similar: `${base}/studies/${study}/series/${series}/instances/${sop}/similar`,
  };
}

/** Patient per study, present only with CBMIR_SHOW_PATIENT (as the PACS showed it to the caller). */
export type Patients = ReadonlyMap<string, PatientInfo>;
const NO_PATIENTS: Patients = new Map();

function hitFields(h: KnnHit, base: string, patients: Patients) {
  const d = h.doc;
  const patient = patients.get(d.studyInstanceUid);
  return {
    distance: round6(h.distance),
    score: round6(scoreFromDistance(h.distance)),
    studyInstanceUid: d.studyInstanceUid,
    seriesInstanceUid: d.seriesInstanceUid,
    sopInstanceUid: d.sopInstanceUid,
    ...(d.modality ? { modality: d.modality } : {}),
    ...(d.bodyPartExamined ? { bodyPartExamined: d.bodyPartExamined } : {}),
    ...(d.label ? { label: d.label } : {}),
    ...(d.frame !== undefined ? { frame: d.frame } : {}),
    ...(patient?.patientName !== undefined ? { patientName: patient.patientName } : {}),
    ...(patient?.patientId !== undefined ? { patientId: patient.patientId } : {}),
    urls: urlsFor(base, d.studyInstanceUid, d.seriesInstanceUid, d.sopInstanceUid, d.frame),
  };
}

export function renderJson(
  q: QueryVector,
  p: SimilarParams,
  groups: readonly ResultGroup[],
  base: string,
  patients = NO_PATIENTS,
): unknown {
  return {
    query: {
      ...(q.studyInstanceUid ? { studyInstanceUid: q.studyInstanceUid } : {}),
      ...(q.seriesInstanceUid ? { seriesInstanceUid: q.seriesInstanceUid } : {}),
      ...(q.sopInstanceUid ? { sopInstanceUid: q.sopInstanceUid } : {}),
      ...(q.modality ? { modality: q.modality } : {}),
      ...(q.bodyPartExamined ? { bodyPartExamined: q.bodyPartExamined } : {}),
      ...(q.label ? { label: q.label } : {}),
      ...(q.frame !== undefined ? { frame: q.frame } : {}),
      source: q.source,
      modelVersion: q.modelVersion,
    },
    groupBy: p.groupBy,
    limit: p.limit,
    excludeSameStudy: p.excludeSameStudy,
    excludeSamePatient: p.excludeSamePatient,
    metric: 'euclidean',
    score: SCORE_DEFINITION,
    results: groups.map((g, i) => ({
      rank: i + 1,
      ...hitFields(g.best, base, patients),
      ...(p.groupBy === 'instance'
        ? {}
        : {
            matchedInstances: g.matchedCount,
            matches: g.matches.map((m) => hitFields(m, base, patients)),
          }),
    })),
  };
}

type Element = { vr: string; Value?: unknown[] };

function el(vr: string, value: unknown): Element {
  return value === undefined || value === '' ? { vr } : { vr, Value: [value] };
}

/** QIDO-shaped answer at the groupBy level. */
export function renderDicomJson(
  groupBy: GroupBy,
  groups: readonly ResultGroup[],
  base: string,
  patients = NO_PATIENTS,
): Record<string, Element>[] {
  return groups.map((g, i) => {
    const d = g.best.doc;
    const urls = urlsFor(base, d.studyInstanceUid, d.seriesInstanceUid, d.sopInstanceUid, d.frame);
    const ds: Record<string, Element> = {};
    if (groupBy === 'instance') {
      if (d.sopClassUid) ds['00080016'] = el('UI', d.sopClassUid);
      ds['00080018'] = el('UI', d.sopInstanceUid);
    }
    if (groupBy === 'study') {
      // Every modality among the study's matched instances (a PET/CT is not "PT" alone), sorted.
      const mods = [...new Set(g.matches.map((m) => m.doc.modality).filter((m): m is string => Boolean(m)))].sort();
      ds['00080061'] = mods.length ? { vr: 'CS', Value: mods } : { vr: 'CS' };
    }
    else ds['00080060'] = el('CS', d.modality);
    const patient = patients.get(d.studyInstanceUid);
    if (patient?.patientName !== undefined) ds['00100010'] = { vr: 'PN', Value: [{ Alphabetic: patient.patientName }] };
    if (patient?.patientId !== undefined) ds['00100020'] = el('LO', patient.patientId);
    ds['00081190'] = el('UR', groupBy === 'study' ? urls.study : groupBy === 'series' ? urls.series : urls.instance);
    if (groupBy !== 'study') ds['00180015'] = el('CS', d.bodyPartExamined);
    ds['0020000D'] = el('UI', d.studyInstanceUid);
    if (groupBy !== 'study') ds['0020000E'] = el('UI', d.seriesInstanceUid);
    ds[CBMIR_TAGS.creator] = el('LO', PRIVATE_CREATOR);
    if (d.label) ds[CBMIR_TAGS.label] = el('LO', d.label);
    ds[CBMIR_TAGS.rank] = el('IS', i + 1);
    ds[CBMIR_TAGS.score] = el('DS', round6(scoreFromDistance(g.best.distance)));
    ds[CBMIR_TAGS.distance] = el('DS', round6(g.best.distance));
    if (groupBy !== 'instance') ds[CBMIR_TAGS.matched] = el('IS', g.matchedCount);
    ds[CBMIR_TAGS.thumbnail] = el('UR', urls.thumbnail);
    if (groupBy !== 'instance') ds[CBMIR_TAGS.bestSop] = el('UI', d.sopInstanceUid);
    if (groupBy === 'study') ds[CBMIR_TAGS.bestSeries] = el('UI', d.seriesInstanceUid);
    // DICOM JSON lists attributes in tag order (PS3.18 F.2.1.1 does not require it; readers and diff tools like it).
    return Object.fromEntries(Object.entries(ds).sort(([a], [b]) => (a < b ? -1 : 1)));
  });
}
