/**
 * Checkpoint of a backfill run: the Study Instance UIDs whose instances were all
 * checked (and the missing ones enqueued), one per line, appended as each study
 * finishes. Append-only text survives a kill at any moment: a torn last line is
 * not a valid UID and is ignored on resume. `cbmir backfill --resume` skips the
 * studies listed; a run that completes removes the file (nothing left to resume).
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { isValidUid } from '../../core/errors.js';

export class Checkpoint {
  private readonly done = new Set<string>();

  private constructor(readonly file: string) {}

  /** Open the checkpoint at `file`: keep what it lists when `resume`, else start empty. */
  static open(file: string, resume: boolean): Checkpoint {
    const cp = new Checkpoint(file);
    mkdirSync(path.dirname(file), { recursive: true });
    if (resume && existsSync(file)) {
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        const uid = line.trim();
        if (isValidUid(uid)) cp.done.add(uid);
      }
    } else {
      writeFileSync(file, '');
    }
    return cp;
  }

  /** Name of the checkpoint file of a backfill for a model version (and queue namespace). */
  static fileFor(dataDir: string, kind: 'backfill' | 'reindex', modelVersion: string, namespace?: string): string {
    const safe = (s: string) => s.replace(/[^A-Za-z0-9._-]/g, '-');
    return path.resolve(dataDir, 'checkpoints', `${kind}-${safe(modelVersion)}${namespace ? `-${safe(namespace)}` : ''}.txt`);
  }

  get size(): number {
    return this.done.size;
  }

  has(studyUid: string): boolean {
    return this.done.has(studyUid);
  }

  markDone(studyUid: string): void {
    if (this.done.has(studyUid)) return;
    this.done.add(studyUid);
    appendFileSync(this.file, `${studyUid}\n`);
  }

  /** The run finished: nothing to resume. */
  remove(): void {
    rmSync(this.file, { force: true });
  }
}
