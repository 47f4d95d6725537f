// The retrieval page: pick a query (archive: study → series → image, or a dropped
// DICOM file), show the ranked results, expand a result's series, open it in a
// viewer, and overlay the similarity heatmap of a query/result pair.
// No framework: DOM built with el(), text always through textContent.
import * as api from './api.js';
import { clearOverlay, drawOverlay, scaleOf } from './heatmap.js';
import { previewDicom } from './dicom-preview.js';
import { stripWindow, studyMatch } from './browse.js';

const $ = (id) => document.getElementById(id);
const MAX_STUDIES = 200;
const MAX_INSTANCES = 5000;
const MAX_STRIP = 200;

const state = {
  config: { dicomWebRoot: '../dicom-web', viewerUrlTemplate: null, viewerSimilarUrlTemplate: null, blueLightUrlTemplate: null, maxUploadBytes: 64 << 20, maxLimit: null },
  /** The largest number of results the page asks for (api.limitBound of config.maxLimit). */
  maxLimit: api.PAGE_MAX_LIMIT,
  /** {study, series, sop} from the archive, or {file, name, previewUrl} for a dropped file. */
  query: null,
  queryFigure: null,
  /** blob: URLs of the current view, revoked when it is replaced. */
  urls: new Set(),
  /** {button, figure, controller} of the heatmap shown or being computed. */
  activeHeatmap: null,
  /**
   * The view's requests (the search, its series strips): aborted when a new search or token
   * replaces it, so a superseded upload (up to 64 MiB) stops holding one of this caller's
   * upload slots, which the next search would find full (503).
   */
  view: new AbortController(),
  /** The Authorization field's value the page's requests go with, and the one the lists were asked with. */
  token: '',
  listedWith: '',
  /** Why the entered token cannot be sent (api.authorizationOf), while it cannot. */
  tokenError: null,
};

/** A superseded request's end: cancelled (AbortError), nothing to tell anyone. */
const aborted = (err) => err?.name === 'AbortError';

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

function showError(msg) {
  $('error').textContent = msg;
  $('error').hidden = false;
}
function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}
function status(msg) {
  $('status').textContent = msg;
}

// The picker's thumbnails are fetched only once they scroll into (or near) its box: a series
// of thousands of images would otherwise queue thousands of fetches nobody looks at.
const picker = typeof IntersectionObserver === 'function' ? new IntersectionObserver(pickerSeen, { root: $('instances'), rootMargin: '160px' }) : null;
/** figure → (shown: boolean) => void, for the picker's figures the observer watches. */
const lazyFigures = new WeakMap();

function pickerSeen(entries) {
  for (const e of entries) lazyFigures.get(e.target)?.(e.isIntersecting);
}

/**
 * A thumbnail figure: <img> (fetched with credentials) and the heatmap canvas over it.
 * `lazy`: a picker thumbnail, fetched at low priority once it is in view.
 */
function thumbFigure(path, alt, caption, { lazy = false } = {}) {
  const img = el('img', { alt, width: 160, height: 160 });
  const canvas = el('canvas', { class: 'overlay', 'aria-hidden': 'true', hidden: true });
  const fig = el('figure', { class: 'thumb' }, el('div', { class: 'frame' }, img, canvas), caption ? el('figcaption', { text: caption }) : null);
  if (!path) return { fig, img, canvas };
  const observed = lazy && picker;
  let inView = !observed;
  let loading = false;
  const load = () => {
    loading = true;
    api.thumbnailUrl(path, { wanted: () => fig.isConnected && inView, priority: lazy ? 'low' : 'high' }).then(
      (u) => {
        if (observed) picker.unobserve(fig);
        state.urls.add(u);
        img.src = u;
      },
      (err) => {
        // Scrolled past before its turn: fetched when it comes into view again.
        if (observed && err.name === 'AbortError' && fig.isConnected) {
          loading = false;
          if (inView) load();
          return;
        }
        if (observed) picker.unobserve(fig);
        fig.classList.add('broken');
        img.dispatchEvent(new Event('error')); // whoever waits for this image (loaded()) stops waiting
      },
    );
  };
  if (observed) {
    lazyFigures.set(fig, (shown) => {
      inView = shown;
      if (shown && !loading) load();
    });
    picker.observe(fig);
  } else {
    load();
  }
  return { fig, img, canvas };
}

function revokeAll() {
  for (const u of state.urls) URL.revokeObjectURL(u);
  state.urls.clear();
}

// --- archive browser -------------------------------------------------------------
// Clicks can outrun the PACS: only the answer to the latest click may fill a list, or one
// study's series would be listed under another (patient's) highlighted study. Each list's
// listing has its AbortController: a new click aborts the one before, and a new token or
// filter aborts them all, so nothing asked before it fills the page or reports an error.
const listing = { studies: new AbortController(), series: new AbortController(), instances: new AbortController() };

/** A fresh controller for the list `kind`, the listing under way there cancelled. */
function relist(kind) {
  listing[kind].abort();
  listing[kind] = new AbortController();
  return listing[kind].signal;
}

function selectOne(list, button) {
  for (const b of list.querySelectorAll('button[aria-pressed]')) b.setAttribute('aria-pressed', String(b === button));
}

function note(id, text) {
  $(id).textContent = text;
  $(id).hidden = !text;
}

/** A list shows it is waiting for the archive (a slow PACS would leave it looking empty). */
function loading(ul, text = 'Loading…') {
  ul.replaceChildren(el('li', { class: 'hint loading', text }));
}

/** The image picker emptied, and any listing still on its way to it cancelled; the signal of the next one. */
function resetInstances() {
  picker?.disconnect(); // the figures of the list removed
  $('instances').replaceChildren();
  note('instances-note', '');
  return relist('instances');
}

/** Every list emptied, and every listing still on its way cancelled. */
function forgetLists() {
  relist('studies');
  relist('series');
  resetInstances();
  $('studies').replaceChildren();
  $('series').replaceChildren();
  note('studies-note', '');
}

async function loadStudies() {
  forgetLists();
  if (state.tokenError) {
    // Nothing listed under no credentials (or the gateway's own) that the person did not ask for.
    showError(state.tokenError);
    return;
  }
  const signal = listing.studies.signal;
  state.listedWith = state.token;
  const ul = $('studies');
  let match;
  try {
    match = studyMatch($('filter-field').value, $('filter-text').value);
  } catch (err) {
    showError(err.message);
    return;
  }
  loading(ul);
  try {
    const { studies, more } = await api.listStudies(state.config.dicomWebRoot, match, MAX_STUDIES, { signal });
    if (signal.aborted) return;
    ul.replaceChildren();
    for (const s of studies) {
      const uid = api.tagValue(s, '0020000D');
      const name = api.tagValue(s, '00100010') ?? '';
      const date = api.tagValue(s, '00080020') ?? '';
      const desc = api.tagValue(s, '00081030') ?? '';
      const mods = (s['00080061']?.Value ?? []).join('/');
      const n = api.tagValue(s, '00201208');
      const label = [name || '(no name)', date && `${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6, 8)}`, desc, mods, n !== undefined && `${n} images`]
        .filter(Boolean)
        .join(' · ');
      const b = el('button', { type: 'button', 'aria-pressed': 'false', 'data-study': uid, text: label });
      b.addEventListener('click', () => {
        selectOne(ul, b);
        loadSeries(uid);
      });
      ul.append(el('li', {}, b));
    }
    if (!studies.length) ul.append(el('li', { class: 'hint', text: match.length ? 'No study matches the filter.' : 'The archive holds no studies.' }));
    if (more) note('studies-note', `Showing the first ${studies.length} studies the archive listed; refine the filter to find the others.`);
  } catch (err) {
    if (signal.aborted || aborted(err)) return;
    ul.replaceChildren();
    showError(`Cannot list the archive: ${err.message}`);
  }
}

async function loadSeries(study) {
  const signal = relist('series');
  // An error about an earlier click (another study, a failed search) no longer applies.
  clearError();
  resetInstances();
  const ul = $('series');
  loading(ul);
  try {
    const series = await api.listSeries(state.config.dicomWebRoot, study, { signal });
    if (signal.aborted) return;
    ul.replaceChildren();
    let only;
    for (const s of series) {
      const uid = api.tagValue(s, '0020000E');
      const label = [api.tagValue(s, '00080060'), api.tagValue(s, '00200011') !== undefined && `#${api.tagValue(s, '00200011')}`, api.tagValue(s, '0008103E'), api.tagValue(s, '00201209') !== undefined && `${api.tagValue(s, '00201209')} images`]
        .filter(Boolean)
        .join(' · ');
      const b = el('button', { type: 'button', 'aria-pressed': 'false', 'data-series': uid, text: label || uid });
      b.addEventListener('click', () => {
        selectOne(ul, b);
        loadInstances(study, uid);
      });
      ul.append(el('li', {}, b));
      only = b;
    }
    if (series.length === 1) only?.click();
  } catch (err) {
    if (signal.aborted || aborted(err)) return;
    ul.replaceChildren();
    showError(`Cannot list the study's series: ${err.message}`);
  }
}

/** The series' instances by InstanceNumber; `complete` is false when it holds more than MAX_INSTANCES. */
async function seriesInstances(study, series, signal) {
  const { instances, complete } = await api.listInstances(state.config.dicomWebRoot, study, series, { max: MAX_INSTANCES, signal });
  const list = instances
    .map((d) => ({ sop: api.tagValue(d, '00080018'), number: Number(api.tagValue(d, '00200013') ?? NaN) }))
    .sort((a, b) => (a.number || 0) - (b.number || 0));
  return { list, complete };
}

async function loadInstances(study, series) {
  const signal = resetInstances();
  clearError();
  const ul = $('instances');
  loading(ul);
  try {
    const { list, complete } = await seriesInstances(study, series, signal);
    if (signal.aborted) return;
    ul.replaceChildren();
    for (const i of list) {
      const name = Number.isFinite(i.number) ? `Image ${i.number}` : 'Image';
      const { fig } = thumbFigure(api.thumbnailPath(state.config.dicomWebRoot, study, series, i.sop), name, name, { lazy: true });
      const b = el('button', { type: 'button', class: 'pick-instance', 'data-sop': i.sop, 'aria-label': `Search with ${name}` }, fig);
      b.addEventListener('click', () => search({ study, series, sop: i.sop }));
      ul.append(el('li', {}, b));
    }
    if (!complete) note('instances-note', `The series holds more than ${MAX_INSTANCES} images: showing the first ${list.length} the archive listed; open it in a viewer for the rest.`);
  } catch (err) {
    if (signal.aborted || aborted(err)) return;
    ul.replaceChildren();
    showError(`Cannot list the series' images: ${err.message}`);
  }
}

// --- search --------------------------------------------------------------------------
function options(signal) {
  return { limit: api.clampLimit($('limit').value, state.maxLimit), excludeSamePatient: $('exclude-patient').checked, signal };
}

/** The view's requests cancelled (a search, its strips); the signal of the next view's. */
function newView() {
  state.view.abort();
  state.view = new AbortController();
  return state.view.signal;
}

async function search(query) {
  clearHeatmap();
  const signal = newView();
  clearError();
  revokeAll();
  state.query = query;
  state.queryFigure = null;
  $('results').replaceChildren();
  $('legend').hidden = true;
  $('empty').hidden = true;
  if (state.tokenError) {
    // No search under no credentials (or the gateway's own) that the person did not ask for.
    $('query').hidden = true;
    $('empty').hidden = false;
    status('');
    showError(state.tokenError);
    return;
  }
  renderQuery(query, undefined);
  status('Searching…');
  try {
    const answer = query.file ? await api.similarByUpload(query.file, options(signal)) : await api.similarByUids(query, options(signal));
    if (signal.aborted) return;
    renderQuery(query, answer.query);
    renderResults(answer.results);
    status(`${answer.results.length} similar image${answer.results.length === 1 ? '' : 's'}.`);
  } catch (err) {
    if (signal.aborted || aborted(err)) return;
    status('');
    $('query').hidden = true;
    $('empty').hidden = false;
    showError(query.file ? `${query.name}: ${err.message}` : err.message);
  }
}

function renderQuery(query, info) {
  const box = $('query');
  let figure;
  if (query.file) {
    figure = thumbFigure(null, `Dropped file ${query.name}`, null);
    if (query.previewUrl) figure.img.src = query.previewUrl;
    else figure.fig.classList.add('no-preview');
  } else {
    figure = thumbFigure(api.thumbnailPath(state.config.dicomWebRoot, query.study, query.series, query.sop, info?.frame), 'Query image', null);
  }
  state.queryFigure = figure;
  const facts = [query.file ? `Dropped file: ${query.name}` : 'From the archive', info?.label && `label: ${info.label}`, info?.modality].filter(Boolean).join(' · ');
  // An archived query image's similar studies, as the worklist of the viewer (its virtual root).
  const similarInViewer =
    !query.file && state.config.viewerSimilarUrlTemplate
      ? el('a', {
          class: 'viewer-link similar-in-viewer',
          href: api.viewerUrl(state.config.viewerSimilarUrlTemplate, { study: query.study, series: query.series, sop: query.sop }),
          target: '_blank',
          rel: 'noopener noreferrer',
          text: 'Similar studies in the viewer',
        })
      : null;
  box.replaceChildren(
    ...[el('h3', { text: 'Query' }), figure.fig, el('p', { class: 'facts', text: facts }), similarInViewer, el('p', { id: 'query-heatmap', class: 'hint' })].filter(Boolean),
  );
  box.hidden = false;
}

function renderResults(results) {
  const ol = $('results');
  ol.replaceChildren();
  if (!results.length) ol.append(el('li', { class: 'hint', text: 'No similar images found (the index may still be filling).' }));
  for (const h of results) ol.append(resultCard(h));
}

function resultCard(h) {
  const uids = { study: h.studyInstanceUid, series: h.seriesInstanceUid, sop: h.sopInstanceUid };
  const figure = thumbFigure(api.thumbnailPath(state.config.dicomWebRoot, uids.study, uids.series, uids.sop, h.frame), `Result ${h.rank}`, null);
  const heatBtn = el('button', { type: 'button', class: 'heatmap-toggle', 'aria-pressed': 'false', text: 'Heatmap' });
  const seriesBtn = el('button', { type: 'button', class: 'series-toggle', 'aria-expanded': 'false', text: 'Whole series' });
  const strip = el('ul', { class: 'strip', hidden: true, 'aria-label': `Series of result ${h.rank}` });
  const links = [];
  if (state.config.viewerUrlTemplate) {
    links.push(el('a', { class: 'viewer-link', href: api.viewerUrl(state.config.viewerUrlTemplate, uids), target: '_blank', rel: 'noopener noreferrer', text: 'Open in viewer' }));
  }
  if (state.config.blueLightUrlTemplate) {
    links.push(el('a', { class: 'viewer-link', href: api.viewerUrl(state.config.blueLightUrlTemplate, uids), target: '_blank', rel: 'noopener noreferrer', text: 'BlueLight' }));
  }
  const li = el(
    'li',
    { class: 'card', 'data-sop': uids.sop },
    figure.fig,
    el(
      'p',
      { class: 'meta' },
      el('span', { class: 'rank', text: `#${h.rank}` }),
      el('span', { class: 'score', title: `distance ${h.distance.toFixed(4)}`, text: `score ${h.score.toFixed(3)}` }),
      el('span', { class: 'label', text: h.label ?? 'no label' }),
    ),
    el('div', { class: 'actions' }, heatBtn, seriesBtn, ...links),
    strip,
  );
  heatBtn.addEventListener('click', () => {
    // Computing: aria-disabled, not disabled, so keyboard focus stays on the button.
    if (heatBtn.getAttribute('aria-disabled') !== 'true') toggleHeatmap(li, heatBtn, figure, uids, h.rank);
  });
  seriesBtn.addEventListener('click', () => toggleSeries(li, seriesBtn, strip, uids));
  return li;
}

// --- whole series ------------------------------------------------------------------
async function toggleSeries(li, button, strip, uids) {
  if (button.getAttribute('aria-expanded') === 'true') {
    button.setAttribute('aria-expanded', 'false');
    strip.hidden = true;
    li.classList.remove('expanded');
    return;
  }
  clearError();
  button.setAttribute('aria-expanded', 'true');
  li.classList.add('expanded');
  strip.hidden = false;
  if (strip.childElementCount) return;
  strip.append(el('li', { class: 'hint', text: 'Loading the series…' }));
  const signal = state.view.signal;
  try {
    const { list: all, complete } = await seriesInstances(uids.study, uids.series, signal);
    if (signal.aborted || !li.isConnected) return; // its results were replaced (a new search or token) meanwhile
    strip.replaceChildren();
    const matched = all.findIndex((i) => i.sop === uids.sop);
    const w = stripWindow(all.length, matched, MAX_STRIP);
    if (w.before) strip.append(el('li', { class: 'hint', text: `… ${w.before} before` }));
    let current = null;
    for (const i of all.slice(w.start, w.end)) {
      const name = Number.isFinite(i.number) ? `Image ${i.number}` : 'Image';
      const { fig } = thumbFigure(api.thumbnailPath(state.config.dicomWebRoot, uids.study, uids.series, i.sop), name, name);
      const item = el('li', { class: i.sop === uids.sop ? 'matched' : '', 'data-sop': i.sop, 'aria-current': i.sop === uids.sop ? 'true' : false }, fig);
      if (i.sop === uids.sop) current = item;
      strip.append(item);
    }
    if (w.after || !complete) strip.append(el('li', { class: 'hint', text: `… ${w.after}${complete ? '' : '+'} after: open the series in the viewer.` }));
    if (matched < 0 && !complete) strip.append(el('li', { class: 'hint', text: `This image is not among the first ${all.length} the archive listed.` }));
    // The window puts the match in its middle, far off the strip's left edge: scroll it into view.
    if (current) strip.scrollLeft += current.getBoundingClientRect().left - strip.getBoundingClientRect().left - (strip.clientWidth - current.offsetWidth) / 2;
  } catch (err) {
    if (signal.aborted || aborted(err) || !li.isConnected) return;
    strip.replaceChildren(el('li', { class: 'hint', text: `Cannot list the series: ${err.message}` }));
  }
}

// --- heatmaps ------------------------------------------------------------------------
/** Resolves true once the image shows, false when it never will (its thumbnail failed). */
function loaded(img) {
  if (img.complete && img.naturalWidth) return Promise.resolve(true);
  if (img.closest('figure')?.classList.contains('broken')) return Promise.resolve(false);
  return new Promise((r) => {
    img.addEventListener('load', () => r(true), { once: true });
    img.addEventListener('error', () => r(false), { once: true });
  });
}

/** The heatmap shown goes, and one still being computed is cancelled. */
function clearHeatmap() {
  const a = state.activeHeatmap;
  if (!a) return;
  a.controller.abort();
  a.button.setAttribute('aria-pressed', 'false');
  clearOverlay(a.figure.canvas);
  if (state.queryFigure) clearOverlay(state.queryFigure.canvas);
  $('legend').hidden = true;
  const note = $('query-heatmap');
  if (note) note.textContent = '';
  state.activeHeatmap = null;
}

async function toggleHeatmap(li, button, figure, uids, rank) {
  const wasActive = state.activeHeatmap?.button === button;
  clearHeatmap();
  if (wasActive) return;
  const controller = new AbortController();
  state.activeHeatmap = { button, figure, controller };
  button.setAttribute('aria-pressed', 'true');
  // Not `disabled`: that would drop the keyboard focus on the page's body (the click handler
  // ignores a button marked aria-disabled).
  button.setAttribute('aria-disabled', 'true');
  status(`Computing the heatmap for result #${rank}…`);
  try {
    const r = await api.heatmap(state.query, uids, { signal: controller.signal });
    if (state.activeHeatmap?.button !== button) return;
    const scale = scaleOf(r.query.grid, r.result.grid);
    const [resultShown, queryShown] = await Promise.all([
      loaded(figure.img),
      state.queryFigure.img.src || !state.queryFigure.fig.classList.contains('no-preview') ? loaded(state.queryFigure.img) : Promise.resolve(false),
    ]);
    if (state.activeHeatmap?.button !== button) return;
    // An image that could not be shown gets no overlay (there is nothing to lay it on).
    if (resultShown) drawOverlay(figure.canvas, figure.img, r.result.grid, scale);
    if (queryShown) drawOverlay(state.queryFigure.canvas, state.queryFigure.img, r.query.grid, scale);
    $('legend').hidden = false;
    // score = (1 + cosine) / 2, the number on the cards; the maps add up to changes of the cosine.
    $('legend-scale').textContent =
      scale > 1e-7
        ? `(full colour: a location adds or removes ${scale.toPrecision(2)} of the cosine similarity ${r.similarity.toFixed(3)})`
        : '(identical to the model: no location changes the similarity)';
    $('query-heatmap').textContent = `Heatmap with result #${rank}`;
    status(`Heatmap for result #${rank}: score ${r.score.toFixed(3)} (cosine ${r.similarity.toFixed(3)}).`);
  } catch (err) {
    // Superseded (another heatmap, a new search or token): the screen belongs to that one now.
    if (controller.signal.aborted || aborted(err) || state.activeHeatmap?.button !== button) return;
    clearHeatmap();
    status('');
    showError(`Heatmap: ${err.message}`);
  } finally {
    button.removeAttribute('aria-disabled');
  }
}

/**
 * What was shown or is under way with the previous credentials goes: the query, its results
 * and heatmap, and a search still running (cancelled, as a superseded one is).
 */
function forgetView() {
  newView();
  clearHeatmap();
  revokeAll();
  state.query = null;
  state.queryFigure = null;
  $('query').replaceChildren();
  $('query').hidden = true;
  $('results').replaceChildren();
  $('legend').hidden = true;
  $('empty').hidden = false;
  status('');
  clearError();
}

// --- dropped files -------------------------------------------------------------------
async function searchFile(file) {
  clearError();
  if (file.size > state.config.maxUploadBytes) {
    showError(`The file is too large (${Math.round(file.size / 1e6)} MB; at most ${Math.round(state.config.maxUploadBytes / 1e6)} MB).`);
    return;
  }
  // A view of its own from the start: a click on an archived image, or another drop, while a
  // large file is read is the later action and wins (each replaces state.view).
  newView();
  const view = state.view;
  let buf;
  try {
    buf = await file.arrayBuffer();
    if (state.view !== view) return;
  } catch {
    if (state.view !== view) return;
    // A folder (a browser hands it over as an empty File that cannot be read), or a file
    // that went away or may not be read.
    showError(unreadable(file.name));
    return;
  }
  let previewUrl = null;
  try {
    const img = previewDicom(buf);
    if (img) {
      const c = el('canvas', { width: img.width, height: img.height });
      c.getContext('2d').putImageData(img, 0, 0);
      previewUrl = c.toDataURL('image/png');
    }
  } catch {
    previewUrl = null; // the preview is a courtesy; the search decides what the file is
  }
  await search({ file: new Blob([buf], { type: 'application/dicom' }), name: file.name, previewUrl });
}

const unreadable = (name) => `${name || 'The dropped item'} cannot be read: drop a single DICOM file (not a folder).`;

/** searchFile, with anything it did not foresee said on the page rather than lost in the console. */
function searchDropped(file) {
  searchFile(file).catch((err) => {
    if (!aborted(err)) showError(`${file.name}: ${err?.message || unreadable(file.name)}`);
  });
}

function bindDrop() {
  const drop = $('drop');
  const input = $('file');
  input.addEventListener('change', () => {
    const f = input.files?.[0];
    if (f) searchDropped(f);
    input.value = '';
  });
  for (const ev of ['dragenter', 'dragover']) {
    drop.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.add('over');
    });
  }
  for (const ev of ['dragleave', 'drop']) drop.addEventListener(ev, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    const f = e.dataTransfer?.files?.[0];
    // A folder is told as one at once (where the browser says so); else its read fails in searchFile.
    const entry = e.dataTransfer?.items?.[0]?.webkitGetAsEntry?.();
    if (f && entry?.isDirectory) showError(unreadable(f.name));
    else if (f) searchDropped(f);
  });
  // A file dropped beside the drop zone would make the browser open it in place of the page,
  // losing the query, the results and the token: there it is refused (no-drop cursor). Only
  // file drags: text may still be dropped into the fields.
  for (const ev of ['dragover', 'drop']) {
    document.addEventListener(ev, (e) => {
      if (drop.contains(e.target) || !e.dataTransfer?.types?.includes('Files')) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'none';
    });
  }
}

/**
 * The Results field bounded by what the gateway accepts (config.json `maxLimit`, its
 * CBMIR_SIMILAR_MAX_LIMIT): above it every search would be refused (400).
 */
function applyMaxLimit() {
  state.maxLimit = api.limitBound(state.config.maxLimit);
  const field = $('limit');
  field.max = String(state.maxLimit);
  if (Number(field.value) > state.maxLimit) field.value = String(state.maxLimit);
}

/**
 * A changed Authorization field: what was shown or is under way with the previous
 * credentials goes (view and lists), and every later request carries the new one. One that
 * cannot be sent leaves none, says why, and nothing is listed or searched until it is fixed.
 */
function applyToken() {
  const value = $('token').value;
  if (value === state.token) return;
  state.token = value;
  forgetView();
  forgetLists();
  state.listedWith = null;
  try {
    api.setToken(value);
    state.tokenError = null;
  } catch (err) {
    state.tokenError = err.message;
    showError(err.message);
    return;
  }
  $('studies').replaceChildren(el('li', { class: 'hint pending', text: 'Leave the Authorization field (Tab) or press Enter to list the archive again.' }));
}

async function init() {
  try {
    state.config = { ...state.config, ...(await api.pageConfig()) };
  } catch (err) {
    showError(`Cannot read the page's configuration: ${err.message}`);
  }
  applyMaxLimit();
  // Applied as it is typed or pasted (a file dropped right after a paste goes with it); the
  // archive is listed again once the field is left or Enter pressed (change), not on every
  // keystroke: a PACS may lock an account after a few refused passwords.
  $('token').addEventListener('input', applyToken);
  $('token').addEventListener('change', () => {
    applyToken();
    if (state.tokenError) showError(state.tokenError);
    else if (state.listedWith !== state.token) loadStudies();
  });
  $('study-filter').addEventListener('submit', (e) => {
    e.preventDefault(); // the CSP allows no form submission: the page asks the PACS itself
    clearError();
    loadStudies();
  });
  const text = $('filter-text');
  const textHint = [text.placeholder, text.title];
  $('filter-field').addEventListener('change', () => {
    const date = $('filter-field').value === 'StudyDate';
    [text.placeholder, text.title] = date ? ['2025-01 .. 2025-03', 'A day (2025-01-31), a month, a year, or a range of them: 2025-01 .. 2025-03'] : textHint;
  });
  bindDrop();
  await loadStudies();
  document.body.dataset.ready = 'true';
}

init();
