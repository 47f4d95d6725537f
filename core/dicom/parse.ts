/**
 * Part-10 parsing with dcmjs, made safe for untrusted bytes: says why it could not read,
 * and throws only when the machine fails (out of memory: core/dicom/resources.ts). Also accepts a bare dataset without the Part-10 preamble and
 * File Meta (old files such as pydicom's rtstruct.dcm) by reading it as Implicit VR
 * Little Endian, the only encoding such a file may use (PS3.10 §7.1 predecessor rule).
 */
import { inflateRawSync } from 'node:zlib';
import dcmjs, { type DcmDataset, type DicomDict } from 'dcmjs';
import { str } from './dataset-values.js';
import { isResourceError, resourceFailure } from './resources.js';
import { TS } from './transfer-syntaxes.js';

// dcmjs logs malformed VRs ("Invalid vr type xs") to the console; those are the
// file's problems, reported through our return values instead.
dcmjs.log.setLevel('silent');
dcmjs.log.getLogger('validation.dcmjs').setLevel('silent');

/**
 * dcmjs answers a read past the end of its buffer (an element whose declared length
 * exceeds the file: truncation, corruption, or a hostile length such as 0xFFFFFFF0) by
 * allocating the full declared length and zero-filling it: gigabytes and seconds per
 * bad file. Its buffer view's slice() is made to refuse such reads instead, once, at
 * import; a well-formed file never reads past its end, so nothing else changes.
 * (SplitDataView is not exported; its prototype is reached through a stream instance.)
 */
function guardOverlongReads(): void {
  const proto = Object.getPrototypeOf(new dcmjs.data.ReadBufferStream(new ArrayBuffer(8)).view) as {
    slice?: (this: { size: number; byteLength: number }, start?: number, end?: number) => ArrayBuffer;
    __cbmirGuarded?: boolean;
  };
  const original = proto.slice;
  if (typeof original !== 'function' || proto.__cbmirGuarded) return;
  // byteLength: all the bytes the view holds (the whole file when reading; the capacity when writing).
  proto.slice = function guardedSlice(this: { size: number; byteLength: number }, start = 0, end = this.size) {
    if (end > this.byteLength) throw new RangeError(`an element runs past the end of the data (${end} > ${this.byteLength} bytes)`);
    return original.call(this, start, end);
  };
  proto.__cbmirGuarded = true;
}
guardOverlongReads();

/**
 * dcmjs 0.51 reads text through one TextDecoder chosen by Specific Character Set (0008,0005), and
 * throws on a set it cannot map to one: several values (ISO 2022 code extensions, the rule for
 * Japanese, Korean and Chinese text: `ISO 2022 IR 6\ISO 2022 IR 87`, `\ISO 2022 IR 149`) or a
 * misspelled term (`ISO_IR100`, `UTF-8`). That is a problem of the file's text, not of its pixels:
 * such a file is read again with the set replaced by one term dcmjs accepts (its text may then
 * decode imperfectly; the pixels are the same). Every other read error still refuses the file.
 */
const CHARSET_ERROR = /^(Unsupported character set|Using multiple character sets is not supported)/;

function isCharsetError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  // A decoder this Node build lacks (one without full ICU) is the same problem.
  return CHARSET_ERROR.test(err.message) || (err as NodeJS.ErrnoException).code === 'ERR_ENCODING_NOT_SUPPORTED';
}

/** A term as the standard spells it: "ISO_IR100" → "ISO_IR 100", "UTF-8" → "ISO_IR 192". */
function respelled(term: string): string {
  const t = term.trim();
  if (/^UTF-?8$/i.test(t)) return 'ISO_IR 192';
  return t.replace(/^(ISO[ _](?:2022[ _])?IR)[ _]?(\d+)$/i, '$1 $2');
}

/** Whether dcmjs maps the term (normalised as it does: "ISO_IR 100" → "iso-ir-100") to a decoder this Node has. */
function decodable(term: string): boolean {
  const label = dcmjs.constants.encodingMapping[term.replace(/[_ ]/g, '-').toLowerCase()];
  if (label === undefined) return false;
  try {
    new TextDecoder(label);
    return true;
  } catch {
    return false;
  }
}

/**
 * The one term to read the text with: the last that dcmjs decodes (with code extensions, the
 * extension's decoder, e.g. iso-2022-jp or euc-kr, reads the default set's ASCII too), else the
 * default repertoire ("").
 */
function tolerableCharset(values: unknown[]): string {
  const terms = values.filter((v): v is string => typeof v === 'string').map(respelled);
  return terms.filter((t) => t !== '' && decodable(t)).at(-1) ?? '';
}

/** dcmjs's read with every Specific Character Set (sequence items' too) replaced by a tolerable one. */
function readWithTolerableCharset(buffer: ArrayBuffer): DicomDict {
  const message = dcmjs.data.DicomMessage;
  const readTag = message._readTag;
  message._readTag = function readTagTolerantOfCharset(this: unknown, ...args: unknown[]) {
    const info = readTag.apply(this, args);
    if (Array.isArray(info.values) && info.tag.toCleanString() === '00080005') info.values = [tolerableCharset(info.values)];
    return info;
  };
  try {
    return message.readFile(buffer);
  } finally {
    message._readTag = readTag; // synchronous: no other read ran in between
  }
}

function readFile(buffer: ArrayBuffer): DicomDict {
  try {
    return dcmjs.data.DicomMessage.readFile(buffer);
  } catch (err) {
    if (!isCharsetError(err)) throw err;
    return readWithTolerableCharset(buffer);
  }
}

export interface ParsedDicom {
  readonly meta: DcmDataset;
  readonly dataset: DcmDataset;
  readonly transferSyntaxUid: string;
  /** False when the bytes had no preamble/File Meta and were read as Implicit VR LE. */
  readonly hadFileMeta: boolean;
}

export type ParseResult = { ok: true; value: ParsedDicom } | { ok: false; reason: string };

function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  // dcmjs reads the whole ArrayBuffer, but a small Buffer from fs is a view on Node's
  // shared 8 KiB pool (and Buffer#slice does not copy): hand over an exact copy then.
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer
    ? bytes.buffer
    : new Uint8Array(bytes).buffer;
}

function hasPreamble(b: Uint8Array): boolean {
  return b.length >= 132 && b[128] === 0x44 && b[129] === 0x49 && b[130] === 0x43 && b[131] === 0x4d; // "DICM"
}

/**
 * A bare dataset starts with a group 0x0008 tag in little endian (the first group after
 * File Meta in every IOD), e.g. 08 00 05 00 (SpecificCharacterSet) or 08 00 16 00.
 */
function looksLikeBareDataset(b: Uint8Array): boolean {
  return b.length >= 8 && b[0] === 0x08 && b[1] === 0x00 && b[3] === 0x00;
}

/** Prepend a preamble and a minimal File Meta (Transfer Syntax = Implicit VR LE). */
function wrapBareDataset(b: Uint8Array): Uint8Array {
  const tsValue = Buffer.from(`${TS.ImplicitVRLittleEndian}\0`, 'latin1'); // UI padded to even length
  const tsElement = Buffer.alloc(8 + tsValue.length);
  tsElement.writeUInt16LE(0x0002, 0);
  tsElement.writeUInt16LE(0x0010, 2);
  tsElement.write('UI', 4, 'latin1');
  tsElement.writeUInt16LE(tsValue.length, 6);
  tsValue.copy(tsElement, 8);
  const groupLength = Buffer.alloc(12);
  groupLength.writeUInt16LE(0x0002, 0);
  groupLength.writeUInt16LE(0x0000, 2);
  groupLength.write('UL', 4, 'latin1');
  groupLength.writeUInt16LE(4, 6);
  groupLength.writeUInt32LE(tsElement.length, 8);
  const head = Buffer.alloc(132);
  head.write('DICM', 128, 'latin1');
  return Buffer.concat([head, groupLength, tsElement, b]);
}

/** Explicit VRs whose header has 2 reserved bytes and a 4-byte length (PS3.5 Table 7.1-1). */
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);

interface FileMeta {
  /** Where the dataset starts. */
  readonly end: number;
  readonly ts: string | undefined;
  /** Where the Transfer Syntax UID's value is in the bytes. */
  readonly tsValue?: { readonly at: number; readonly length: number };
}

/** The File Meta Information Group Length (0002,0000, UL), when the group starts with it. */
function groupLength(b: Uint8Array, v: DataView): number | undefined {
  const off = 132;
  if (off + 12 > b.length || v.getUint16(off, true) !== 0x0002 || v.getUint16(off + 2, true) !== 0x0000) return undefined;
  if (b[off + 4] !== 0x55 || b[off + 5] !== 0x4c || v.getUint16(off + 6, true) !== 4) return undefined; // "UL", 4 bytes
  return v.getUint32(off + 8, true);
}

/**
 * Where the File Meta group (explicit VR little endian, group 0002) ends, and its Transfer Syntax
 * UID. The end is where (0002,0000) says, as dcmjs reads it (a File Meta without it is refused by
 * dcmjs anyway); else where the group's elements end.
 */
function fileMeta(b: Uint8Array): FileMeta {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const length = groupLength(b, v);
  const declaredEnd = length === undefined ? undefined : 132 + 12 + length;
  const limit = Math.min(b.length, declaredEnd ?? b.length);
  let off = 132;
  let ts: string | undefined;
  let tsValue: FileMeta['tsValue'];
  while (off + 8 <= limit && v.getUint16(off, true) === 0x0002) {
    const element = v.getUint16(off + 2, true);
    const long = LONG_VRS.has(String.fromCharCode(b[off + 4]!, b[off + 5]!));
    if (long && off + 12 > limit) break;
    const len = long ? v.getUint32(off + 8, true) : v.getUint16(off + 6, true);
    const start = off + (long ? 12 : 8);
    if (element === 0x0010 && start + len <= limit) {
      ts = Buffer.from(b.subarray(start, start + len))
        .toString('latin1')
        .replace(/[\0 ]+$/, '');
      tsValue = { at: start, length: len };
    }
    off = start + len;
  }
  return { end: declaredEnd ?? off, ts, ...(tsValue ? { tsValue } : {}) };
}

/** Inflated size allowed for a Deflated dataset (memory bound). */
const MAX_INFLATED_BYTES = 256 * 1024 * 1024;

type Inflated = { ok: true; bytes: Uint8Array } | { ok: false; reason: string };

/**
 * A Deflated dataset inflated here, within `max` bytes, and handed to dcmjs as what it then is:
 * Explicit VR Little Endian. dcmjs would inflate it whole itself (pako, no bound: a few MiB of
 * deflated zeros inflate to tens of GB), so it never sees the deflated bytes: the Transfer Syntax
 * UID is rewritten in place, NUL-padded to its length, and the caller restores it in the meta.
 */
function inflateDataset(bytes: Uint8Array, end: number, tsValue: NonNullable<FileMeta['tsValue']>, max: number): Inflated {
  let dataset: Buffer;
  try {
    dataset = inflateRawSync(bytes.subarray(end), { maxOutputLength: max });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE')
      return { ok: false, reason: `too large: the deflated dataset inflates beyond ${max} bytes` };
    if (isResourceError(err)) throw resourceFailure(err);
    return { ok: false, reason: `corrupt deflated dataset: ${err instanceof Error ? err.message : String(err)}`.slice(0, 200) };
  }
  const { at, length } = tsValue;
  const out = new Uint8Array(end + dataset.length);
  out.set(bytes.subarray(0, end));
  out.set(dataset, end);
  out.fill(0, at, at + length).set(Buffer.from(TS.ExplicitVRLittleEndian, 'latin1'), at);
  return { ok: true, bytes: out };
}

export function parseDicom(input: Uint8Array, opts: { maxInflatedBytes?: number } = {}): ParseResult {
  if (!(input instanceof Uint8Array)) return { ok: false, reason: 'input is not a byte array' };
  if (input.length === 0) return { ok: false, reason: 'empty input' };
  let bytes = input;
  let hadFileMeta = true;
  if (!hasPreamble(input)) {
    if (!looksLikeBareDataset(input)) return { ok: false, reason: "not a DICOM file (no 'DICM' Part-10 header)" };
    bytes = wrapBareDataset(input);
    hadFileMeta = false;
  }
  const head = fileMeta(bytes);
  const deflated = head.ts === TS.DeflatedExplicitVRLittleEndian;
  if (deflated && head.tsValue) {
    const inflated = inflateDataset(bytes, head.end, head.tsValue, opts.maxInflatedBytes ?? MAX_INFLATED_BYTES);
    if (!inflated.ok) return inflated;
    bytes = inflated.bytes;
  }
  try {
    const dict = readFile(toArrayBuffer(bytes));
    if (deflated) dict.meta['00020010'] = { vr: 'UI', Value: [TS.DeflatedExplicitVRLittleEndian] };
    const transferSyntaxUid = str(dict.meta, '00020010');
    if (!transferSyntaxUid) return { ok: false, reason: 'File Meta has no Transfer Syntax UID (0002,0010)' };
    if (!dict.dict || typeof dict.dict !== 'object') return { ok: false, reason: 'no dataset after File Meta' };
    return { ok: true, value: { meta: dict.meta, dataset: dict.dict, transferSyntaxUid, hadFileMeta } };
  } catch (err) {
    if (isResourceError(err)) throw resourceFailure(err);
    const msg = err instanceof Error ? err.message : String(err);
    if (/runs past the end/.test(msg)) return { ok: false, reason: `truncated or corrupt DICOM: ${msg}` };
    return { ok: false, reason: `malformed DICOM: ${msg.slice(0, 200)}` };
  }
}
