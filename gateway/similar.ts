/**
 * /similar — content-based retrieval over the indexed archive (issue 5, docs/api.md "/similar").
 *
 *   GET  /studies/{study}/series/{series}/instances/{sop}/similar?…   by UIDs (path form)
 *   GET  /similar?StudyInstanceUID=…&SeriesInstanceUID=…&SOPInstanceUID=…&…   (the published client's form)
 *   POST /similar?…   body: application/dicom or multipart/related; type="application/dicom"
 *                     (an image not in the archive; embedded by a worker, nothing stored)
 *   GET  /openapi.json   the OpenAPI 3.1 document (docs/openapi.json)
 *
 * Options: limit, groupBy, excludeSameStudy, excludeSamePatient, Modality,
 * BodyPartExamined (core/similar/params.ts). Answers: JSON, or with
 * Accept: application/dicom+json a QIDO-shaped array (similar-render.ts).
 *
 * Registered at the root, not under /dicom-web: the gateway's DICOMweb route table
 * (routes.ts) owns every /dicom-web/* path and answers 404 for shapes it does not
 * know, so nothing here can shadow (or be shadowed by) a PACS resource.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Request, Response } from 'express';
import { Histogram } from 'prom-client';
import type { Config } from '../core/config.js';
import { HttpProblem } from '../core/errors.js';
import { MAX_UPLOAD_BYTES } from '../core/jobs.js';
import type { Logger } from '../core/log.js';
import type { VectorIndex } from '../core/index/types.js';
import { PacsClient } from '../core/pacs/client.js';
import { EmbedRequester } from '../core/similar/embed-requester.js';
import { parseQueryUids, parseSimilarParams, pathUids, type InstanceUids, type SimilarParams } from '../core/similar/params.js';
import { basicAuthorization, mergeVary } from './headers.js';
import { sendProblem } from './problem.js';
import { answerProblem } from './problem-answer.js';
import { DERIVED_BASE_VARY, derivePublicBase, fixedPublicBase } from './public-url.js';
import type { Gateway } from './server.js';
import { AccessChecker } from './similar-access.js';
import { CredentialProbe } from './similar-credentials.js';
import { renderDicomJson, renderJson } from './similar-render.js';
import { SimilarSearch, type QuerySource, type QueryVector } from './similar-search.js';
import { readUploadedDicom, refuseDeclaredTooLarge, uploadBoundary, type UploadPace } from './similar-upload.js';
import { RequestSlots } from './request-slots.js';
import { callerOf, type Caller } from './caller.js';

export interface SimilarDeps {
  readonly config: Config;
  /** The vector index, unbound: reads follow the live model version. */
  readonly index: VectorIndex;
  /** Model version of the shipped manifest (embed jobs use the index's live version when it has one). */
  readonly modelVersion: string;
  readonly logger: Logger;
  /** Queue namespace shared with the workers (tests); default none. */
  readonly queueNamespace?: string;
  /** Upload bound; default MAX_UPLOAD_BYTES (tests lower it). */
  readonly maxUploadBytes?: number;
  /** How fast an upload must come; default UPLOAD_PACE (tests shorten it). */
  readonly uploadPace?: UploadPace;
  /** Who computes query vectors; an EmbedRequester on config.redisUrl otherwise (tests answer without Redis). */
  readonly embed?: Pick<EmbedRequester, 'embed' | 'close'>;
}

export interface SimilarHandle {
  readonly search: SimilarSearch;
  readonly access: AccessChecker;
  /** Shared with POST /similar/heatmap: one bound on uploads in flight. */
  readonly uploads: RequestSlots;
}

const DICOM_JSON = 'application/dicom+json';

/** docs/openapi.json, from the source tree or next to a build in dist/. */
function loadOpenApi(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const p of [path.resolve(here, '../docs/openapi.json'), path.resolve(here, '../../docs/openapi.json')]) {
    try {
      return JSON.stringify(JSON.parse(readFileSync(p, 'utf8')));
    } catch {
      // try the next place
    }
  }
  throw new Error('docs/openapi.json not found next to the gateway');
}

/** Does the client ask for DICOM JSON rather than JSON? (explicit q=0 excluded) */
export function wantsDicomJson(accept: string | undefined): boolean {
  if (!accept) return false;
  let dicom = -1;
  let json = -1;
  for (const range of accept.split(',')) {
    const [type = '', ...params] = range.split(';').map((s) => s.trim().toLowerCase());
    const qp = params.find((p) => p.startsWith('q='));
    const q = qp ? Number(qp.slice(2)) : 1;
    if (!(q > 0)) continue;
    if (type === DICOM_JSON) dicom = Math.max(dicom, q);
    else if (type === 'application/json') json = Math.max(json, q);
  }
  return dicom > json;
}

export function attachSimilar(gateway: Gateway, deps: SimilarDeps): SimilarHandle {
  const { config, index, logger } = deps;
  const defaultAuthorization = basicAuthorization(config.pacs.user, config.pacs.password);
  const pacs = new PacsClient({
    url: config.pacs.url,
    user: config.pacs.user,
    password: config.pacs.password,
    timeoutMs: Math.min(config.pacs.timeoutMs, 10_000),
  });
  const access = new AccessChecker(pacs, {
    ttlMs: config.similar.accessCacheMs,
    maxEntries: config.similar.accessCacheEntries,
    defaultAuthorization,
    withPatient: config.showPatient,
  });
  const credentials = new CredentialProbe(pacs, { ttlMs: config.similar.accessCacheMs, maxEntries: config.similar.accessCacheEntries });
  const embed =
    deps.embed ??
    new EmbedRequester({
      redisUrl: config.redisUrl,
      timeoutMs: config.similar.embedTimeoutMs,
      ...(deps.queueNamespace ? { namespace: deps.queueNamespace } : {}),
    });
  const search = new SimilarSearch({
    index,
    access,
    embed,
    modelVersion: deps.modelVersion,
    log: logger,
  });
  const maxUpload = deps.maxUploadBytes ?? MAX_UPLOAD_BYTES;
  const uploads = new RequestSlots(config.similar.maxUploads);
  const fixedBase = config.publicUrl ? fixedPublicBase(config.publicUrl) : undefined;
  const openapi = loadOpenApi();

  const latency = new Histogram({
    name: 'cbmir_gateway_similar_duration_seconds',
    help: '/similar latency by request mode (uids|upload), query-vector source (index|on-demand|upload; none for every failed request) and outcome (ok or the problem code)',
    labelNames: ['mode', 'source', 'outcome'],
    buckets: [0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [gateway.metrics.registry],
  });
  // Rounds are not in the answer: a second round means near images in studies this caller cannot
  // read, so per request it would tell them that (e.g. excludeSamePatient on/off on one image).
  const roundsRun = new Histogram({
    name: 'cbmir_gateway_similar_rounds',
    help: '/similar ranking rounds per answered search (1 unless near hits were unreadable or filtered out)',
    buckets: [1, 2, 3, 4, 5],
    registers: [gateway.metrics.registry],
  });

  const publicBase = (req: IncomingMessage): string => {
    if (fixedBase) return fixedBase.base;
    const s = req.socket;
    const host = s.localAddress?.includes(':') ? `[${s.localAddress}]` : (s.localAddress ?? config.host);
    return derivePublicBase(req.headers, `${host}:${s.localPort ?? config.port}`).base;
  };

  /** One /similar request: resolve the query vector, search, render; problems rendered here (Retry-After). */
  const handle = async (
    req: Request,
    res: Response,
    mode: 'uids' | 'upload',
    resolve: (params: SimilarParams, caller: Caller) => Promise<QueryVector>,
    allowUids: boolean,
  ): Promise<void> => {
    const t0 = performance.now();
    let source: QuerySource | 'none' = 'none';
    let outcome = 'ok';
    try {
      const q = new URL(req.url ?? '/', 'http://x').searchParams;
      const params = parseSimilarParams(q, { allowUids, maxLimit: config.similar.maxLimit });
      const caller = callerOf(req.headers);
      const tq = performance.now();
      const query = await resolve(params, caller);
      const queryMs = performance.now() - tq;
      source = query.source;
      const out = await search.search(query, params, caller);
      const base = publicBase(req);
      res.setHeader('cache-control', 'private, no-store');
      // Where the query vector came from and what it cost (W3C Server-Timing). Not the kNN and
      // access times: summed over the ranking rounds, they would tell the caller, like the rounds
      // themselves, that near images lie in studies it cannot read.
      res.setHeader('server-timing', `query;desc="${query.source}";dur=${queryMs.toFixed(1)}`);
      roundsRun.observe(out.rounds);
      res.setHeader('vary', mergeVary(res.getHeader('vary'), 'Accept, Authorization', fixedBase ? undefined : DERIVED_BASE_VARY));
      if (wantsDicomJson(req.headers.accept)) {
        res.type(DICOM_JSON).send(JSON.stringify(renderDicomJson(params.groupBy, out.results, base, out.patients)));
      } else {
        res.json(renderJson(query, params, out.results, base, out.patients));
      }
    } catch (err) {
      const tooLarge = err instanceof HttpProblem && err.code === 'PAYLOAD_TOO_LARGE';
      const problem = answerProblem(res as unknown as ServerResponse, err, {
        log: (res.locals.log as Logger | undefined) ?? logger,
        failed: '/similar failed',
        unavailable: '/similar: no query vector',
        unreadBody: tooLarge || (mode === 'upload' && !req.readableEnded) ? req : undefined,
      });
      outcome = problem.code.toLowerCase();
    } finally {
      // A refused request counts as 'none' whatever its query vector was: 'index' on a 401 or 404
      // would tell whoever reads /metrics that the UIDs tried are indexed.
      latency.observe({ mode, source: outcome === 'ok' ? source : 'none', outcome }, (performance.now() - t0) / 1000);
    }
  };

  const byUids = (uids: () => InstanceUids) => (_p: SimilarParams, caller: Caller) => search.byUids(uids(), caller);

  const app = gateway.app;
  app.get('/studies/:study/series/:series/instances/:sop/similar', (req, res) =>
    handle(
      req,
      res,
      'uids',
      byUids(() => pathUids(String(req.params.study), String(req.params.series), String(req.params.sop))),
      false,
    ),
  );
  app.get('/similar', (req, res) =>
    handle(
      req,
      res,
      'uids',
      byUids(() => parseQueryUids(new URL(req.url ?? '/', 'http://x').searchParams)),
      true,
    ),
  );
  app.post('/similar', (req, res) =>
    handle(
      req,
      res,
      'upload',
      async (_params, caller) => {
        // Validate the media type (and a multipart boundary) before reading a byte of the body.
        const ct = req.headers['content-type'];
        uploadBoundary(ct);
        refuseDeclaredTooLarge(req, maxUpload);
        // A caller the PACS refuses holds no slot, nor a worker's time, for the search it would be refused.
        await credentials.require(caller);
        // Each upload holds its body and a base64 copy (in memory and in a Redis job) until a worker
        // has embedded it: bounded, so that a burst of large uploads cannot exhaust either, shared
        // out among callers, and read against a deadline, so that a trickle cannot hold a slot.
        const release = uploads.acquire(caller.key);
        try {
          return await search.byUpload(await readUploadedDicom(req, maxUpload, deps.uploadPace));
        } finally {
          release();
        }
      },
      false,
    ),
  );
  // Express answers HEAD with the GET handler (the whole search, no body), so Allow lists it.
  app.all('/studies/:study/series/:series/instances/:sop/similar', (_req, res) => {
    sendProblem(res as unknown as ServerResponse, new HttpProblem('METHOD_NOT_ALLOWED', 'use GET'), { allow: 'GET, HEAD' });
  });
  app.all('/similar', (_req, res) => {
    sendProblem(res as unknown as ServerResponse, new HttpProblem('METHOD_NOT_ALLOWED', 'use GET (by UIDs) or POST (an image)'), {
      allow: 'GET, HEAD, POST',
    });
  });
  app.get('/openapi.json', (_req, res) => {
    res.setHeader('cache-control', 'public, max-age=300');
    res.type('application/json').send(openapi);
  });

  gateway.addCloseHook(async () => {
    await embed.close();
    await pacs.close();
  });
  return { search, access, uploads };
}
