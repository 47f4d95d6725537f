// What the archive browser asks the PACS and what part of a long list it shows. Pure
// functions (tested in node: test/unit/ui-browse.test.ts); app.js does the DOM.

export const FILTER_FIELDS = ['PatientName', 'PatientID', 'AccessionNumber', 'StudyDate'];

const DATE_HELP = 'Study date: write 2025-01-31, 2025-01 or 2025, or a range such as 2025-01 .. 2025-03';

/**
 * One bound of a date filter as DICOM DA (YYYYMMDD). A year or a month stands for its
 * first day as the start of a range and its last day as the end; null when not a date.
 */
function dateBound(text, end) {
  const m = /^(\d{4})(?:[-./]?(\d{2})(?:[-./]?(\d{2}))?)?$/.exec(text);
  if (!m) return null;
  const y = Number(m[1]);
  const mo = m[2] === undefined ? (end ? 12 : 1) : Number(m[2]);
  const lastDay = new Date(Date.UTC(y, mo, 0)).getUTCDate();
  const d = m[3] === undefined ? (end ? lastDay : 1) : Number(m[3]);
  if (mo < 1 || mo > 12 || d < 1 || d > lastDay) return null;
  return `${m[1]}${String(mo).padStart(2, '0')}${String(d).padStart(2, '0')}`;
}

/** A typed date, day, month, year or range (either end may be left open), as QIDO DA range matching. */
export function studyDateMatch(text) {
  const t = text.trim();
  // DICOM's own form (20250101-20250131, -20250131, 20250101-) first: its "-" is not a date separator.
  const dicom = /^(\d{8})?-(\d{8})?$/.exec(t);
  const range = dicom ?? /^(.*?)\s*(?:\.\.|–|—|\s-\s|\sto\s)\s*(.*)$/.exec(t);
  if (range) {
    const from = range[1] ? dateBound(range[1].trim(), false) : '';
    const to = range[2] ? dateBound(range[2].trim(), true) : '';
    if (from === null || to === null || (!from && !to) || (from && to && from > to)) throw new Error(DATE_HELP);
    return `${from}-${to}`;
  }
  const from = dateBound(t, false);
  const to = dateBound(t, true);
  if (from === null || to === null) throw new Error(DATE_HELP);
  return from === to ? from : `${from}-${to}`;
}

/**
 * A text as a QIDO wildcard match (PS3.4 C.2.2.2.4): found anywhere in the value, and for a
 * name each word in order ("doe jane" finds DOE^JANE). Typed * or ? are taken as they are.
 * "\" separates values in DICOM, so it only matches itself (as "?").
 */
function wildcard(text, words) {
  const t = text.trim().replaceAll('\\', '?');
  if (/[*?]/.test(t)) return t;
  const parts = words ? t.split(/[\s,^]+/).filter(Boolean) : [t];
  return `*${parts.join('*')}*`;
}

/**
 * The study filter as QIDO matching parameters ([key, value] pairs); none for an empty text.
 * Throws an Error a person can act on when a date cannot be read.
 */
export function studyMatch(field, text) {
  if (!FILTER_FIELDS.includes(field)) throw new Error(`Unknown filter field ${field}`);
  if (!(text ?? '').trim()) return [];
  if (field === 'StudyDate') return [['StudyDate', studyDateMatch(text)]];
  return [[field, wildcard(text, field === 'PatientName')]];
}

/**
 * The part of a series shown in a strip of at most `max` images: all of a short series, else
 * a window centred on the matched image (index; -1 when it is not in the list) as far as the
 * ends allow. `before`/`after` count the images left out on either side.
 */
export function stripWindow(total, index, max) {
  if (total <= max) return { start: 0, end: total, before: 0, after: 0 };
  const start = index < 0 ? 0 : Math.min(Math.max(index - Math.floor(max / 2), 0), total - max);
  return { start, end: start + max, before: start, after: total - start - max };
}
