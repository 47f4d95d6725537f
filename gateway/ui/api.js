// The gateway as the page sees it: QIDO and thumbnails through /dicom-web, /similar,
// /similar/heatmap. Every request carries the user's Authorization when one is entered
// (kept in memory only); problems become Errors with a message a person can act on.

let authorization = '';

/** A bare token becomes a Bearer credential; "Basic …" / "Bearer …" are sent as typed. */
export function setToken(raw) {
  const t = (raw ?? '').trim();
  authorization = !t ? '' : /^[A-Za-z]+ \S/.test(t) ? t : `Bearer ${t}`;
}

function headers(extra = {}) {
  return authorization ? { ...extra, authorization } : extra;
}

/** What a problem body (RFC 9457) says, minus the worker's internal step codes. */
export function problemMessage(status, body) {
  let detail = body && typeof body === 'object' ? (body.detail || body.title || '') : '';
  detail = String(detail).replace(/^(?:[a-z]+(?: \([A-Za-z-]+\))?: )?[A-Z][A-Z_]+: /, '');
  if (status === 401) return `The archive asks for credentials: enter an Authorization token above. ${detail}`.trim();
  if (status === 403) return `These credentials may not read this. ${detail}`.trim();
  if (status === 422) return `This image cannot be searched — ${detail || 'not an image'}`;
  if (status === 503) return `The search service is busy or starting (${detail || 'try again'}).`;
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
  const err = new Error(problemMessage(res.status, body));
  err.status = res.status;
  throw err;
}

async function getJson(url, accept = 'application/json') {
  const res = await fetch(url, { headers: headers({ accept }) });
  await check(res);
  if (res.status === 204) return [];
  return res.json();
}

// --- DICOM JSON (PS3.18 F.2) ---------------------------------------------------
export function tagValue(ds, tag) {
  const v = ds?.[tag]?.Value?.[0];
  if (v && typeof v === 'object' && 'Alphabetic' in v) return v.Alphabetic;
  return v;
}

const enc = encodeURIComponent;
const qido = (root, path, params) => {
  const q = new URLSearchParams(params);
  return getJson(`${root}${path}?${q}`, 'application/dicom+json');
};

export function listStudies(root) {
  return qido(root, '/studies', [['limit', '200'], ['includefield', '00081030'], ['includefield', '00080061'], ['includefield', '00201208']]);
}
export function listSeries(root, study) {
  return qido(root, `/studies/${enc(study)}/series`, [['includefield', '0008103E'], ['includefield', '00201209']]);
}
export function listInstances(root, study, series) {
  return qido(root, `/studies/${enc(study)}/series/${enc(series)}/instances`, [['limit', '1000'], ['includefield', '00200013']]);
}

export function thumbnailPath(root, study, series, sop, frame) {
  const inst = `${root}/studies/${enc(study)}/series/${enc(series)}/instances/${enc(sop)}`;
  // The embedded frame of a multi-frame instance (the PACS would render its first one).
  return Number.isInteger(frame) && frame > 1 ? `${inst}/frames/${frame}/thumbnail` : `${inst}/thumbnail`;
}

// Thumbnails are fetched (not <img src>) so they carry the Authorization; a few at a time.
const MAX_PARALLEL = 4;
let running = 0;
const waiting = [];
/**
 * Runs fn once fewer than MAX_PARALLEL run. One that had to wait and is no longer wanted
 * (its picture left the page: the user opened another series) is dropped instead, so a
 * long series clicked past does not hold up the thumbnails on screen now.
 */
async function slot(fn, wanted) {
  let waited = false;
  while (running >= MAX_PARALLEL) {
    waited = true;
    await new Promise((r) => waiting.push(r));
  }
  if (waited && wanted && !wanted()) {
    waiting.shift()?.();
    const err = new Error('thumbnail no longer shown');
    err.name = 'AbortError';
    throw err;
  }
  running++;
  try {
    return await fn();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/**
 * A blob: URL of the rendered thumbnail (the caller revokes it). `wanted()`, asked when its
 * turn comes after a wait, lets a thumbnail that left the page be skipped (an AbortError).
 */
export function thumbnailUrl(path, { wanted } = {}) {
  return slot(async () => {
    const res = await fetch(path, { headers: headers({ accept: 'image/jpeg, image/png' }) });
    await check(res);
    return URL.createObjectURL(await res.blob());
  }, wanted);
}

// --- /similar --------------------------------------------------------------------
function similarOptions(opts) {
  const q = new URLSearchParams({ limit: String(opts.limit), excludeSamePatient: String(opts.excludeSamePatient) });
  return q;
}

export function similarByUids(uids, opts) {
  const q = similarOptions(opts);
  q.set('StudyInstanceUID', uids.study);
  q.set('SeriesInstanceUID', uids.series);
  q.set('SOPInstanceUID', uids.sop);
  return getJson(`../similar?${q}`);
}

export async function similarByUpload(file, opts) {
  const res = await fetch(`../similar?${similarOptions(opts)}`, {
    method: 'POST',
    headers: headers({ 'content-type': 'application/dicom', accept: 'application/json' }),
    body: file,
  });
  await check(res);
  return res.json();
}

/** Heatmap of a query (UIDs, or the dropped file) and a result (UIDs). */
export async function heatmap(query, result) {
  const q = new URLSearchParams({
    ResultStudyInstanceUID: result.study,
    ResultSeriesInstanceUID: result.series,
    ResultSOPInstanceUID: result.sop,
  });
  if (query.file) {
    const res = await fetch(`../similar/heatmap?${q}`, {
      method: 'POST',
      headers: headers({ 'content-type': 'application/dicom', accept: 'application/json' }),
      body: query.file,
    });
    await check(res);
    return res.json();
  }
  q.set('StudyInstanceUID', query.study);
  q.set('SeriesInstanceUID', query.series);
  q.set('SOPInstanceUID', query.sop);
  return getJson(`../similar/heatmap?${q}`);
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
