/**
 * Who may learn what from /similar: a caller only hears of studies it could
 * read from the PACS with its own credentials (docs/api.md "/similar: access").
 *
 * The PACS decides, not us: for the distinct studies among the candidates we
 * ask the PACS one QIDO with the caller's Authorization —
 *   GET {pacs}/studies?StudyInstanceUID=uid1,uid2,…&includefield=0020000D&limit=n
 * (UID list matching, PS3.18 §8.3.4.1 / PS3.4 C.2.2.2.2; Orthanc 1.10 with
 * DICOMweb plugin 1.7 accepts the comma-separated form, not the backslash one —
 * checked against the test stack) — and keep the studies it lists. A 401 refuses
 * the credential, so every study asked. A 403 for a list may refuse one study of
 * it (an authorization plugin refuses the whole request), so a refused list is
 * halved and each half asked again (bisect()) before any study is called forbidden.
 * Verdicts are cached per (sha256(credential), study) for a short
 * TTL in a bounded LRU; the studies not cached of all concurrent requests are
 * asked together (at most PARALLEL_QIDOS QIDOs in flight, the rest queue and
 * go out as one), so a burst of queries costs few QIDOs.
 *
 * With CBMIR_SHOW_PATIENT the same QIDO also returns PatientName/PatientID, which
 * /similar then shows — as the PACS showed them to this caller, never from the index.
 *
 * The credential is the caller's Authorization header or, when it sent none,
 * the gateway's configured PACS credentials — exactly what the pass-through
 * would send, so /similar reveals nothing a plain QIDO through the gateway
 * would not.
 */
import pLimit from 'p-limit';
import { createHash } from 'node:crypto';
import { HttpProblem } from '../core/errors.js';
import { PacsHttpError, type PacsClient } from '../core/pacs/client.js';
import { stringValue, TAG, type DicomJsonDataset } from '../core/dicom-json.js';
import { Batcher, KeyFailure } from '../core/batcher.js';
import { LruCache } from './lru.js';
import type { Caller } from './caller.js';

/** 'yes' readable; 'no' not found with these credentials; 401/403 what the PACS said. */
export type AccessVerdict = 'yes' | 'no' | 401 | 403;

/** UIDs per QIDO (≈ 65 bytes each: stays far below URL limits). */
const UIDS_PER_QIDO = 50;
/** Access QIDOs in flight at once (all callers together); more studies wait and go out batched. */
const PARALLEL_QIDOS = 2;
/**
 * QIDOs re-asking parts of refused lists in flight at once (all callers together). Slots of their
 * own: a caller with a forbidden study among its candidates must not hold the batch slots, and
 * with them every other caller's checks, while its list is taken apart; the PACS still sees at
 * most PARALLEL_QIDOS + PARALLEL_REASKS access QIDOs at once.
 */
const PARALLEL_REASKS = 2;
/** What a client is asked to log in with when the PACS's 401 said nothing of how. */
export const FALLBACK_CHALLENGE = 'Basic realm="cbmir"';
const PATIENT_NAME = '00100010';

export interface AccessCheckerOptions {
  readonly ttlMs: number;
  readonly maxEntries: number;
  /** Credentials used when the caller sends none (the gateway's CBMIR_PACS_USER/PASSWORD). */
  readonly defaultAuthorization: string | undefined;
  /** Also read PatientName/PatientID from the same QIDO (CBMIR_SHOW_PATIENT); default false. */
  readonly withPatient?: boolean;
}

/** Patient of a study as the PACS showed it to this caller (only with withPatient). */
export interface PatientInfo {
  readonly patientName?: string;
  readonly patientId?: string;
}

export interface StudyAccess {
  readonly verdict: AccessVerdict;
  readonly patient?: PatientInfo;
  /** With 401: the PACS's WWW-Authenticate, when it sent one. */
  readonly challenge?: string;
}

/** One study to ask about, with the caller's credential (key) and the header to ask with. */
interface StudyQuestion {
  readonly cred: string;
  readonly study: string;
  readonly caller: Caller;
}

/**
 * The batcher's answer for a study of a refused list: its verdict comes from bisect(), which runs
 * after load() has returned, so that the batch slot is free again meanwhile.
 */
class Later {
  constructor(readonly access: Promise<StudyAccess>) {}
}

export class AccessChecker {
  private readonly cache: LruCache<string, StudyAccess & { until: number }>;
  /** The credential key of a caller who sent nothing identifying: the gateway's own login. */
  private readonly defaultCred: string;
  /**
   * Uncached studies of all concurrent requests go out together: Orthanc spends ≈ 8 ms
   * of CPU on a QIDO whatever it names, so under load one QIDO per batch instead of one
   * per request is what keeps the PACS's CPU for the viewers (core/batcher.ts). Keys are
   * credential|study, so a batch never mixes what one caller may see with another's.
   */
  private readonly batcher: Batcher<string, StudyAccess | Later, StudyQuestion>;
  private readonly reasks = pLimit(PARALLEL_REASKS);
  /**
   * credential|study keys of refused lists being bisected: out of the batcher by then, and a
   * concurrent check of one must wait for its verdict, not send it in a new batch.
   */
  private readonly reasking = new Map<string, Promise<StudyAccess>>();
  /** QIDOs sent (tests and metrics read it). */
  qidoCount = 0;

  constructor(
    private readonly pacs: PacsClient,
    private readonly opts: AccessCheckerOptions,
  ) {
    this.cache = new LruCache(opts.ttlMs > 0 ? opts.maxEntries : 0);
    this.defaultCred = `d:${createHash('sha256')
      .update(opts.defaultAuthorization ?? '')
      .digest('base64url')}`;
    this.batcher = new Batcher({
      load: (batch) => this.load(batch),
      missing: { verdict: 'no' },
      maxBatch: UIDS_PER_QIDO,
      maxInFlight: PARALLEL_QIDOS,
    });
  }

  /** Every header that tells who the caller is (caller.ts); with none, the gateway's own login. */
  private credentialKey(caller: Caller): string {
    return caller.key ? `c:${caller.key}` : this.defaultCred;
  }

  /** Verdict per study for this caller (uncached studies are asked in batched QIDOs). */
  async check(studies: Iterable<string>, caller: Caller): Promise<Map<string, AccessVerdict>> {
    const out = new Map<string, AccessVerdict>();
    for (const [s, a] of await this.checkStudies(studies, caller)) out.set(s, a.verdict);
    return out;
  }

  /** As check(), with the patient of each readable study when the checker reads it (withPatient). */
  async checkStudies(studies: Iterable<string>, caller: Caller): Promise<Map<string, StudyAccess>> {
    const cred = this.credentialKey(caller);
    const now = Date.now();
    const out = new Map<string, StudyAccess>();
    const asking: Promise<void>[] = [];
    for (const s of new Set(studies)) {
      const key = `${cred}|${s}`;
      const hit = this.cache.get(key);
      if (hit && hit.until > now) {
        out.set(s, hit);
        continue;
      }
      const access =
        this.reasking.get(key) ?? this.batcher.get(key, { cred, study: s, caller }).then((a) => (a instanceof Later ? a.access : a));
      asking.push(access.then((a) => void out.set(s, a)));
    }
    await Promise.all(asking);
    return out;
  }

  /** One batch of credential|study keys: one QIDO per credential and ≤ 50 studies. */
  private async load(batch: ReadonlyArray<{ readonly payload: StudyQuestion }>): Promise<Map<string, StudyAccess | Later | KeyFailure>> {
    const byCred = new Map<string, { caller: Caller; studies: string[] }>();
    for (const { payload: q } of batch) {
      const g = byCred.get(q.cred) ?? { caller: q.caller, studies: [] };
      g.studies.push(q.study);
      byCred.set(q.cred, g);
    }
    const out = new Map<string, StudyAccess | Later | KeyFailure>();
    await Promise.all(
      [...byCred].map(async ([cred, g]) => {
        let verdicts: Map<string, StudyAccess>;
        try {
          verdicts = await this.askList(g.studies, g.caller);
        } catch (err) {
          if (err instanceof PacsHttpError && err.status === 403 && g.studies.length > 1) {
            for (const [key, later] of this.bisectLater(cred, g.studies, g.caller)) out.set(key, later);
            return;
          }
          if (!(err instanceof PacsHttpError && (err.status === 401 || err.status === 403))) {
            // One caller's failure (say the PACS answers 400 to a strange credential) is theirs alone.
            for (const s of g.studies) out.set(`${cred}|${s}`, new KeyFailure(pacsProblem(err)));
            return;
          }
          verdicts = new Map(g.studies.map((s) => [s, refusal(err)]));
        }
        for (const [s, a] of verdicts) out.set(`${cred}|${s}`, this.settle(cred, s, a));
      }),
    );
    return out;
  }

  /** A verdict about its study alone: cached. */
  private settle(cred: string, study: string, a: StudyAccess): StudyAccess {
    this.cache.set(`${cred}|${study}`, { ...a, until: Date.now() + this.opts.ttlMs });
    return a;
  }

  /** Starts bisect() on a refused list and answers its keys with what will come of it. */
  private bisectLater(cred: string, studies: string[], caller: Caller): Map<string, Later> {
    const done = this.bisect(cred, studies, caller);
    const out = new Map<string, Later>();
    for (const s of studies) {
      const key = `${cred}|${s}`;
      const access = done.then((m) => {
        const a = m.get(s);
        if (a instanceof KeyFailure) throw a.cause;
        return a ?? { verdict: 'no' as const };
      });
      // Its askers handle a failure; this only keeps one nobody awaits any more from being "unhandled".
      access.catch(() => undefined);
      this.reasking.set(key, access);
      void access.finally(() => this.reasking.get(key) === access && this.reasking.delete(key)).catch(() => undefined);
      out.set(key, new Later(access));
    }
    return out;
  }

  /**
   * Verdicts for the studies of a list the PACS refused (403), each about its study alone: the list
   * is halved and each half asked again, recursively. A half the PACS answers is taken as it lists
   * it; a single study refused is forbidden. So f forbidden studies among n cost about
   * 2·f·log2(n/f) QIDOs (one among 50: 12; five: about 40) instead of one per study. By
   * construction never more than 2n − 2 (each part of the halving asked at most once; reached when
   * every study is forbidden). No cap below that: the studies beyond one would need a verdict
   * inferred from a refused list, which, cached or not, drops a readable study from the results.
   * A 401 refuses the credential: every study of the list not yet settled gets it, as from the first
   * QIDO. Any other failure stops the bisection (nothing more is sent) and is the answer of the
   * studies not settled.
   */
  private async bisect(cred: string, studies: string[], caller: Caller): Promise<Map<string, StudyAccess | KeyFailure>> {
    const out = new Map<string, StudyAccess | KeyFailure>();
    let stopped: StudyAccess | KeyFailure | undefined;
    const halve = async (list: string[]): Promise<void> => {
      const mid = Math.ceil(list.length / 2);
      await Promise.all([part(list.slice(0, mid)), part(list.slice(mid))]);
    };
    const part = async (list: string[]): Promise<void> => {
      let verdicts: Map<string, StudyAccess> | undefined;
      try {
        verdicts = await this.reasks(async () => (stopped ? undefined : this.askList(list, caller)));
      } catch (err) {
        if (!(err instanceof PacsHttpError && err.status === 403)) {
          stopped ??= err instanceof PacsHttpError && err.status === 401 ? refusal(err) : new KeyFailure(pacsProblem(err));
          return;
        }
        if (list.length > 1) return halve(list);
        verdicts = new Map([[list[0]!, { verdict: 403 }]]);
      }
      for (const [s, a] of verdicts ?? []) out.set(s, this.settle(cred, s, a));
    };
    await halve(studies);
    for (const s of studies) {
      if (out.has(s)) continue;
      // Only a stop leaves a study unsettled.
      const rest = stopped ?? new KeyFailure(new HttpProblem('INTERNAL'));
      out.set(s, rest instanceof KeyFailure ? rest : this.settle(cred, s, rest));
    }
    return out;
  }

  /**
   * An archived instance the caller names, asked of the PACS with the caller's own credentials
   * (a QIDO at its full path) before a worker fetches it with the service's: a readable study
   * must not open its siblings' UIDs, nor instances of other studies, on a PACS that looks
   * instances up by SOP Instance UID alone.
   */
  async requireInstance(
    uids: { studyInstanceUid: string; seriesInstanceUid: string; sopInstanceUid: string },
    caller: Caller,
    what: string,
  ): Promise<void> {
    let found;
    try {
      found = await this.pacs.qido(
        `/studies/${uids.studyInstanceUid}/series/${uids.seriesInstanceUid}/instances`,
        { SOPInstanceUID: uids.sopInstanceUid, includefield: '00080016' },
        caller,
      );
    } catch (err) {
      if (err instanceof PacsHttpError && err.status === 404) throw notFound(what); // "no match", as above
      throw pacsProblem(err);
    }
    if (found.length === 0) throw notFound(what);
  }

  /** Verdict for one study; throws the problem a caller should see unless readable. */
  async requireReadable(study: string, caller: Caller, what: string): Promise<void> {
    throwUnlessReadable((await this.checkStudies([study], caller)).get(study) ?? { verdict: 'no' }, what);
  }

  /** One QIDO for the list; a refusal is thrown (PacsHttpError) for ask() to judge. */
  private async askList(studies: string[], caller: Caller): Promise<Map<string, StudyAccess>> {
    this.qidoCount++;
    let found: DicomJsonDataset[];
    try {
      found = await this.pacs.qido(
        '/studies',
        {
          StudyInstanceUID: studies.join(','),
          includefield: this.opts.withPatient ? `${TAG.StudyInstanceUID},${PATIENT_NAME},${TAG.PatientID}` : TAG.StudyInstanceUID,
          limit: studies.length,
        },
        caller,
      );
    } catch (err) {
      // Some PACSes say "no match" with 404 rather than [] or 204; the query is the gateway's own.
      if (!(err instanceof PacsHttpError && err.status === 404)) throw err;
      found = [];
    }
    const readable = new Map<string, StudyAccess>();
    for (const d of found) {
      const uid = stringValue(d, TAG.StudyInstanceUID);
      if (!uid) continue;
      const patientName = this.opts.withPatient ? stringValue(d, PATIENT_NAME) : undefined;
      const patientId = this.opts.withPatient ? stringValue(d, TAG.PatientID) : undefined;
      const patient = { ...(patientName ? { patientName } : {}), ...(patientId ? { patientId } : {}) };
      readable.set(uid, { verdict: 'yes', ...(this.opts.withPatient ? { patient } : {}) });
    }
    return new Map(studies.map((s) => [s, readable.get(s) ?? { verdict: 'no' }]));
  }
}

/** The verdict of a 401 or 403 of the PACS, for every study of the list it refused. */
function refusal(err: PacsHttpError): StudyAccess {
  return err.status === 401 && err.challenge ? { verdict: 401, challenge: err.challenge } : { verdict: err.status as 401 | 403 };
}

/** A 401 of the PACS, with its challenge for the answer's WWW-Authenticate (wwwAuthenticate()). */
export class PacsUnauthorized extends HttpProblem {
  constructor(readonly challenge: string | undefined) {
    super('UNAUTHORIZED', 'the PACS asks for credentials (send Authorization as for DICOMweb)');
  }
}

/** The WWW-Authenticate of an answer with this problem: the PACS's challenge where it sent one. */
export function wwwAuthenticate(problem: HttpProblem): string | undefined {
  if (problem.code !== 'UNAUTHORIZED') return undefined;
  return (problem instanceof PacsUnauthorized ? problem.challenge : undefined) ?? FALLBACK_CHALLENGE;
}

/** 401/403 pass through as problems; "not found with your credentials" is a plain 404. */
export function throwUnlessReadable(a: StudyAccess, what: string): void {
  if (a.verdict === 'yes') return;
  if (a.verdict === 401) throw new PacsUnauthorized(a.challenge);
  if (a.verdict === 403) throw new HttpProblem('FORBIDDEN', 'the PACS refuses these credentials access');
  throw notFound(what);
}

/** The one wording of "missing or not yours": any difference would tell which UIDs exist. */
export function notFound(what: string): HttpProblem {
  return new HttpProblem('NOT_FOUND', `${what} is not in the PACS (or not visible with these credentials)`);
}

/**
 * A PACS refusal (4xx) of a query asked for the client, as the client's 400: the virtual root
 * passes the viewer's filters on, so a refused one is the viewer's mistake, and "PACS
 * unreachable" (a 5xx in the logs) would blame the wrong party. 401/403, 408/429 and 5xx keep
 * their pacsProblem() meaning.
 */
export function pacsQueryProblem(err: unknown): HttpProblem {
  if (err instanceof PacsHttpError && err.status >= 400 && err.status !== 401 && err.status !== 403 && !err.transient)
    return new HttpProblem('BAD_PARAM', `the PACS refused the query: status ${err.status}`);
  return pacsProblem(err);
}

/** A PACS failure (down, 5xx, timeout) as the problem the client sees. */
export function pacsProblem(err: unknown): HttpProblem {
  if (err instanceof HttpProblem) return err;
  if (err instanceof PacsHttpError) {
    if (err.status === 401) return new PacsUnauthorized(err.challenge);
    if (err.status === 403) return new HttpProblem('FORBIDDEN', 'the PACS refuses these credentials access');
    return new HttpProblem('UPSTREAM_UNREACHABLE', `the PACS answered ${err.status}`);
  }
  const msg = (err as Error)?.message ?? '';
  if (/timeout/i.test(msg)) return new HttpProblem('UPSTREAM_TIMEOUT', 'the PACS did not answer in time');
  return new HttpProblem('UPSTREAM_UNREACHABLE', 'the PACS could not be reached');
}
