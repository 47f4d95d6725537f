/**
 * Configuration: read once from the environment at start-up, validated against
 * one schema, every problem reported at once with the name of the setting, then
 * frozen. Defaults carry their units in the key name (…Ms, …Bytes).
 */
import { z } from 'zod';
import { DEFAULT_MAX_PIXELS_PER_FRAME, MAX_MAX_PIXELS_PER_FRAME, MIN_MAX_PIXELS_PER_FRAME } from './dicom/limits.js';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

/** An absolute URL with one of the given schemes (e.g. 'http:'), so a typo fails here, naming the setting, not at the first request. */
const urlWith = (schemes: readonly string[]) =>
  z
    .string()
    .url()
    .refine(
      (v) => !URL.canParse(v) || schemes.includes(new URL(v).protocol),
      `must be a URL starting with ${schemes.map((s) => `${s}//`).join(' or ')}`,
    );
const url = urlWith(['http:', 'https:']);
/**
 * Digits only: Number() would also take '0x1F90', '8e3' and '' (0), so a typo would
 * become a valid but different value instead of an error naming the setting.
 */
const int = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, 'must be a whole number (digits only)')
    .transform(Number)
    .pipe(z.number().min(min).max(max));
/** A plain decimal (digits, optional fraction): the same reasons as int. */
const decimal = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^(\d+\.?\d*|\.\d+)$/, 'must be a decimal number (e.g. 10 or 2.5)')
    .transform(Number)
    .pipe(z.number().min(min).max(max));
/**
 * A viewer link template: absolute http(s) or a path on the gateway; placeholders {study} {series} {instance}.
 * A path may not start with // or /\: browsers resolve both as a link to another host (`//evil.example/…`).
 */
const viewerTemplate = z
  .string()
  .max(2000)
  .regex(/^(https?:\/\/[^\s]+|\/(?![/\\])[^\s]*)$/, 'must be an http(s) URL or a path starting with a single / (not // or /\\)');

/** CBMIR_WORKER_MAX_INSTANCE_BYTES's default, also what a worker built without configuration uses. */
export const DEFAULT_MAX_INSTANCE_BYTES = 512 * 2 ** 20;

/** Environment variable → schema. Keys are the env names, so errors name the setting. */
const envSchema = z.object({
  CBMIR_HOST: z.string().min(1).default('127.0.0.1'),
  CBMIR_PORT: int(1, 65535).default(8080),
  /** Public base URL of the gateway as viewers see it (for rewritten URLs); default derived from the request Host. */
  CBMIR_PUBLIC_URL: url.optional(),
  /** DICOMweb root of the PACS, e.g. http://127.0.0.1:8042/dicom-web */
  CBMIR_PACS_URL: url.default('http://127.0.0.1:8042/dicom-web'),
  CBMIR_PACS_USER: z.string().optional(),
  CBMIR_PACS_PASSWORD: z.string().optional(),
  /** Acknowledges that, bound beyond loopback, requests without Authorization reach the PACS with CBMIR_PACS_USER's login. */
  CBMIR_ANONYMOUS_USES_PACS_LOGIN: bool.default(false),
  CBMIR_PACS_TIMEOUT_MS: int(100, 600_000).default(30_000),
  /** STOW: how long the PACS may take to answer once the whole upload reached it (it stores every instance first). */
  CBMIR_PACS_STOW_TIMEOUT_MS: int(1000, 86_400_000).default(600_000),
  /** WADO-URI endpoint of the PACS; default: the PACS origin + /wado (Orthanc's plugin). */
  CBMIR_PACS_WADO_URI_URL: url.optional(),
  /** Upper bound on concurrent upstream connections to the PACS. */
  CBMIR_PACS_MAX_SOCKETS: int(1, 4096).default(128),
  /** How long an idle upstream connection is kept for reuse; below the PACS's keep-alive (Orthanc: 1 s). */
  CBMIR_PACS_KEEPALIVE_MS: int(0, 600_000).default(700),
  CBMIR_REDIS_URL: urlWith(['redis:', 'rediss:']).default('redis://127.0.0.1:6379'),
  /** Elasticsearch URL; when unset the embedded single-machine index is used. */
  CBMIR_ES_URL: url.optional(),
  CBMIR_ES_INDEX: z.string().regex(/^[a-z0-9][a-z0-9_-]*$/).default('cbmir-vectors'),
  CBMIR_DATA_DIR: z.string().default('.cbmir-data'),
  /** Path to the model manifest (models/manifest.json) or an .onnx file. */
  CBMIR_MODEL: z.string().optional(),
  /** Web origins (scheme://host[:port]) whose pages may call the gateway, e.g. the viewer's; `*` for any; default none. */
  CBMIR_CORS_ORIGINS: z.string().default(''),
  /** Host names the gateway answers to (DNS-rebinding guard); `*` for any; default: the loopback names (+ CBMIR_PUBLIC_URL's host) when bound to loopback, else any. */
  CBMIR_ALLOWED_HOSTS: z.string().optional(),
  CBMIR_MAX_HEADER_BYTES: int(1024, 1 << 20).default(16 * 1024),
  CBMIR_MAX_BODY_BYTES: int(1024, 16 * (1 << 30)).default(2 * (1 << 30)),
  CBMIR_MAX_QUERY_BYTES: int(256, 1 << 20).default(8 * 1024),
  /** How long shutdown waits for in-flight requests before closing connections. */
  CBMIR_SHUTDOWN_GRACE_MS: int(0, 600_000).default(10_000),
  CBMIR_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  CBMIR_THUMBNAIL_CACHE_ENTRIES: int(0, 1_000_000).default(2000),
  /** Index jobs in flight per worker process. Most of them wait ≈ 1 s for the index refresh that makes them searchable (cheap), so this is high. */
  CBMIR_WORKER_CONCURRENCY: int(1, 1024).default(64),
  /** Of those, how many may hold an instance being fetched, decoded and embedded (bounds memory: one instance each). */
  CBMIR_WORKER_DECODE_CONCURRENCY: int(1, 256).default(32),
  /** Largest instance (bytes as the PACS sends it) a worker fetches to embed; larger ones are refused as decode/TOO_LARGE. */
  CBMIR_WORKER_MAX_INSTANCE_BYTES: int(1 << 20, 16 * (1 << 30)).default(DEFAULT_MAX_INSTANCE_BYTES),
  /** Largest frame (Rows × Columns) a worker decodes to embed; larger ones are refused as decode/TOO_LARGE. Up to ~28 bytes a pixel while it is decoded (core/dicom/limits.ts). */
  CBMIR_WORKER_MAX_FRAME_PIXELS: int(MIN_MAX_PIXELS_PER_FRAME, MAX_MAX_PIXELS_PER_FRAME).default(DEFAULT_MAX_PIXELS_PER_FRAME),
  CBMIR_BATCH_SIZE: int(1, 256).default(16),
  CBMIR_BATCH_WAIT_MS: int(0, 10_000).default(20),
  CBMIR_SHOW_PATIENT: bool.default(false),
  /** Secret key for patientKey = HMAC(PatientID) in the index (core/index/patient-key.ts); default: generated once in the data dir. Same value on every worker. */
  CBMIR_PATIENT_KEY_SECRET: z.string().min(16).optional(),
  /** Elasticsearch HNSW variant for new indices (docs/index.md has the measured recall/latency of each). */
  CBMIR_ES_VECTOR_TYPE: z.enum(['hnsw', 'int8_hnsw']).default('int8_hnsw'),
  /** Shards and replicas of each new per-version index (docs/index.md, "Shards and replicas"). */
  CBMIR_ES_SHARDS: int(1, 64).default(1),
  CBMIR_ES_REPLICAS: int(0, 16).default(0),
  /** Reconciler pass inside each worker process every N seconds (workers/reconcile/periodic.ts); 0 = off. */
  CBMIR_RECONCILE_INTERVAL_S: int(0, 7 * 24 * 3600).default(300),
  /** Upper bound on the reconciler's PACS requests per second (periodic passes and `cbmir backfill`). */
  CBMIR_RECONCILE_RATE: decimal(0.01, 10_000).default(10),
  /** Orthanc only: poll its change feed every N seconds and reconcile the studies it names (fast path); 0 = off. */
  CBMIR_RECONCILE_CHANGES_INTERVAL_S: int(0, 3600).default(0),
  /** Orthanc's REST root for the change feed; default: the PACS URL's origin. */
  CBMIR_PACS_REST_URL: url.optional(),
  /**
   * onnxruntime intra-op threads per worker process; 0 = onnxruntime's choice (all cores).
   * On a shared or small machine, 1 thread per process and one process per core wastes no
   * CPU on spinning threads (measured: 49 vs 65 ms CPU per image; docs/indexing.md).
   */
  CBMIR_ORT_THREADS: int(0, 256).default(0),
  /** /similar: how long the gateway waits for an on-demand embedding (unindexed instance, upload) before 503 + Retry-After. */
  CBMIR_EMBED_TIMEOUT_MS: int(100, 600_000).default(10_000),
  /** /similar: how long a "caller may read study X" verdict is reused (per credential and study); 0 = no cache. */
  CBMIR_ACCESS_CACHE_MS: int(0, 3_600_000).default(30_000),
  CBMIR_ACCESS_CACHE_ENTRIES: int(0, 10_000_000).default(50_000),
  /** /similar: the largest `limit` a caller may ask for. 100 for people; evaluation (npm run eval:live) raises it up to 10000 (the index's MAX_K) to read a full ranking through the API. */
  CBMIR_SIMILAR_MAX_LIMIT: int(1, 10_000).default(100),
  /** /similar: uploads searched at once; each holds up to ~150 MiB (the body, its base64 copy in the job) until embedded, so more wait with 503 + Retry-After. */
  CBMIR_SIMILAR_MAX_UPLOADS: int(1, 1_000).default(4),
  /**
   * /ui "open in viewer": URL template, {study} {series} {instance} replaced by UIDs (OHIF v3 on deploy/ohif's default port);
   * `none` = no link (no viewer is served beside the gateway). OHIF 3.13 opens the study on the series and image
   * named by initialSeriesInstanceUID / initialSOPInstanceUID, so the link lands on the result, not the study's first series.
   */
  CBMIR_VIEWER_URL_TEMPLATE: z
    .union([z.literal('none'), viewerTemplate])
    .default('http://127.0.0.1:3000/viewer?StudyInstanceUIDs={study}&initialSeriesInstanceUID={series}&initialSOPInstanceUID={instance}'),
  /** /ui: a second viewer link (e.g. BlueLight: http://host/bluelight/html/start.html?StudyInstanceUID={study}); unset = none. */
  CBMIR_BLUELIGHT_URL_TEMPLATE: viewerTemplate.optional(),
  /**
   * /ui "similar studies in the viewer" for the query image ({instance}, also {study} {series}): deploy/ohif's
   * viewer loads that image's virtual root from its own /similar-to/{instance}/app-config.json; `none` = no link.
   */
  CBMIR_VIEWER_SIMILAR_URL_TEMPLATE: z
    .union([z.literal('none'), viewerTemplate])
    .default('http://127.0.0.1:3000/?configUrl=%2Fsimilar-to%2F{instance}%2Fapp-config.json'),
});

export type Env = z.infer<typeof envSchema>;

export interface Config {
  readonly host: string;
  readonly port: number;
  readonly publicUrl: string | undefined;
  readonly pacs: {
    readonly url: string;
    readonly user: string | undefined;
    readonly password: string | undefined;
    readonly timeoutMs: number;
    readonly stowTimeoutMs: number;
    readonly wadoUriUrl: string;
    readonly maxSockets: number;
    readonly keepAliveMs: number;
  };
  readonly redisUrl: string;
  readonly es: { readonly url: string; readonly index: string } | undefined;
  readonly dataDir: string;
  readonly model: string | undefined;
  readonly corsOrigins: readonly string[] | '*';
  /** Lower-case host names (no port; IPv6 in brackets) accepted in the Host header, or '*'. */
  readonly allowedHosts: readonly string[] | '*';
  readonly maxHeaderBytes: number;
  readonly maxBodyBytes: number;
  readonly maxQueryBytes: number;
  readonly shutdownGraceMs: number;
  readonly logLevel: Env['CBMIR_LOG_LEVEL'];
  readonly thumbnailCacheEntries: number;
  readonly worker: {
    readonly concurrency: number;
    readonly decodeConcurrency: number;
    readonly maxInstanceBytes: number;
    readonly maxFramePixels: number;
    readonly batchSize: number;
    readonly batchWaitMs: number;
    readonly ortThreads: number;
  };
  readonly showPatient: boolean;
  readonly patientKeySecret: string | undefined;
  readonly esVectorType: 'hnsw' | 'int8_hnsw';
  readonly esShards: number;
  readonly esReplicas: number;
  readonly reconcile: { readonly intervalS: number; readonly maxRequestsPerSecond: number; readonly changesIntervalS: number; readonly pacsRestUrl: string };
  readonly similar: {
    readonly embedTimeoutMs: number;
    readonly accessCacheMs: number;
    readonly accessCacheEntries: number;
    readonly maxLimit: number;
    readonly maxUploads: number;
  };
  /** The web page (/ui): viewer link templates. */
  readonly ui: {
    readonly viewerUrlTemplate: string | undefined;
    readonly viewerSimilarUrlTemplate: string | undefined;
    readonly blueLightUrlTemplate: string | undefined;
  };
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

/** The names a loopback-bound service is reached by (Host headers, URLs a PACS writes for itself). */
export const LOOPBACK_HOSTS: readonly string[] = Object.freeze(['127.0.0.1', 'localhost', '[::1]']);

function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === '::1' || h === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** CBMIR_ALLOWED_HOSTS → host names; by default a loopback-bound gateway answers only to loopback names. */
function allowedHosts(raw: string | undefined, bind: string, publicUrl: string | undefined): readonly string[] | '*' {
  const list = raw?.trim();
  if (list === '*') return '*';
  if (list) return Object.freeze(list.split(',').map((h) => h.trim().toLowerCase()).filter(Boolean));
  if (!isLoopback(bind)) return '*';
  const hosts = new Set([...LOOPBACK_HOSTS, bind.includes(':') && !bind.startsWith('[') ? `[${bind}]` : bind.toLowerCase()]);
  if (publicUrl) hosts.add(new URL(publicUrl).hostname.toLowerCase());
  return Object.freeze([...hosts]);
}

/** Every environment variable the configuration reads (docs/operations.md lists each one). */
export const CONFIG_ENV_KEYS: readonly string[] = Object.freeze(Object.keys(envSchema.shape));

/**
 * An empty or blank CBMIR_* value counts as unset: `CBMIR_PORT=${PORT}` with PORT unset, or a
 * `CBMIR_X=` line in an env file, means "not configured", not 0 or the current directory.
 */
function withoutBlankSettings(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k, v]) => !(k.startsWith('CBMIR_') && v !== undefined && v.trim() === '')));
}

export interface LoadConfigOptions {
  /**
   * Whether this process answers HTTP with these settings (the gateway: default). Workers and
   * the CLI commands pass false: the checks of what a listening gateway would expose
   * (CBMIR_PACS_USER beyond loopback, CORS `*` with a PACS login) are the gateway's, so one env
   * file can serve every process.
   */
  readonly serves?: boolean;
}

/** Parse and freeze configuration; throws ConfigError listing every bad setting by name. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, opts: LoadConfigOptions = {}): Config {
  const serves = opts.serves ?? true;
  const parsed = envSchema.safeParse(withoutBlankSettings(env));
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(env)'}: ${i.message}`);
    throw new ConfigError(problems);
  }
  const e = parsed.data;
  const problems: string[] = [];
  for (const name of ['CBMIR_PACS_URL', 'CBMIR_PACS_WADO_URI_URL', 'CBMIR_PACS_REST_URL'] as const) {
    const v = e[name];
    // The upstream never sends URL credentials, and the URL is logged: they belong in the two settings below.
    if (v && (new URL(v).username || new URL(v).password)) problems.push(`${name}: no user or password in the URL; set CBMIR_PACS_USER and CBMIR_PACS_PASSWORD`);
  }
  if ((e.CBMIR_PACS_USER === undefined) !== (e.CBMIR_PACS_PASSWORD === undefined)) {
    problems.push('CBMIR_PACS_USER / CBMIR_PACS_PASSWORD: set both or neither');
  }
  if (serves && e.CBMIR_PACS_USER !== undefined && !isLoopback(e.CBMIR_HOST) && !e.CBMIR_ANONYMOUS_USES_PACS_LOGIN) {
    // The gateway sends its own login when a request carries none: bound to the network, that
    // is the PACS opened to every host that can reach the gateway.
    problems.push(
      `CBMIR_PACS_USER: with CBMIR_HOST=${e.CBMIR_HOST} every request without Authorization would reach the PACS with this login, ` +
        'from any host that reaches the gateway; unset it on the gateway (clients send their own credentials) ' +
        'or set CBMIR_ANONYMOUS_USES_PACS_LOGIN=true if that is intended (e.g. behind an authenticating proxy)',
    );
  }
  const origins = e.CBMIR_CORS_ORIGINS.trim();
  const originList = origins === '*' ? '*' : origins.split(',').map((o) => o.trim()).filter(Boolean);
  if (serves && originList === '*' && e.CBMIR_PACS_USER !== undefined) {
    // The gateway adds its PACS login to requests that carry none, so `*` would let any web page read the PACS.
    problems.push('CBMIR_CORS_ORIGINS: `*` is refused while CBMIR_PACS_USER is set; list the viewer origins');
  }
  for (const o of originList === '*' ? [] : originList) {
    if (!URL.canParse(o) || new URL(o).origin !== o) problems.push(`CBMIR_CORS_ORIGINS: ${JSON.stringify(o)} is not an origin (scheme://host[:port])`);
  }
  if (problems.length) throw new ConfigError(problems);
  return Object.freeze({
    host: e.CBMIR_HOST,
    port: e.CBMIR_PORT,
    publicUrl: e.CBMIR_PUBLIC_URL?.replace(/\/+$/, ''),
    pacs: Object.freeze({
      url: e.CBMIR_PACS_URL.replace(/\/+$/, ''),
      user: e.CBMIR_PACS_USER,
      password: e.CBMIR_PACS_PASSWORD,
      timeoutMs: e.CBMIR_PACS_TIMEOUT_MS,
      stowTimeoutMs: e.CBMIR_PACS_STOW_TIMEOUT_MS,
      wadoUriUrl: (e.CBMIR_PACS_WADO_URI_URL ?? `${new URL(e.CBMIR_PACS_URL).origin}/wado`).replace(/\/+$/, ''),
      maxSockets: e.CBMIR_PACS_MAX_SOCKETS,
      keepAliveMs: e.CBMIR_PACS_KEEPALIVE_MS,
    }),
    redisUrl: e.CBMIR_REDIS_URL,
    es: e.CBMIR_ES_URL ? Object.freeze({ url: e.CBMIR_ES_URL, index: e.CBMIR_ES_INDEX }) : undefined,
    dataDir: e.CBMIR_DATA_DIR,
    model: e.CBMIR_MODEL,
    corsOrigins: originList === '*' ? '*' : Object.freeze(originList),
    allowedHosts: allowedHosts(e.CBMIR_ALLOWED_HOSTS, e.CBMIR_HOST, e.CBMIR_PUBLIC_URL),
    maxHeaderBytes: e.CBMIR_MAX_HEADER_BYTES,
    maxBodyBytes: e.CBMIR_MAX_BODY_BYTES,
    maxQueryBytes: e.CBMIR_MAX_QUERY_BYTES,
    shutdownGraceMs: e.CBMIR_SHUTDOWN_GRACE_MS,
    logLevel: e.CBMIR_LOG_LEVEL,
    thumbnailCacheEntries: e.CBMIR_THUMBNAIL_CACHE_ENTRIES,
    worker: Object.freeze({
      concurrency: e.CBMIR_WORKER_CONCURRENCY,
      decodeConcurrency: e.CBMIR_WORKER_DECODE_CONCURRENCY,
      maxInstanceBytes: e.CBMIR_WORKER_MAX_INSTANCE_BYTES,
      maxFramePixels: e.CBMIR_WORKER_MAX_FRAME_PIXELS,
      batchSize: e.CBMIR_BATCH_SIZE,
      batchWaitMs: e.CBMIR_BATCH_WAIT_MS,
      ortThreads: e.CBMIR_ORT_THREADS,
    }),
    showPatient: e.CBMIR_SHOW_PATIENT,
    patientKeySecret: e.CBMIR_PATIENT_KEY_SECRET,
    esVectorType: e.CBMIR_ES_VECTOR_TYPE,
    esShards: e.CBMIR_ES_SHARDS,
    esReplicas: e.CBMIR_ES_REPLICAS,
    reconcile: Object.freeze({
      intervalS: e.CBMIR_RECONCILE_INTERVAL_S,
      maxRequestsPerSecond: e.CBMIR_RECONCILE_RATE,
      changesIntervalS: e.CBMIR_RECONCILE_CHANGES_INTERVAL_S,
      pacsRestUrl: (e.CBMIR_PACS_REST_URL ?? new URL(e.CBMIR_PACS_URL).origin).replace(/\/+$/, ''),
    }),
    similar: Object.freeze({
      embedTimeoutMs: e.CBMIR_EMBED_TIMEOUT_MS,
      accessCacheMs: e.CBMIR_ACCESS_CACHE_MS,
      accessCacheEntries: e.CBMIR_ACCESS_CACHE_ENTRIES,
      maxLimit: e.CBMIR_SIMILAR_MAX_LIMIT,
      maxUploads: e.CBMIR_SIMILAR_MAX_UPLOADS,
    }),
    ui: Object.freeze({
      viewerUrlTemplate: e.CBMIR_VIEWER_URL_TEMPLATE === 'none' ? undefined : e.CBMIR_VIEWER_URL_TEMPLATE,
      viewerSimilarUrlTemplate: e.CBMIR_VIEWER_SIMILAR_URL_TEMPLATE === 'none' ? undefined : e.CBMIR_VIEWER_SIMILAR_URL_TEMPLATE,
      blueLightUrlTemplate: e.CBMIR_BLUELIGHT_URL_TEMPLATE,
    }),
  });
}

/** A URL as it may be printed: a password (redis://:secret@host) or user name in it replaced by `***`. */
export function withoutCredentials(url: string): string {
  if (!URL.canParse(url)) return url.replace(/\/\/[^@/]*@/, '//***@');
  const u = new URL(url);
  if (u.username) u.username = '***';
  if (u.password) u.password = '***';
  // ioredis also takes options from the query (?password=…); none are needed to say where.
  u.search = '';
  u.hash = '';
  return u.toString();
}
