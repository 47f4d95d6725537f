/**
 * Who may learn what from /similar: a caller only hears of studies it could
 * read from the PACS with its own credentials (docs/api.md "/similar: access").
 *
 * The PACS decides, not us: for the distinct studies among the candidates we
 * ask the PACS one QIDO with the caller's Authorization —
 *   GET {pacs}/studies?StudyInstanceUID=uid1,uid2,…&includefield=0020000D&limit=n
 * (UID list matching, PS3.18 §8.3.4.1 / PS3.4 C.2.2.2.2; Orthanc 1.10 with
 * DICOMweb plugin 1.7 accepts the comma-separated form, not the backslash one —
 * checked against the test stack) — and keep the studies it lists. A 401/403
 * means "none". Verdicts are cached per (sha256(credential), study) for a short
 * TTL in a bounded LRU, so a burst of queries costs one QIDO per new study.
 *
 * With CBMIR_SHOW_PATIENT the same QIDO also returns PatientName/PatientID, which
 * /similar then shows — as the PACS showed them to this caller, never from the index.
 *
 * The credential is the caller's Authorization header or, when it sent none,
 * the gateway's configured PACS credentials — exactly what the pass-through
 * would send, so /similar reveals nothing a plain QIDO through the gateway
 * would not.
 */
import { createHash } from 'node:crypto';
import { HttpProblem } from '../core/errors.js';
import { PacsHttpError, type PacsClient } from '../core/pacs/client.js';
import { stringValue, TAG } from '../core/dicom-json.js';
import { LruCache } from './lru.js';

/** 'yes' readable; 'no' not found with these credentials; 401/403 what the PACS said. */
export type AccessVerdict = 'yes' | 'no' | 401 | 403;

/** UIDs per QIDO (≈ 65 bytes each: stays far below URL limits). */
const UIDS_PER_QIDO = 50;
/** QIDOs in flight per check when a page of results spans more than one chunk. */
const PARALLEL_QIDOS = 4;
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
}

export class AccessChecker {
  private readonly cache: LruCache<string, StudyAccess & { until: number }>;
  /** Access QIDOs in flight, by credential|study (single flight). */
  private readonly inflight = new Map<string, Promise<StudyAccess>>();
  /** QIDOs sent (tests and metrics read it). */
  qidoCount = 0;

  constructor(
    private readonly pacs: PacsClient,
    private readonly opts: AccessCheckerOptions,
  ) {
    this.cache = new LruCache(opts.ttlMs > 0 ? opts.maxEntries : 0);
  }

  private credentialKey(authorization: string | undefined): string {
    const effective = authorization ?? this.opts.defaultAuthorization ?? '';
    return createHash('sha256').update(effective).digest('base64url');
  }

  /** Verdict per study for this caller (one QIDO per ≤ 50 uncached studies). */
  async check(studies: Iterable<string>, authorization: string | undefined): Promise<Map<string, AccessVerdict>> {
    const out = new Map<string, AccessVerdict>();
    for (const [s, a] of await this.checkStudies(studies, authorization)) out.set(s, a.verdict);
    return out;
  }

  /** As check(), with the patient of each readable study when the checker reads it (withPatient). */
  async checkStudies(studies: Iterable<string>, authorization: string | undefined): Promise<Map<string, StudyAccess>> {
    const cred = this.credentialKey(authorization);
    const now = Date.now();
    const out = new Map<string, StudyAccess>();
    const missing: string[] = [];
    const waiting: Promise<void>[] = [];
    for (const s of new Set(studies)) {
      const key = `${cred}|${s}`;
      const hit = this.cache.get(key);
      if (hit && hit.until > now) {
        out.set(s, hit);
        continue;
      }
      // Single flight: a study another request is already asking about (same credential)
      // is not asked again — 256 users starting at once make one QIDO per study, not 256.
      const pending = this.inflight.get(key);
      if (pending) {
        const w = pending.then((a) => void out.set(s, a));
        w.catch(() => undefined); // awaited below; never an unhandled rejection if this request fails first
        waiting.push(w);
      } else missing.push(s);
    }
    const chunks: string[][] = [];
    for (let i = 0; i < missing.length; i += UIDS_PER_QIDO) chunks.push(missing.slice(i, i + UIDS_PER_QIDO));
    for (let i = 0; i < chunks.length; i += PARALLEL_QIDOS) {
      const batch = chunks.slice(i, i + PARALLEL_QIDOS).map((c) => {
        const asked = this.ask(c, authorization);
        for (const s of c) {
          const key = `${cred}|${s}`;
          const one = asked.then((m) => m.get(s) ?? { verdict: 'no' as const });
          one.catch(() => undefined); // the asker reports the failure; waiters see it through their own await
          this.inflight.set(key, one);
          void asked.then(
            () => this.inflight.delete(key),
            () => this.inflight.delete(key),
          );
        }
        return asked;
      });
      const verdicts = await Promise.all(batch);
      for (const v of verdicts) {
        for (const [s, a] of v) {
          out.set(s, a);
          this.cache.set(`${cred}|${s}`, { ...a, until: Date.now() + this.opts.ttlMs });
        }
      }
    }
    await Promise.all(waiting);
    return out;
  }

  /** Verdict for one study; throws the problem a caller should see unless readable. */
  async requireReadable(study: string, authorization: string | undefined, what = 'the query instance'): Promise<void> {
    const v = (await this.check([study], authorization)).get(study);
    throwUnlessReadable(v ?? 'no', what);
  }

  private async ask(studies: string[], authorization: string | undefined): Promise<Map<string, StudyAccess>> {
    this.qidoCount++;
    const out = new Map<string, StudyAccess>();
    try {
      const found = await this.pacs.qido(
        '/studies',
        {
          StudyInstanceUID: studies.join(','),
          includefield: this.opts.withPatient ? `${TAG.StudyInstanceUID},${PATIENT_NAME},${TAG.PatientID}` : TAG.StudyInstanceUID,
          limit: studies.length,
        },
        { authorization },
      );
      const readable = new Map<string, StudyAccess>();
      for (const d of found) {
        const uid = stringValue(d, TAG.StudyInstanceUID);
        if (!uid) continue;
        const patientName = this.opts.withPatient ? stringValue(d, PATIENT_NAME) : undefined;
        const patientId = this.opts.withPatient ? stringValue(d, TAG.PatientID) : undefined;
        const patient = { ...(patientName ? { patientName } : {}), ...(patientId ? { patientId } : {}) };
        readable.set(uid, { verdict: 'yes', ...(this.opts.withPatient ? { patient } : {}) });
      }
      for (const s of studies) out.set(s, readable.get(s) ?? { verdict: 'no' });
    } catch (err) {
      if (err instanceof PacsHttpError && (err.status === 401 || err.status === 403)) {
        for (const s of studies) out.set(s, { verdict: err.status as 401 | 403 });
      } else throw pacsProblem(err);
    }
    return out;
  }
}

/** 401/403 pass through as problems; "not found with your credentials" is a plain 404. */
export function throwUnlessReadable(v: AccessVerdict, what: string): void {
  if (v === 'yes') return;
  if (v === 401) throw new HttpProblem('UNAUTHORIZED', 'the PACS asks for credentials (send Authorization as for DICOMweb)');
  if (v === 403) throw new HttpProblem('FORBIDDEN', 'the PACS refuses these credentials access');
  throw new HttpProblem('NOT_FOUND', `${what} is not in the PACS (or not visible with these credentials)`);
}

/** A PACS failure (down, 5xx, timeout) as the problem the client sees. */
export function pacsProblem(err: unknown): HttpProblem {
  if (err instanceof HttpProblem) return err;
  if (err instanceof PacsHttpError) {
    if (err.status === 401) return new HttpProblem('UNAUTHORIZED', 'the PACS asks for credentials (send Authorization as for DICOMweb)');
    if (err.status === 403) return new HttpProblem('FORBIDDEN', 'the PACS refuses these credentials access');
    return new HttpProblem('UPSTREAM_UNREACHABLE', `the PACS answered ${err.status}`);
  }
  const msg = (err as Error)?.message ?? '';
  if (/timeout/i.test(msg)) return new HttpProblem('UPSTREAM_TIMEOUT', 'the PACS did not answer in time');
  return new HttpProblem('UPSTREAM_UNREACHABLE', 'the PACS could not be reached');
}
