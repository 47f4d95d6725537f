/**
 * Optional fast path for the reconciler: Orthanc's change feed (REST `GET /changes`,
 * not DICOMweb; Orthanc only). Instead of waiting for the next full crawl, the periodic
 * reconciler polls the feed every few seconds and reconciles just the studies in which a
 * series became stable ("StableSeries": no new instance for Orthanc's StableAge seconds),
 * whatever way the instances arrived (C-STORE, REST, STOW past the gateway).
 *
 *   GET /changes?last                      → { Last }       (the cursor at start)
 *   GET /changes?since=N&limit=L           → { Changes: [{ ChangeType, ID, Seq, ResourceType }], Done, Last }
 *   GET /series/{orthanc id}/study         → { MainDicomTags: { StudyInstanceUID } }
 *
 * The feed is a hint, never the source of truth: what it misses (feed truncated by
 * Orthanc's MaximumStorage recycling, a worker down for a while) the full crawl finds.
 */
import { Pool } from 'undici';
import { isValidUid } from '../../core/errors.js';

export interface ChangeFeedOptions {
  /** Orthanc's REST root, e.g. http://127.0.0.1:8042 */
  readonly url: string;
  readonly authorization?: string | undefined;
  readonly timeoutMs?: number;
}

export class OrthancChangeFeed {
  private readonly pool: Pool;
  private readonly base: string;

  constructor(private readonly opts: ChangeFeedOptions) {
    const u = new URL(opts.url);
    this.pool = new Pool(u.origin, { connections: 2 });
    this.base = u.pathname.replace(/\/+$/, '');
  }

  private async get<T>(path: string): Promise<{ status: number; body: T | undefined }> {
    const res = await this.pool.request({
      method: 'GET',
      path: this.base + path,
      headers: { accept: 'application/json', ...(this.opts.authorization ? { authorization: this.opts.authorization } : {}) },
      headersTimeout: this.opts.timeoutMs ?? 10_000,
      bodyTimeout: this.opts.timeoutMs ?? 10_000,
    });
    if (res.statusCode !== 200) {
      await res.body.dump();
      return { status: res.statusCode, body: undefined };
    }
    return { status: 200, body: (await res.body.json()) as T };
  }

  /** The newest change sequence number: start polling after it. Throws if this is not an Orthanc. */
  async head(): Promise<number> {
    const r = await this.get<{ Last?: number }>('/changes?last');
    if (r.status !== 200 || typeof r.body?.Last !== 'number')
      throw new Error(`no Orthanc change feed at ${this.opts.url}/changes (HTTP ${r.status})`);
    return r.body.Last;
  }

  /**
   * Study Instance UIDs with a series that became stable after `since`, and the new cursor.
   * `take` is awaited before every request (the reconciler's rate limiter): after an import of
   * thousands of series, one poll makes as many lookups.
   */
  async poll(since: number, limit = 1000, take: () => Promise<void> = async () => undefined): Promise<{ studies: string[]; last: number }> {
    const studies = new Set<string>();
    let cursor = since;
    for (;;) {
      await take();
      const r = await this.get<{ Changes?: { ChangeType?: string; ID?: string; Seq?: number }[]; Done?: boolean; Last?: number }>(
        `/changes?since=${cursor}&limit=${limit}`,
      );
      if (r.status !== 200 || !r.body) throw new Error(`Orthanc change feed answered ${r.status}`);
      for (const c of r.body.Changes ?? []) {
        if (c.ChangeType !== 'StableSeries' || !c.ID || !/^[0-9a-f-]+$/.test(c.ID)) continue;
        await take();
        const s = await this.get<{ MainDicomTags?: { StudyInstanceUID?: string } }>(`/series/${c.ID}/study`);
        if (s.status === 404) continue; // deleted since; nothing to index
        // Anything else unanswered fails the poll: the cursor stays, and the next poll asks again.
        if (s.status !== 200) throw new Error(`Orthanc answered ${s.status} for a changed series' study`);
        const uid = s.body?.MainDicomTags?.StudyInstanceUID;
        if (isValidUid(uid)) studies.add(uid);
      }
      const last = typeof r.body.Last === 'number' ? r.body.Last : cursor;
      const done = r.body.Done !== false || last <= cursor;
      cursor = Math.max(cursor, last);
      if (done) break;
    }
    return { studies: [...studies], last: cursor };
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
