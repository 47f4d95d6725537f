// A preview of a dropped DICOM file, drawn in the page: the gateway never renders an
// upload (pixel work is the workers', and nothing uploaded is stored). Deliberately
// small: uncompressed little-endian grayscale only (implicit or explicit VR), first
// frame, min–max window. Anything else returns null and the page shows a placeholder.

const IMPLICIT_LE = '1.2.840.10008.1.2';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
const UNDEFINED = 0xffffffff;

/** Parse elements from `pos` to `end`; calls visit(tag, vr, offset, length). Returns the end offset. */
function walk(view, pos, end, explicit, visit, depth = 0) {
  while (pos + 8 <= end) {
    const group = view.getUint16(pos, true);
    const elem = view.getUint16(pos + 2, true);
    const tag = (group << 16) | elem;
    if (group === 0xfffe) {
      // Item / delimiters: no VR
      const len = view.getUint32(pos + 4, true);
      pos += 8;
      if (elem === 0xe0dd || elem === 0xe00d) return pos; // sequence / item delimitation
      if (elem === 0xe000) pos = len === UNDEFINED ? walk(view, pos, end, explicit, () => {}, depth + 1) : pos + len;
      continue;
    }
    let vr = '';
    let len;
    if (explicit) {
      vr = String.fromCharCode(view.getUint8(pos + 4), view.getUint8(pos + 5));
      if (LONG_VRS.has(vr)) {
        len = view.getUint32(pos + 8, true);
        pos += 12;
      } else {
        len = view.getUint16(pos + 6, true);
        pos += 8;
      }
    } else {
      len = view.getUint32(pos + 4, true);
      pos += 8;
    }
    if (len === UNDEFINED) {
      if (tag === 0x7fe00010) return -1; // encapsulated pixel data: compressed, not ours
      pos = walk(view, pos, end, explicit, () => {}, depth + 1); // sequence of undefined length
      continue;
    }
    if (depth === 0 && visit(tag, vr, pos, len) === false) return pos;
    pos += len;
  }
  return pos;
}

function text(view, off, len) {
  let s = '';
  for (let i = 0; i < len; i++) s += String.fromCharCode(view.getUint8(off + i));
  return s.replace(/[\0 ]+$/, '').trim();
}

/**
 * The longest side of a preview. It is shown as a thumbnail: a full-resolution one (a 4000 ×
 * 5000 16-bit radiograph is 20 M pixels) would hold the page's only thread for seconds.
 */
export const PREVIEW_MAX_SIDE = 512;

/** ImageData of the first frame, at most PREVIEW_MAX_SIDE on its long side; null when this preview cannot draw the file. */
export function previewDicom(buffer) {
  const view = new DataView(buffer);
  if (buffer.byteLength < 140 || text(view, 128, 4) !== 'DICM') return null;
  // File meta (group 2) is always explicit VR little endian.
  let ts = '';
  let pos = 132;
  while (pos + 8 <= buffer.byteLength && view.getUint16(pos, true) === 0x0002) {
    const elem = view.getUint16(pos + 2, true);
    const vr = String.fromCharCode(view.getUint8(pos + 4), view.getUint8(pos + 5));
    const long = LONG_VRS.has(vr);
    const len = long ? view.getUint32(pos + 8, true) : view.getUint16(pos + 6, true);
    const at = pos + (long ? 12 : 8);
    if (elem === 0x0010) ts = text(view, at, len);
    pos = at + len;
  }
  if (ts !== IMPLICIT_LE && ts !== EXPLICIT_LE) return null;
  const f = {};
  const us = (o) => view.getUint16(o, true);
  const end = walk(view, pos, buffer.byteLength, ts === EXPLICIT_LE, (tag, vr, off, len) => {
    if (tag === 0x00280010) f.rows = us(off);
    else if (tag === 0x00280011) f.cols = us(off);
    else if (tag === 0x00280100) f.bits = us(off);
    else if (tag === 0x00280103) f.signed = us(off) === 1;
    else if (tag === 0x00280002) f.samples = us(off);
    else if (tag === 0x00280004) f.photometric = text(view, off, len);
    else if (tag === 0x7fe00010) {
      f.pixelOffset = off;
      f.pixelLength = len;
      return false;
    }
    return true;
  });
  if (end < 0 || !f.rows || !f.cols || f.pixelOffset === undefined || (f.samples ?? 1) !== 1) return null;
  if (f.bits !== 8 && f.bits !== 16) return null;
  const bytes = f.bits / 8;
  const n = f.rows * f.cols;
  if (f.pixelLength < n * bytes || f.pixelOffset + n * bytes > buffer.byteLength) return null;
  // Every step-th pixel of every step-th row (nearest neighbour): only the pixels shown are
  // read, so the work is bounded by the preview's size, not the image's. Fine detail may
  // alias; the preview only tells the person which image they dropped.
  const step = Math.ceil(Math.max(f.rows, f.cols) / PREVIEW_MAX_SIDE);
  const width = Math.ceil(f.cols / step);
  const height = Math.ceil(f.rows / step);
  const values = new Float32Array(width * height);
  let lo = Infinity;
  let hi = -Infinity;
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++, i++) {
      const o = f.pixelOffset + ((y * step) * f.cols + x * step) * bytes;
      const v = f.bits === 8 ? view.getUint8(o) : f.signed ? view.getInt16(o, true) : view.getUint16(o, true);
      values[i] = v;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  const invert = f.photometric === 'MONOCHROME1';
  const span = hi > lo ? hi - lo : 1;
  const px = new Uint8ClampedArray(values.length * 4);
  for (let i = 0; i < values.length; i++) {
    let g = ((values[i] - lo) / span) * 255;
    if (invert) g = 255 - g;
    px[i * 4] = px[i * 4 + 1] = px[i * 4 + 2] = g;
    px[i * 4 + 3] = 255;
  }
  return new ImageData(px, width, height);
}
