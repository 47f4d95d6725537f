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

/** Stored instances named in a STOW-RS response body; [] for anything unparseable. */
export function storedInstances(body: Uint8Array | string): StoredInstance[] {
  let json: unknown;
  try {
    json = JSON.parse(typeof body === 'string' ? body : Buffer.from(body).toString('utf8'));
  } catch {
    return []; // XML or garbage: nothing we can trust; the reconciler will catch up.
  }
  const root = (Array.isArray(json) ? json[0] : json) as DicomJsonDataset | undefined;
  if (!root || typeof root !== 'object') return [];
  const out: StoredInstance[] = [];
  for (const item of sequenceItems(root, TAG.ReferencedSOPSequence)) {
    const sop = stringValue(item, TAG.ReferencedSOPInstanceUID);
    const m = RETRIEVE_RE.exec(stringValue(item, TAG.RetrieveURL) ?? '');
    const study = m?.[1] ?? stringValue(root, TAG.StudyInstanceUID);
    const series = m?.[2];
    if (!isValidUid(sop) || !isValidUid(study) || !isValidUid(series)) continue;
    out.push({ studyInstanceUid: study, seriesInstanceUid: series, sopInstanceUid: sop, sopClassUid: stringValue(item, TAG.ReferencedSOPClassUID) });
  }
  return out;
}
