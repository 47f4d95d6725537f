/**
 * Where `cbmir load` keeps the dataset label in the instances it writes, and how the
 * decoder reads it back (the index stores it beside the vector for evaluation).
 *
 * Two places, written together, read in this order:
 *  1. A private block, creator "CBMIR" in group 0009 (PS3.5 §7.8). The writer reserves
 *     block 0x10: (0009,0010) LO "CBMIR", then
 *       (0009,1001) LO class name    e.g. "meningioma"
 *       (0009,1002) IS label code    e.g. "1" (the dataset's own numbering)
 *       (0009,1003) LO dataset name  e.g. "figshare-cheng"
 *       (0009,1004) LT source file   e.g. "images/1.jpg" (relative to the dataset)
 *       (0009,1005) IS fold          e.g. "5" (the dataset's patient-wise fold)
 *     The reader looks the creator up in (0009,0010)–(0009,00FF), so a PACS or tool
 *     that moves the block still reads right.
 *  2. ImageComments (0020,4000) = "label=<class name>": a standard tag that survives
 *     tools that strip private tags (anonymisers), and that a person sees in a viewer.
 */
import type { DcmDataset } from 'dcmjs';
import { num, str } from './dataset-values.js';

export const PRIVATE_CREATOR = 'CBMIR';
export const PRIVATE_GROUP = '0009';
/** The block the writer reserves: creator at (0009,0010), data at (0009,10xx). */
export const PRIVATE_BLOCK = '10';

export const LABEL_ELEMENTS = {
  className: '01',
  code: '02',
  dataset: '03',
  sourceFile: '04',
  fold: '05',
} as const;

export const IMAGE_COMMENTS = '00204000';

export interface DatasetLabel {
  readonly className: string;
  readonly code?: number;
  readonly dataset?: string;
  readonly sourceFile?: string;
  readonly fold?: number;
}

/** Tag → element for the writer (explicit VR). */
export function labelElements(label: DatasetLabel): DcmDataset {
  const t = (e: string) => `${PRIVATE_GROUP}${PRIVATE_BLOCK}${e}`;
  const out: DcmDataset = {
    [`${PRIVATE_GROUP}00${PRIVATE_BLOCK}`]: { vr: 'LO', Value: [PRIVATE_CREATOR] },
    [t(LABEL_ELEMENTS.className)]: { vr: 'LO', Value: [label.className] },
    [IMAGE_COMMENTS]: { vr: 'LT', Value: [`label=${label.className}`] },
  };
  if (label.code !== undefined) out[t(LABEL_ELEMENTS.code)] = { vr: 'IS', Value: [label.code] };
  if (label.dataset !== undefined) out[t(LABEL_ELEMENTS.dataset)] = { vr: 'LO', Value: [label.dataset] };
  if (label.sourceFile !== undefined) out[t(LABEL_ELEMENTS.sourceFile)] = { vr: 'LT', Value: [label.sourceFile] };
  if (label.fold !== undefined) out[t(LABEL_ELEMENTS.fold)] = { vr: 'IS', Value: [label.fold] };
  return out;
}

function findBlock(ds: DcmDataset): string | undefined {
  for (let b = 0x10; b <= 0xff; b++) {
    const block = b.toString(16).toUpperCase().padStart(2, '0');
    if (str(ds, `${PRIVATE_GROUP}00${block}`) === PRIVATE_CREATOR) return block;
  }
  return undefined;
}

/** The label `cbmir load` wrote, or undefined for any other instance. */
export function readLabel(ds: DcmDataset): DatasetLabel | undefined {
  const block = findBlock(ds);
  if (block !== undefined) {
    const t = (e: string) => `${PRIVATE_GROUP}${block}${e}`;
    const className = str(ds, t(LABEL_ELEMENTS.className));
    if (className) {
      const code = num(ds, t(LABEL_ELEMENTS.code));
      const dataset = str(ds, t(LABEL_ELEMENTS.dataset));
      const sourceFile = str(ds, t(LABEL_ELEMENTS.sourceFile));
      const fold = num(ds, t(LABEL_ELEMENTS.fold));
      return {
        className,
        ...(code !== undefined ? { code } : {}),
        ...(dataset !== undefined ? { dataset } : {}),
        ...(sourceFile !== undefined ? { sourceFile } : {}),
        ...(fold !== undefined ? { fold } : {}),
      };
    }
  }
  const m = /^label=(\S.*)$/m.exec(str(ds, IMAGE_COMMENTS) ?? '');
  return m?.[1] ? { className: m[1].trim() } : undefined;
}
