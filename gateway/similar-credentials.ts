/**
 * Does the PACS take this caller's credentials at all? Asked before POST /similar takes an
 * upload slot or reads a byte of the body: an upload holds a slot, its body and a worker's
 * embedding, and a caller the PACS refuses would hold all of that only to be refused by the
 * access check after the embedding (docs/api.md "/similar: access").
 *
 * One cheap QIDO, `GET {pacs}/studies?limit=1&includefield=0020000D`, with the caller's
 * identity headers (the gateway's PACS login when it sent none, as the access checks).
 * Only a 401 refuses: it is about the credential. A 403 to a search over every study says
 * nothing of the studies this caller may read (an authorization plugin may refuse the list and
 * allow one study), and any other answer, a PACS down included, is left to the access checks
 * that follow, as before. Outcomes are cached per caller for the access cache's TTL and
 * concurrent probes of one caller share their QIDO.
 *
 * The probe has a deadline of its own (PROBE_DEADLINE_MS), far below the PACS client's: it is
 * asked on every upload whose caller is not cached, and a PACS that does not answer would
 * otherwise hold each of them for the client's whole timeout before the access check waits as
 * long again. No answer in time says nothing of the credential: not refused, and not cached.
 */
import { PacsHttpError, type PacsClient } from '../core/pacs/client.js';
import { TAG } from '../core/dicom-json.js';
import { LruCache } from './lru.js';
import type { Caller } from './caller.js';
import { PacsUnauthorized } from './similar-access.js';

/** How long a probe waits for the PACS (a QIDO for one study answers in milliseconds). */
const PROBE_DEADLINE_MS = 2_000;

export interface CredentialProbeOptions {
  readonly ttlMs: number;
  readonly maxEntries: number;
  /** PROBE_DEADLINE_MS unless given (tests). */
  readonly deadlineMs?: number;
}

/** Refused: the PACS answered 401, with this challenge. */
type Outcome = { readonly refused: false } | { readonly refused: true; readonly challenge: string | undefined };

export class CredentialProbe {
  private readonly cache: LruCache<string, Outcome & { until: number }>;
  private readonly asking = new Map<string, Promise<Outcome>>();

  constructor(
    private readonly pacs: Pick<PacsClient, 'qido'>,
    private readonly opts: CredentialProbeOptions,
  ) {
    this.cache = new LruCache(opts.ttlMs > 0 ? opts.maxEntries : 0);
  }

  /** Throws 401 UNAUTHORIZED (with the PACS's challenge) when the PACS refuses the caller's credential. */
  async require(caller: Caller): Promise<void> {
    // A caller without identity headers is asked about with the gateway's own login: one key.
    const key = caller.key || '-';
    const hit = this.cache.get(key);
    let outcome: Outcome | undefined = hit && hit.until > Date.now() ? hit : undefined;
    if (!outcome) {
      let pending = this.asking.get(key);
      if (!pending) {
        pending = this.probe(caller, key).finally(() => this.asking.delete(key));
        this.asking.set(key, pending);
      }
      outcome = await pending;
    }
    if (outcome.refused) throw new PacsUnauthorized(outcome.challenge);
  }

  private async probe(caller: Caller, key: string): Promise<Outcome> {
    let outcome: Outcome;
    try {
      const signal = AbortSignal.timeout(this.opts.deadlineMs ?? PROBE_DEADLINE_MS);
      await this.pacs.qido('/studies', { limit: 1, includefield: TAG.StudyInstanceUID }, { ...caller, signal });
      outcome = { refused: false };
    } catch (err) {
      // A PACS down, failing or past the deadline said nothing of the credential: asked again next time.
      if (!(err instanceof PacsHttpError) || err.transient) return { refused: false };
      outcome = err.status === 401 ? { refused: true, challenge: err.challenge } : { refused: false };
    }
    this.cache.set(key, { ...outcome, until: Date.now() + this.opts.ttlMs });
    return outcome;
  }
}
