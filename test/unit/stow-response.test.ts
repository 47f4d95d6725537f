import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readStowResponse, storedInstances } from '../../core/pacs/stow-response.js';

// Shape of Orthanc 1.10 + DICOMweb 1.7's STOW answer (captured from a real run).
const body = {
  '00081190': { vr: 'UR', Value: ['http://127.0.0.1:8042/dicom-web/studies/1.2.3'] },
  '00081198': {
    vr: 'SQ',
    Value: [{ '00081150': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.4'] }, '00081155': { vr: 'UI', Value: ['1.2.3.4.9'] } }],
  },
  '00081199': {
    vr: 'SQ',
    Value: [
      {
        '00081150': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.4'] },
        '00081155': { vr: 'UI', Value: ['1.2.3.4.5'] },
        '00081190': { vr: 'UR', Value: ['http://127.0.0.1:8042/dicom-web/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5'] },
      },
      { '00081155': { vr: 'UI', Value: ['not-a-uid'] }, '00081190': { vr: 'UR', Value: ['x'] } },
    ],
  },
};

test('stored instances come from ReferencedSOPSequence with UIDs from RetrieveURL', () => {
  const out = storedInstances(JSON.stringify(body));
  assert.deepEqual(out, [
    { studyInstanceUid: '1.2.3', seriesInstanceUid: '1.2.3.4', sopInstanceUid: '1.2.3.4.5', sopClassUid: '1.2.840.10008.5.1.4.1.1.4' },
  ]);
});

test('failed instances and malformed items are not reported as stored', () => {
  const uids = storedInstances(Buffer.from(JSON.stringify([body]))).map((s) => s.sopInstanceUid);
  assert.deepEqual(uids, ['1.2.3.4.5']);
});

test('the XML answer (PS3.19) gives the same instances; failed ones and items without an instance URL do not count', () => {
  const v = (tag: string, vr: string, value: string) =>
    `<DicomAttribute tag="${tag}" vr="${vr}"><Value number="1">${value}</Value></DicomAttribute>`;
  const xml =
    `<?xml version="1.0" encoding="UTF-8"?>\n<NativeDicomModel>` +
    v('00081190', 'UR', 'http://127.0.0.1:8042/dicom-web/studies/1.2.3') +
    `<DicomAttribute tag="00081198" vr="SQ"><Item number="1">${v('00081150', 'UI', '1.2.840.10008.5.1.4.1.1.4')}${v('00081155', 'UI', '1.2.3.4.9')}</Item></DicomAttribute>` +
    `<DicomAttribute tag="00081199" vr="SQ"><Item number="1">${v('00081150', 'UI', '1.2.840.10008.5.1.4.1.1.4')}${v('00081155', 'UI', '1.2.3.4.5')}` +
    `${v('00081190', 'UR', 'http://127.0.0.1:8042/dicom-web/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5')}</Item>` +
    `<Item number="2">${v('00081155', 'UI', '1.2.3.4.6')}</Item></DicomAttribute></NativeDicomModel>`;
  assert.deepEqual(storedInstances(xml), storedInstances(JSON.stringify(body)));
  assert.deepEqual(
    storedInstances(xml).map((s) => s.sopInstanceUid),
    ['1.2.3.4.5'],
  );
});

test('garbage answers give nothing, never throw', () => {
  assert.deepEqual(storedInstances('<NativeDicomModel/>'), []);
  assert.deepEqual(storedInstances(new Uint8Array([0xff, 0x00])), []);
  assert.deepEqual(storedInstances('null'), []);
  assert.deepEqual(storedInstances('{}'), []);
});

test('what the hook could not read is counted: references without a series or a valid UID, and a body that is neither JSON nor XML', () => {
  assert.deepEqual(
    { ...readStowResponse(JSON.stringify(body)), stored: undefined },
    { stored: undefined, unread: 1, parsed: true },
    'the malformed item; the failed instance (0008,1198) is not a stored one',
  );
  // A PACS that names stored instances without a per-instance RetrieveURL: none can be queued.
  const noUrls = {
    '0020000D': { vr: 'UI', Value: ['1.2.3'] },
    '00081199': {
      vr: 'SQ',
      Value: [{ '00081155': { vr: 'UI', Value: ['1.2.3.4.5'] } }, { '00081155': { vr: 'UI', Value: ['1.2.3.4.6'] } }],
    },
  };
  assert.deepEqual(readStowResponse(JSON.stringify(noUrls)), { stored: [], unread: 2, parsed: true });
  assert.deepEqual(readStowResponse('Stored 2 instances'), { stored: [], unread: 0, parsed: false });
  const v = (tag: string, value: string) => `<DicomAttribute tag="${tag}" vr="UI"><Value number="1">${value}</Value></DicomAttribute>`;
  // Other Failures (0008,119A) after the stored list names instances too: not unread stored ones.
  const xml =
    `<NativeDicomModel><DicomAttribute tag="00081199" vr="SQ"><Item number="1">${v('00081155', '1.2.3.4.5')}</Item></DicomAttribute>` +
    `<DicomAttribute tag="0008119A" vr="SQ"><Item number="1">${v('00081155', '1.2.3.4.7')}</Item></DicomAttribute></NativeDicomModel>`;
  assert.deepEqual(readStowResponse(xml), { stored: [], unread: 1, parsed: true });
});
