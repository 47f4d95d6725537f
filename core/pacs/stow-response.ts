/**
 * PS3.18 10.5.3: the STOW-RS response lists stored instances in
 * ReferencedSOPSequence (0008,1199), each with a RetrieveURL (0008,1190) that
 * names its study and series. Orthanc answers a partial success with HTTP 400
 * and no Content-Type, yet the body is the same DICOM JSON: parse by content,
 * not by header.
 */
import { sequenceItems, stringValue, TAG, type DicomJsonDataset } from '../dicom-json.js';
import { isValidUid } from '../errors.js';

export interface StoredInstance {
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopInstanceUid: string;
  readonly sopClassUid: string | undefined;
}

const RETRIEVE_RE = /\/studies\/([0-9.]+)\/series\/([0-9.]+)\/instances\/([0-9.]+)\/?$/;

/**
 * What a STOW-RS response body (DICOM JSON or XML) says was stored: the instances it names in
 * full (`stored`), how many of its ReferencedSOPSequence items could not be read (`unread`: no
 * series in the RetrieveURL, a malformed UID), and whether the body was DICOM JSON or XML at all.
 */
export interface StowResponse {
  readonly stored: StoredInstance[];
  readonly unread: number;
  readonly parsed: boolean;
}

/** Stored instances named in a STOW-RS response body; [] for anything unparseable. */
export function storedInstances(body: Uint8Array | string): StoredInstance[] {
  return readStowResponse(body).stored;
}

export function readStowResponse(body: Uint8Array | string): StowResponse {
  const text = typeof body === 'string' ? body : Buffer.from(body).toString('utf8');
  if (/^\s*</.test(text.replace(/^\uFEFF/, ''))) return storedInstancesXml(text);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { stored: [], unread: 0, parsed: false }; // garbage: nothing we can trust; the reconciler will catch up.
  }
  const root = (Array.isArray(json) ? json[0] : json) as DicomJsonDataset | undefined;
  if (!root || typeof root !== 'object') return { stored: [], unread: 0, parsed: false };
  const stored: StoredInstance[] = [];
  let unread = 0;
  for (const item of sequenceItems(root, TAG.ReferencedSOPSequence)) {
    const sop = stringValue(item, TAG.ReferencedSOPInstanceUID);
    const m = RETRIEVE_RE.exec(stringValue(item, TAG.RetrieveURL) ?? '');
    const study = m?.[1] ?? stringValue(root, TAG.StudyInstanceUID);
    const series = m?.[2];
    if (!isValidUid(sop) || !isValidUid(study) || !isValidUid(series)) {
      unread++;
      continue;
    }
    stored.push({ studyInstanceUid: study, seriesInstanceUid: series, sopInstanceUid: sop, sopClassUid: stringValue(item, TAG.ReferencedSOPClassUID) });
  }
  return { stored, unread, parsed: true };
}

const xmlValue = (item: string, tag: string): string | undefined =>
  new RegExp(`<DicomAttribute\\b[^>]*\\btag="${tag}"[^>]*>\\s*<Value\\b[^>]*>\\s*([^<]*?)\\s*</Value>`, 'i').exec(item)?.[1];

/**
 * The same from the PS3.19 Native DICOM Model (a client that asked for application/dicom+xml):
 * each Item of ReferencedSOPSequence (0008,1199) with its RetrieveURL. The failed-instances
 * sequence (0008,1198) comes before it in tag order and is skipped, Other Failures (0008,119A)
 * after it is cut off.
 */
function storedInstancesXml(xml: string): StowResponse {
  const parsed = /<NativeDicomModel\b/i.test(xml);
  const start = xml.search(/<DicomAttribute\b[^>]*\btag="00081199"/i);
  if (start < 0) return { stored: [], unread: 0, parsed };
  const stored: StoredInstance[] = [];
  let unread = 0;
  // Up to Other Failures (0008,119A), whose items name instances too: not stored ones.
  const section = xml.slice(start);
  const end = section.search(/<DicomAttribute\b[^>]*\btag="0008119A"/i);
  for (const item of (end < 0 ? section : section.slice(0, end)).split(/<Item\b/i).slice(1)) {
    const sop = xmlValue(item, '00081155');
    if (sop === undefined) continue; // a nested sequence's item
    const m = RETRIEVE_RE.exec(xmlValue(item, '00081190') ?? '');
    if (!m || !isValidUid(sop) || !isValidUid(m[1]) || !isValidUid(m[2]) || m[3] !== sop) {
      unread++;
      continue;
    }
    stored.push({ studyInstanceUid: m[1]!, seriesInstanceUid: m[2]!, sopInstanceUid: sop, sopClassUid: xmlValue(item, '00081150') });
  }
  return { stored, unread, parsed };
}
