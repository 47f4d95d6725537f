/** Reading values out of DICOM JSON (PS3.18 F.2) without caring about VR. */
export type DicomJsonDataset = Record<string, { vr?: string; Value?: unknown[]; BulkDataURI?: string } | undefined>;

export function firstValue(ds: DicomJsonDataset | undefined, tag: string): unknown {
  return ds?.[tag]?.Value?.[0];
}

export function stringValue(ds: DicomJsonDataset | undefined, tag: string): string | undefined {
  const v = firstValue(ds, tag);
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'object' && v !== null && 'Alphabetic' in v) return String((v as { Alphabetic: unknown }).Alphabetic);
  return String(v);
}

export function sequenceItems(ds: DicomJsonDataset | undefined, tag: string): DicomJsonDataset[] {
  const v = ds?.[tag]?.Value;
  return Array.isArray(v) ? (v as DicomJsonDataset[]) : [];
}

export const TAG = {
  StudyInstanceUID: '0020000D',
  SeriesInstanceUID: '0020000E',
  SOPInstanceUID: '00080018',
  SOPClassUID: '00080016',
  Modality: '00080060',
  BodyPartExamined: '00180015',
  PatientID: '00100020',
  RetrieveURL: '00081190',
  ReferencedSOPSequence: '00081199',
  FailedSOPSequence: '00081198',
  ReferencedSOPClassUID: '00081150',
  ReferencedSOPInstanceUID: '00081155',
  NumberOfStudyRelatedInstances: '00201208',
} as const;
