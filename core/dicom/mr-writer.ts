/**
 * Writes one grayscale image as a DICOM MR Image Storage instance (PS3.3 A.4),
 * Part-10, Explicit VR Little Endian, uncompressed (pixels exactly as given).
 *
 * Modules written: Patient, General Study, General Series (Modality MR), MR Series,
 * General Equipment, General Image, Image Pixel, MR Image, SOP Common, plus the CBMIR
 * label block (core/dicom/label.ts).
 *
 * Deliberate gaps, because the source datasets do not carry the facts and inventing
 * them would mislead a reader: no Frame of Reference / Image Plane (no geometry: spacing,
 * orientation and position are unknown for these 2-D slices); MR Image's Type 1
 * Scanning Sequence / Sequence Variant use the defined terms "RM" (research mode) and
 * "NONE" rather than guessing the sequence; Type 2 acquisition attributes are present
 * and empty. Image Type is DERIVED\SECONDARY and Derivation Description says where the
 * pixels came from; Lossy Image Compression (0028,2110) is "01" when the source was a
 * lossy file (the figshare JPEGs), so no one mistakes them for original scanner data.
 */
import dcmjs, { type DcmDataset } from 'dcmjs';
import { labelElements, type DatasetLabel } from './label.js';
import { deterministicUid } from './uids.js';

export const MR_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.4';
export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
/** Identifies files written by this software (PS3.7 D.3.3.2); deterministic like every UID we make. */
export const IMPLEMENTATION_CLASS_UID = deterministicUid('implementation', 'cbmir-gateway');
export const IMPLEMENTATION_VERSION_NAME = 'CBMIR_0_1';

export interface MrInstanceInput {
  /** Row-major samples; 8-bit (Uint8Array) or up to 16-bit unsigned (Uint16Array). */
  readonly pixels: Uint8Array | Uint16Array;
  readonly rows: number;
  readonly cols: number;
  /** Bits Stored for 16-bit input (≤ 16); ignored for 8-bit. */
  readonly bitsStored?: number;
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopInstanceUid: string;
  readonly patientId: string;
  readonly patientName: string;
  readonly studyDescription?: string;
  readonly seriesDescription?: string;
  readonly studyId?: string;
  readonly seriesNumber: number;
  readonly instanceNumber: number;
  /** DA YYYYMMDD: Study/Series/Content Date. */
  readonly studyDate: string;
  /** Instance Creation Date/Time; defaults to now (UTC). */
  readonly createdAt?: Date;
  readonly bodyPartExamined?: string;
  readonly derivationDescription?: string;
  /** The source file was lossy-compressed (e.g. JPEG): sets Lossy Image Compression "01". */
  readonly lossySource?: { readonly method: string; readonly ratio?: number };
  readonly label?: DatasetLabel;
}

const dt = (d: Date) => ({
  date: d.toISOString().slice(0, 10).replace(/-/g, ''),
  time: d.toISOString().slice(11, 19).replace(/:/g, ''),
});

function assertInput(x: MrInstanceInput): void {
  if (!Number.isInteger(x.rows) || !Number.isInteger(x.cols) || x.rows < 1 || x.cols < 1 || x.rows > 65535 || x.cols > 65535) {
    throw new Error(`invalid image size ${x.rows}×${x.cols}`);
  }
  if (x.pixels.length !== x.rows * x.cols) throw new Error(`pixel count ${x.pixels.length} != ${x.rows}×${x.cols}`);
  if (!/^\d{8}$/.test(x.studyDate)) throw new Error(`study date must be YYYYMMDD, got ${x.studyDate}`);
  for (const [k, v] of [
    ['studyInstanceUid', x.studyInstanceUid],
    ['seriesInstanceUid', x.seriesInstanceUid],
    ['sopInstanceUid', x.sopInstanceUid],
  ] as const) {
    if (!/^[0-9]+(\.[0-9]+)*$/.test(v) || v.length > 64) throw new Error(`${k} is not a valid UID: ${v}`);
  }
  if (x.patientId.length > 64) throw new Error('patient id longer than 64 characters');
}

/** Encode the instance; returns the Part-10 bytes. Throws on invalid input (caller's bug or bad dataset row). */
export function writeMrInstance(x: MrInstanceInput): Uint8Array {
  assertInput(x);
  const eightBit = x.pixels instanceof Uint8Array;
  const bitsAllocated = eightBit ? 8 : 16;
  const bitsStored = eightBit ? 8 : Math.min(16, Math.max(1, x.bitsStored ?? 16));
  // Pixel Data must have even length (PS3.5 §7.1.1): pad an odd 8-bit image with one zero byte.
  const raw = eightBit ? (x.pixels as Uint8Array) : new Uint8Array(Uint16Array.from(x.pixels).buffer); // LE on every host Node runs on
  const pixelBytes = new Uint8Array(raw.length + (raw.length % 2));
  pixelBytes.set(raw);
  const created = dt(x.createdAt ?? new Date());
  const maxValue = 2 ** bitsStored - 1;

  const ds: DcmDataset = {
    '00080005': { vr: 'CS', Value: ['ISO_IR 192'] },
    '00080008': { vr: 'CS', Value: ['DERIVED', 'SECONDARY'] },
    '00080012': { vr: 'DA', Value: [created.date] },
    '00080013': { vr: 'TM', Value: [created.time] },
    '00080016': { vr: 'UI', Value: [MR_IMAGE_STORAGE] },
    '00080018': { vr: 'UI', Value: [x.sopInstanceUid] },
    '00080020': { vr: 'DA', Value: [x.studyDate] },
    '00080021': { vr: 'DA', Value: [x.studyDate] },
    '00080023': { vr: 'DA', Value: [x.studyDate] },
    '00080030': { vr: 'TM', Value: ['000000'] },
    '00080031': { vr: 'TM', Value: ['000000'] },
    '00080033': { vr: 'TM', Value: ['000000'] },
    '00080050': { vr: 'SH', Value: [] },
    '00080060': { vr: 'CS', Value: ['MR'] },
    '00080070': { vr: 'LO', Value: [] },
    '00080090': { vr: 'PN', Value: [] },
    '00081030': { vr: 'LO', Value: x.studyDescription ? [x.studyDescription.slice(0, 64)] : [] },
    '0008103E': { vr: 'LO', Value: x.seriesDescription ? [x.seriesDescription.slice(0, 64)] : [] },
    '00100010': { vr: 'PN', Value: [{ Alphabetic: x.patientName }] },
    '00100020': { vr: 'LO', Value: [x.patientId] },
    '00100030': { vr: 'DA', Value: [] },
    '00100040': { vr: 'CS', Value: [] },
    '00180015': { vr: 'CS', Value: [(x.bodyPartExamined ?? 'BRAIN').slice(0, 16)] },
    '00180020': { vr: 'CS', Value: ['RM'] },
    '00180021': { vr: 'CS', Value: ['NONE'] },
    '00180022': { vr: 'CS', Value: [] },
    '00180023': { vr: 'CS', Value: ['2D'] },
    '00180081': { vr: 'DS', Value: [] },
    '00180091': { vr: 'IS', Value: [] },
    '0020000D': { vr: 'UI', Value: [x.studyInstanceUid] },
    '0020000E': { vr: 'UI', Value: [x.seriesInstanceUid] },
    '00200010': { vr: 'SH', Value: [(x.studyId ?? '1').slice(0, 16)] },
    '00200011': { vr: 'IS', Value: [x.seriesNumber] },
    '00200013': { vr: 'IS', Value: [x.instanceNumber] },
    '00200020': { vr: 'CS', Value: [] },
    '00280002': { vr: 'US', Value: [1] },
    '00280004': { vr: 'CS', Value: ['MONOCHROME2'] },
    '00280010': { vr: 'US', Value: [x.rows] },
    '00280011': { vr: 'US', Value: [x.cols] },
    '00280100': { vr: 'US', Value: [bitsAllocated] },
    '00280101': { vr: 'US', Value: [bitsStored] },
    '00280102': { vr: 'US', Value: [bitsStored - 1] },
    '00280103': { vr: 'US', Value: [0] },
    // Full-range window so every viewer shows the stored values as the source showed them.
    '00281050': { vr: 'DS', Value: [(maxValue + 1) / 2] },
    '00281051': { vr: 'DS', Value: [maxValue + 1] },
    '00282110': { vr: 'CS', Value: [x.lossySource ? '01' : '00'] },
    '7FE00010': { vr: eightBit ? 'OB' : 'OW', Value: [pixelBytes.buffer] },
  };
  if (x.lossySource) {
    ds['00282114'] = { vr: 'CS', Value: [x.lossySource.method] };
    if (x.lossySource.ratio !== undefined) ds['00282112'] = { vr: 'DS', Value: [Number(x.lossySource.ratio.toFixed(2))] };
  }
  if (x.derivationDescription) ds['00082111'] = { vr: 'ST', Value: [x.derivationDescription.slice(0, 1024)] };
  if (x.label) Object.assign(ds, labelElements(x.label));

  const meta: DcmDataset = {
    '00020001': { vr: 'OB', Value: [new Uint8Array([0, 1]).buffer] },
    '00020002': { vr: 'UI', Value: [MR_IMAGE_STORAGE] },
    '00020003': { vr: 'UI', Value: [x.sopInstanceUid] },
    '00020010': { vr: 'UI', Value: [EXPLICIT_VR_LITTLE_ENDIAN] },
    '00020012': { vr: 'UI', Value: [IMPLEMENTATION_CLASS_UID] },
    '00020013': { vr: 'SH', Value: [IMPLEMENTATION_VERSION_NAME] },
  };
  const dict = new dcmjs.data.DicomDict(meta);
  dict.dict = ds;
  return new Uint8Array(dict.write());
}
