/**
 * /similar/heatmap — where two images agree, by the model's own account (docs/heatmaps.md).
 *
 *   GET  /similar/heatmap?StudyInstanceUID=…&SeriesInstanceUID=…&SOPInstanceUID=…
 *                        &ResultStudyInstanceUID=…&ResultSeriesInstanceUID=…&ResultSOPInstanceUID=…
 *        both images archived
 *   POST /similar/heatmap?ResultStudyInstanceUID=…&ResultSeriesInstanceUID=…&ResultSOPInstanceUID=…
 *        body: the query image, as for POST /similar (application/dicom or
 *        multipart/related; type="application/dicom"); nothing is stored
 *
 * Answer (JSON): { query: {…UIDs, grid}, result: {…UIDs, grid}, similarity, score,
 * modelVersion, height, width } where grid is height rows × width columns of signed
 * contributions to the similarity (positive: this location makes the pair more similar).
 * similarity = e_q · e_r (cosine of the unit embeddings, clamped to [−1, 1]); score =
 * (1 + similarity) / 2, the same score /similar reports (1 − d²/4, clamped to [0, 1]); both
 * rounded to 6 decimals, as /similar's.
 *
 * Access: as /similar — each archived image's study must be readable by the caller with
 * its own credentials (similar-access.ts) before a worker fetches it with the service's.
 * The work (two embeddings with feature maps + the heatmap graph) is a "heatmap" job on
 * the embed queue (core/heatmap/requester.ts, workers/heatmap.ts), which on-demand /similar
 * queries and uploads use too: a request holds a slot while it waits (request-slots.ts), an
 * upload one of the shared upload slots, two archived images one of a pool of as many of
 * their own, so that heatmaps cannot fill the queue and starve everyone's /similar.
 */
import type { ServerResponse } from 'node:http';
import type { Request, Response } from 'express';
import type { Config } from '../core/config.js';
import { HttpProblem, isValidUid } from '../core/errors.js';
import { HeatmapRequester } from '../core/heatmap/requester.js';
import { clampCosine, round6, scoreFromCosine } from '../core/similar/score.js';
import { MAX_UPLOAD_BYTES, type HeatmapSide } from '../core/jobs.js';
import type { Logger } from '../core/log.js';
import type { VectorIndex } from '../core/index/types.js';
import { sendProblem } from './problem.js';
import { answerProblem } from './problem-answer.js';
import type { Gateway } from './server.js';
import type { AccessChecker } from './similar-access.js';
import { readUploadedDicom, refuseDeclaredTooLarge, uploadBoundary, type UploadPace } from './similar-upload.js';
import { RequestSlots } from './request-slots.js';
import { callerOf } from './caller.js';
import { mergeVary } from './headers.js';

export interface SimilarHeatmapDeps {
  readonly config: Config;
  /** The /similar access checker (attachSimilar(...).access): one verdict cache for both routes. */
  readonly access: AccessChecker;
  readonly index: VectorIndex;
  readonly modelVersion: string;
  readonly logger: Logger;
  readonly queueNamespace?: string;
  readonly maxUploadBytes?: number;
  /** How fast an uploaded query must come; default UPLOAD_PACE (tests shorten it). */
  readonly uploadPace?: UploadPace;
  /** The /similar upload bound (attachSimilar(...).uploads), shared; one of its own otherwise. */
  readonly uploads?: RequestSlots;
  /** Who runs the heatmap jobs; a HeatmapRequester on config.redisUrl otherwise (tests answer without Redis). */
  readonly requester?: Pick<HeatmapRequester, 'request' | 'close'>;
}

interface Uids {
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopInstanceUid: string;
}

const QUERY = ['StudyInstanceUID', 'SeriesInstanceUID', 'SOPInstanceUID'] as const;
const RESULT = ['ResultStudyInstanceUID', 'ResultSeriesInstanceUID', 'ResultSOPInstanceUID'] as const;

/** The UID triple named by `names`, each present once and a valid UID (400 otherwise). */
function uidTriple(q: URLSearchParams, names: readonly [string, string, string]): Uids {
  const [study, series, sop] = names.map((n) => {
    const all = q.getAll(n);
    if (all.length !== 1 || !all[0]) throw new HttpProblem('BAD_PARAM', `${n} is required, once`);
    if (!isValidUid(all[0])) throw new HttpProblem('BAD_UID', `${n} must be a DICOM UID (digits and dots, at most 64 characters)`);
    return all[0];
  }) as [string, string, string];
  return { studyInstanceUid: study, seriesInstanceUid: series, sopInstanceUid: sop };
}

/** Parameters of a heatmap request; unknown ones refused, as /similar does. */
export function parseHeatmapParams(q: URLSearchParams, upload: boolean): { query?: Uids; result: Uids } {
  const known = new Set<string>([...RESULT, ...(upload ? [] : QUERY)]);
  const unknown = [...new Set(q.keys())].filter((k) => !known.has(k));
  if (unknown.length) {
    throw new HttpProblem('BAD_PARAM', `unknown parameter ${unknown.map((u) => JSON.stringify(u.slice(0, 64))).join(', ')}; known: ${[...known].join(', ')}`);
  }
  return { ...(upload ? {} : { query: uidTriple(q, QUERY) }), result: uidTriple(q, RESULT) };
}

/** Row-major floats → rows, 6 significant digits (the grids are for display). */
function toRows(v: readonly number[], h: number, w: number): number[][] {
  return Array.from({ length: h }, (_, y) => v.slice(y * w, (y + 1) * w).map((x) => Number(x.toPrecision(6))));
}

export function attachSimilarHeatmap(gateway: Gateway, deps: SimilarHeatmapDeps): void {
  const requester =
    deps.requester ??
    new HeatmapRequester({
      redisUrl: deps.config.redisUrl,
      timeoutMs: deps.config.similar.embedTimeoutMs,
      ...(deps.queueNamespace ? { namespace: deps.queueNamespace } : {}),
    });
  const maxUpload = deps.maxUploadBytes ?? MAX_UPLOAD_BYTES;
  const uploads = deps.uploads ?? new RequestSlots(deps.config.similar.maxUploads);
  // As many as uploads (CBMIR_SIMILAR_MAX_UPLOADS), not taken from them: they hold no body.
  const archived = new RequestSlots(deps.config.similar.maxUploads, 'heatmaps of archived images being made');

  const liveVersion = async (): Promise<string> => {
    try {
      return (await deps.index.liveVersion()) ?? deps.modelVersion;
    } catch {
      return deps.modelVersion; // the index is not needed for a heatmap
    }
  };

  const handle = async (req: Request, res: Response, upload: boolean): Promise<void> => {
    let release: (() => void) | undefined;
    try {
      const p = parseHeatmapParams(new URL(req.url ?? '/', 'http://x').searchParams, upload);
      const auth = callerOf(req.headers);
      // Every check that needs no body comes before a byte of it is read: media type and declared
      // length, the caller's access to each archived image (its study, then the instance at its full path,
      // with the caller's own credentials), then a slot among the uploads (or heatmaps) in flight.
      const ct = req.headers['content-type'];
      if (upload) {
        uploadBoundary(ct);
        refuseDeclaredTooLarge(req, maxUpload);
      }
      for (const [side, what] of [
        [p.query, 'the query instance'],
        [p.result, 'the result instance'],
      ] as const) {
        if (!side) continue;
        await deps.access.requireReadable(side.studyInstanceUid, auth, what);
        await deps.access.requireInstance(side, auth, what);
      }
      let querySide: HeatmapSide;
      if (upload) {
        release = uploads.acquire(auth.key);
        const bytes = await readUploadedDicom(req, maxUpload, deps.uploadPace).catch((err: unknown) => {
          // Worded as the worker's refusals are: the side first.
          throw err instanceof HttpProblem && err.code === 'NOT_EMBEDDABLE' ? new HttpProblem('NOT_EMBEDDABLE', `query: ${err.detail}`) : err;
        });
        querySide = { dicomBase64: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64') };
      } else {
        release = archived.acquire(auth.key);
        querySide = p.query!;
      }
      const r = await requester.request({ kind: 'heatmap', query: querySide, result: p.result, modelVersion: await liveVersion(), enqueuedAt: Date.now() });
      if (r.status === 'refused') throw new HttpProblem('NOT_EMBEDDABLE', r.reason.slice(0, 500));
      res.setHeader('cache-control', 'private, no-store');
      res.setHeader('vary', mergeVary(res.getHeader('vary'), 'Authorization'));
      res.json({
        query: { ...(p.query ?? {}), source: upload ? 'upload' : 'archive', grid: toRows(r.query, r.height, r.width) },
        result: { ...p.result, source: 'archive', grid: toRows(r.result, r.height, r.width) },
        similarity: round6(clampCosine(r.similarity)),
        score: round6(scoreFromCosine(r.similarity)),
        modelVersion: r.modelVersion,
        height: r.height,
        width: r.width,
      });
    } catch (err) {
      answerProblem(res as unknown as ServerResponse, err, {
        log: (res.locals.log as Logger | undefined) ?? deps.logger,
        failed: '/similar/heatmap failed',
        unavailable: '/similar/heatmap: no heatmap',
        unreadBody: upload && !req.readableEnded ? req : undefined,
      });
    } finally {
      release?.();
    }
  };

  gateway.app.get('/similar/heatmap', (req, res) => handle(req, res, false));
  gateway.app.post('/similar/heatmap', (req, res) => handle(req, res, true));
  gateway.app.all('/similar/heatmap', (_req, res) => {
    sendProblem(res as unknown as ServerResponse, new HttpProblem('METHOD_NOT_ALLOWED', 'use GET (two archived images) or POST (an uploaded query)'), {
      allow: 'GET, HEAD, POST',
    });
  });
  gateway.addCloseHook(() => requester.close());
}
