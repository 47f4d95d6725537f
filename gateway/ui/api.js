// The gateway as the page sees it: QIDO and thumbnails through /dicom-web, /similar,
// /similar/heatmap. Every request carries the user's Authorization when one is entered
// (kept in memory only); problems become Errors with a message a person can act on.
// Requests take an AbortSignal (`signal`): a superseded one is cancelled, and rejects
// with an AbortError, which the page shows nothing for.

let authorization = '';

// RFC 9110 auth-scheme (a token: no ':' in it), then its credentials.
const SCHEME = /^([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)\s+(\S[\s\S]*)$/;
// Schemes a PACS or its proxy may ask for (IANA HTTP Authentication Scheme Registry): only these
// are taken as typed, so a user name with a space ("john smith:pw") is still a user:password.
const KNOWN_SCHEMES = new Set(['basic', 'bearer', 'digest', 'dpop', 'hoba', 'mutual', 'negotiate', 'ntlm', 'privatetoken', 'scram-sha-1', 'scram-sha-256', 'vapid', 'aws4-hmac-sha256', 'token']);

function base64Utf8(text) {
  let bin = '';
  for (const b of new TextEncoder().encode(text)) bin += String.fromCharCode(b);
  return btoa(bin);
}

/**
 * The Authorization header for what a person typed in the field: `user:password` (no scheme)
 * and `Basic user:password` become Basic with the credentials in base64 (UTF-8), as a PACS
 * expects them (base64 has no ':', so a ':' says they are still plain); `Bearer …`,
 * `Basic <base64>` and any other known `Scheme …` are sent as typed (an unknown first word with
 * a ':' after it is a user name); a bare token becomes Bearer. Spaces around the whole value are
 * dropped (pasted tokens carry them): a password ending in a space cannot be typed here.
 * Throws when the result cannot be a header value (fetch would throw a TypeError naming
 * nothing the person could fix), without repeating the secret.
 */
export function authorizationOf(raw) {
  const t = String(raw ?? '').trim();
  if (!t) return '';
  const m = SCHEME.exec(t) ?? undefined;
  const known = m && KNOWN_SCHEMES.has(m[1].toLowerCase());
  let value;
  if (known && m[1].toLowerCase() === 'basic') value = m[2].includes(':') ? `Basic ${base64Utf8(m[2])}` : `Basic ${m[2]}`;
  else if (known) value = t;
  else if (t.includes(':')) value = `Basic ${base64Utf8(t)}`;
  else if (m) value = t;
  else value = `Bearer ${t}`;
  if (!/^[\x20-\x7e]+$/.test(value)) {
    throw new Error(
      'The Authorization field holds a character a request header cannot carry: a token may use printable ASCII only ' +
        '(a user:password may use any character; it is sent in base64).',
    );
  }
  return value;
}

/** Sets the Authorization of every later request; an invalid one leaves none (and throws, see authorizationOf). */
export function setToken(raw) {
  authorization = '';
  authorization = authorizationOf(raw);
}

function headers(extra = {}) {
  return authorization ? { ...extra, authorization } : extra;
}

/** Seconds a Retry-After header (delay-seconds or an HTTP-date) asks to wait; undefined when absent or unreadable. */
export function retryAfterSeconds(header, now = Date.now()) {
  const v = String(header ?? '').trim();
  if (!v) return undefined;
  if (/^\d+$/.test(v)) return Number(v);
  // An HTTP-date starts with the day's name; Date.parse alone would read '-3' as a year.
  const at = /^[A-Za-z]{3},? /.test(v) ? Date.parse(v) : NaN;
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}

/**
 * What a problem body (RFC 9457) says, minus the worker's internal step codes.
 * `retryAfter`: seconds from the answer's Retry-After (503 busy, upload slots full; 429);
 * `tokenSet`: whether the person entered an Authorization, so a 401 says it was refused
 * rather than asking for one.
 */
export function problemMessage(status, body, { retryAfter, tokenSet = false } = {}) {
  let detail = body && typeof body === 'object' ? (body.detail || body.title || '') : '';
  detail = String(detail).replace(/^(?:[a-z]+(?: \([A-Za-z-]+\))?: )?[A-Z][A-Z_]+: /, '');
  const again = Number.isFinite(retryAfter) ? (retryAfter > 0 ? `try again in ${retryAfter} s` : 'try again now') : 'try again shortly';
  if (status === 401) {
    return tokenSet
      ? `The PACS refused the token entered above: check it, or clear the field to go without. ${detail}`.trim()
      : `The archive asks for credentials: enter an Authorization token above. ${detail}`.trim();
  }
  if (status === 403) return `These credentials may not read this. ${detail}`.trim();
  if (status === 422) return `This image cannot be searched — ${detail || 'not an image'}`;
  if (status === 503) return `The search service is busy or starting${detail ? ` (${detail})` : ''}: ${again}.`;
  if (status === 429) return `Too many requests at once${detail ? ` (${detail})` : ''}: ${again}.`;
  if (status === 413) return `The file is too large. ${detail}`.trim();
  return detail ? `${detail} (HTTP ${status})` : `The gateway answered HTTP ${status}.`;
}

async function check(res) {
  if (res.ok) return res;
  let body;
  try {
    body = await res.json();
  } catch {
    body = undefined;
  }
  const err = new Error(problemMessage(res.status, body, { retryAfter: retryAfterSeconds(res.headers.get('retry-after')), tokenSet: Boolean(authorization) }));
  err.status = res.status;
  throw err;
}

export const NETWORK_MESSAGE = 'Cannot reach the gateway (network error): check the connection and try again.';

/**
 * What a failed fetch (or the read of its body) says to a person: fetch rejects with a bare
 * TypeError ("Failed to fetch", "fetch failed", "NetworkError when attempting to fetch
 * resource.") when the gateway cannot be reached or the connection drops. An AbortError
 * (the request was cancelled on purpose) and the page's own errors pass unchanged.
 */
export function networkError(err) {
  if (err?.name === 'AbortError' || !(err instanceof TypeError)) return err;
  const e = new Error(NETWORK_MESSAGE, { cause: err });
  e.network = true;
  return e;
}

/** fetch, refused answers (check) and the answer's body read by `read`, with networkError's messages. */
async function request(url, init, read) {
  try {
    const res = await fetch(url, init);
    await check(res);
    return await read(res);
  } catch (err) {
    throw networkError(err);
  }
}

function getJson(url, { accept = 'application/json', signal } = {}) {
  return request(url, { headers: headers({ accept }), signal }, (res) => (res.status === 204 ? [] : res.json()));
}

// --- DICOM JSON (PS3.18 F.2) ---------------------------------------------------
/**
 * The first value of an attribute. A person name (PN: an object of component groups) is its
 * Alphabetic group, or where that is absent or empty the Ideographic, then the Phonetic one
 * (a name stored in kanji or hangul only); undefined when it has none.
 */
export function tagValue(ds, tag) {
  const v = ds?.[tag]?.Value?.[0];
  if (v && typeof v === 'object' && (ds[tag].vr === 'PN' || 'Alphabetic' in v || 'Ideographic' in v || 'Phonetic' in v)) {
    return [v.Alphabetic, v.Ideographic, v.Phonetic].find((g) => typeof g === 'string' && g !== '');
  }
  return v;
}

const enc = encodeURIComponent;
const qido = (root, path, params, signal) => {
  const q = new URLSearchParams(params);
  return getJson(`${root}${path}?${q}`, { accept: 'application/dicom+json', signal });
};

/**
 * Studies matching `match` (QIDO matching parameters, browse.js studyMatch), at most `limit`:
 * one more is asked for, so `more` says whether the archive holds others the list leaves out.
 */
export async function listStudies(root, match = [], limit = 200, { signal } = {}) {
  const fields = [['includefield', '00081030'], ['includefield', '00080061'], ['includefield', '00201208']];
  const list = await qido(root, '/studies', [...match, ['limit', String(limit + 1)], ...fields], signal);
  return { studies: list.slice(0, limit), more: list.length > limit };
}
export function listSeries(root, study, { signal } = {}) {
  return qido(root, `/studies/${enc(study)}/series`, [['includefield', '0008103E'], ['includefield', '00201209']], signal);
}
/**
 * Every instance of a series, paged with offset, up to `max`: `complete` is false when the
 * series holds more (one more than `max` is asked for to tell). An instance listed on two
 * pages (the PACS's order shifted while paging) is kept once.
 */
export async function listInstances(root, study, series, { pageSize = 1000, max = 5000, signal } = {}) {
  const path = `/studies/${enc(study)}/series/${enc(series)}/instances`;
  const all = [];
  let asked = 0;
  while (asked <= max) {
    const limit = Math.min(pageSize, max + 1 - asked);
    const page = await qido(root, path, [['limit', String(limit)], ['offset', String(asked)], ['includefield', '00200013']], signal);
    all.push(...page);
    asked += page.length;
    // Only an empty page ends the series: a PACS may cap a page below the limit asked for
    // (the reconciler pages the same way).
    if (page.length === 0) break;
  }
  const seen = new Set();
  const unique = all.filter((d) => {
    const sop = tagValue(d, '00080018');
    if (seen.has(sop)) return false;
    seen.add(sop);
    return true;
  });
  return { instances: unique.slice(0, max), complete: asked <= max };
}

export function thumbnailPath(root, study, series, sop, frame) {
  const inst = `${root}/studies/${enc(study)}/series/${enc(series)}/instances/${enc(sop)}`;
  // The embedded frame of a multi-frame instance (the PACS would render its first one).
  return Number.isInteger(frame) && frame > 1 ? `${inst}/frames/${frame}/thumbnail` : `${inst}/thumbnail`;
}

// Thumbnails are fetched (not <img src>) so they carry the Authorization; a few at a time.
// Two queues: what the user is looking at (query, results, a result's series: 'high') goes
// before the picker's images ('low'), so a long series in the picker does not hold up the
// result thumbnails and the heatmap that waits for them.
const MAX_PARALLEL = 4;
let running = 0;
const queues = { high: [], low: [] };

function noLongerShown() {
  const err = new Error('thumbnail no longer shown');
  err.name = 'AbortError';
  return err;
}

function start(job) {
  running++;
  job
    .fn()
    .then(job.resolve, job.reject)
    .finally(() => {
      running--;
      next();
    });
}

/**
 * Starts the waiting jobs the free slots allow, high priority first. One that is no longer
 * wanted (its picture left the page: the user opened another series) is dropped instead,
 * so a long series clicked past does not hold up the thumbnails on screen now.
 */
function next() {
  while (running < MAX_PARALLEL) {
    const job = queues.high.shift() ?? queues.low.shift();
    if (!job) return;
    if (job.wanted && !job.wanted()) job.reject(noLongerShown());
    else start(job);
  }
}

function slot(fn, wanted, priority) {
  return new Promise((resolve, reject) => {
    const job = { fn, wanted, resolve, reject };
    // Started at once when a slot is free: its picture may not be on the page yet.
    if (running < MAX_PARALLEL && !queues.high.length && !queues.low.length) start(job);
    else queues[priority === 'low' ? 'low' : 'high'].push(job);
  });
}

/**
 * A blob: URL of the rendered thumbnail (the caller revokes it). `wanted()`, asked when its
 * turn comes after a wait, lets a thumbnail that left the page be skipped (an AbortError).
 * `priority: 'low'` (the picker) waits behind every 'high' one (the default).
 */
export function thumbnailUrl(path, { wanted, priority = 'high' } = {}) {
  return slot(
    () => request(path, { headers: headers({ accept: 'image/jpeg, image/png' }) }, async (res) => URL.createObjectURL(await res.blob())),
    wanted,
    priority,
  );
}

// --- /similar --------------------------------------------------------------------
/** The most results the page asks for, whatever the gateway would allow. */
export const PAGE_MAX_LIMIT = 50;

/**
 * The largest `limit` the page may send: its own PAGE_MAX_LIMIT, or the gateway's
 * CBMIR_SIMILAR_MAX_LIMIT (config.json `maxLimit`) where that is lower; a gateway that does
 * not say leaves the page's own.
 */
export function limitBound(maxLimit) {
  const n = Number(maxLimit);
  return Number.isInteger(n) && n >= 1 ? Math.min(PAGE_MAX_LIMIT, n) : PAGE_MAX_LIMIT;
}

/** The `limit` sent for what the Results field holds: a whole number from 1 to `max`, 10 when it holds none. */
export function clampLimit(value, max = PAGE_MAX_LIMIT) {
  return Math.min(max, Math.max(1, Math.round(Number(value) || 10)));
}

function similarOptions(opts) {
  const q = new URLSearchParams({ limit: String(opts.limit), excludeSamePatient: String(opts.excludeSamePatient) });
  return q;
}

/** `opts`: `limit`, `excludeSamePatient`, and the request's `signal`. */
export function similarByUids(uids, opts) {
  const q = similarOptions(opts);
  q.set('StudyInstanceUID', uids.study);
  q.set('SeriesInstanceUID', uids.series);
  q.set('SOPInstanceUID', uids.sop);
  return getJson(`../similar?${q}`, { signal: opts.signal });
}

/** POST of a DICOM file for a JSON answer (a search or a heatmap by upload). */
function postDicom(url, file, signal) {
  return request(
    url,
    { method: 'POST', headers: headers({ 'content-type': 'application/dicom', accept: 'application/json' }), body: file, signal },
    (res) => res.json(),
  );
}

export function similarByUpload(file, opts) {
  return postDicom(`../similar?${similarOptions(opts)}`, file, opts.signal);
}

/** Heatmap of a query (UIDs, or the dropped file) and a result (UIDs). */
export function heatmap(query, result, { signal } = {}) {
  const q = new URLSearchParams({
    ResultStudyInstanceUID: result.study,
    ResultSeriesInstanceUID: result.series,
    ResultSOPInstanceUID: result.sop,
  });
  if (query.file) return postDicom(`../similar/heatmap?${q}`, query.file, signal);
  q.set('StudyInstanceUID', query.study);
  q.set('SeriesInstanceUID', query.series);
  q.set('SOPInstanceUID', query.sop);
  return getJson(`../similar/heatmap?${q}`, { signal });
}

export function pageConfig() {
  return getJson('config.json');
}

/** A viewer URL from a template with {study} {series} {instance}. */
export function viewerUrl(template, uids) {
  return template
    .replaceAll('{study}', enc(uids.study))
    .replaceAll('{series}', enc(uids.series))
    .replaceAll('{instance}', enc(uids.sop));
}
