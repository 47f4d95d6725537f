/**
 * Virtual root pieces that need no stack: the path guard's /similar-to prefix, the
 * includefield quirk (pacs-quirks.ts) and the virtual study query (virtual-root-query.ts).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HttpProblem } from '../../core/errors.js';
import { normaliseQidoQuery, normaliseWadoUriQuery, ORTHANC_DICOMWEB_1_7 } from '../../gateway/pacs-quirks.js';
import { guardTarget } from '../../gateway/path-guard.js';
import { pacsStudyQuery, parseVirtualStudyQuery } from '../../gateway/virtual-root-query.js';

const SOP = '1.2.840.113619.2.55.3.1';
const code = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof HttpProblem, String(err));
    return err.code;
  }
  return 'none';
};

describe('path guard: /similar-to/{sop}/…', () => {
  test('the DICOMweb and WADO-URI roots under the prefix, tagged with the instance', () => {
    assert.deepEqual(guardTarget(`/similar-to/${SOP}/dicom-web/studies/1.2/series?x=1`, 4096), {
      kind: 'dicomweb',
      segments: ['studies', '1.2', 'series'],
      query: 'x=1',
      virtualSop: SOP,
    });
    assert.deepEqual(guardTarget(`/similar-to/${SOP}/dicom-web`, 4096), { kind: 'dicomweb', segments: [], query: '', virtualSop: SOP });
    assert.deepEqual(guardTarget(`/similar-to/${SOP}/wado?requestType=WADO`, 4096), {
      kind: 'wado-uri',
      query: 'requestType=WADO',
      virtualSop: SOP,
    });
    // Plain roots carry no tag; /similar (the API) is not taken for the prefix.
    assert.equal('virtualSop' in guardTarget('/dicom-web/studies', 4096), false);
    assert.equal(guardTarget('/similar?x=1', 4096).kind, 'other');
  });

  test('traversal and near-misses 400, malformed UID 400, other places 404', () => {
    for (const p of [
      `/similar-to/${SOP}/dicom-web/../../tools`,
      `/similar-to/${SOP}/%2E%2E/dicom-web`,
      `/similar-to/${SOP}/dicom-web/studies%2f..`,
      `/similar-to/${SOP}//dicom-web`,
      `/similar-to/${SOP}/dicom-web/studies/a b`,
      `/similar-to/${SOP}/dicom-web/studies/1.2;x`,
      `/similar-to/${SOP}/dicom-webx`,
      `/similar-to/${SOP}/wado/x`,
      `/similar-toX/${SOP}/dicom-web`,
    ])
      assert.equal(
        code(() => guardTarget(p, 4096)),
        'BAD_PATH',
        p,
      );
    for (const p of [
      '/similar-to',
      '/similar-to/',
      '/similar-to/1.2.x/dicom-web',
      `/similar-to/1.${'1'.repeat(64)}/dicom-web`,
      '/similar-to/.1/dicom-web',
    ])
      assert.equal(
        code(() => guardTarget(p, 4096)),
        'BAD_UID',
        p,
      );
    for (const p of [`/similar-to/${SOP}`, `/similar-to/${SOP}/`, `/similar-to/${SOP}/tools/reset`])
      assert.equal(
        code(() => guardTarget(p, 4096)),
        'NOT_FOUND',
        p,
      );
  });
});

describe('includefield quirk (Orthanc DICOMweb 1.7 splits on a literal comma only)', () => {
  test('%2C in includefield values becomes ",", nothing else changes', () => {
    assert.equal(
      normaliseQidoQuery('limit=101&includefield=00081030%2C00080060%2c00100010&PatientName=a%2Cb&offset=0', ORTHANC_DICOMWEB_1_7),
      'limit=101&includefield=00081030,00080060,00100010&PatientName=a%2Cb&offset=0',
    );
    assert.equal(normaliseQidoQuery('IncludeField=a%2Cb&includefield=c', ORTHANC_DICOMWEB_1_7), 'IncludeField=a,b&includefield=c');
    const q = 'includefield=00081030%2C00080060';
    assert.equal(normaliseQidoQuery(q, { ...ORTHANC_DICOMWEB_1_7, includeFieldNeedsLiteralComma: false }), q, 'a PACS without the quirk');
    assert.equal(normaliseQidoQuery('', ORTHANC_DICOMWEB_1_7), '');
  });
});

describe('WADO-URI contentType quirk (Orthanc DICOMweb 1.7 compares contentType undecoded)', () => {
  test('%2F in contentType values becomes "/", nothing else changes', () => {
    const uids = 'requestType=WADO&studyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4';
    assert.equal(
      normaliseWadoUriQuery(`${uids}&contentType=application%2Fdicom`, ORTHANC_DICOMWEB_1_7),
      `${uids}&contentType=application/dicom`,
    );
    assert.equal(
      normaliseWadoUriQuery(
        'contentType=image%2fjpeg&x=a%2Fb&ContentType=image%2Fpng&transferSyntax=1.2.840.10008.1.2.1',
        ORTHANC_DICOMWEB_1_7,
      ),
      'contentType=image/jpeg&x=a%2Fb&ContentType=image%2Fpng&transferSyntax=1.2.840.10008.1.2.1',
      'only contentType (case-sensitive in PS3.18 §9)',
    );
    const q = `${uids}&contentType=application%2Fdicom`;
    assert.equal(
      normaliseWadoUriQuery(q, { ...ORTHANC_DICOMWEB_1_7, wadoUriContentTypeNeedsLiteralSlash: false }),
      q,
      'a PACS without the quirk',
    );
    assert.equal(normaliseWadoUriQuery(uids, ORTHANC_DICOMWEB_1_7), uids);
  });
});

describe('virtual study query', () => {
  test('paging, StudyInstanceUID and includefield are ours; the rest goes to the PACS', () => {
    const q = parseVirtualStudyQuery(
      'limit=101&offset=2&fuzzymatching=false&includefield=00081030%2C00080060&includefield=00100010&PatientName=Doe*&accept=x',
    );
    assert.equal(q.limit, 101);
    assert.equal(q.offset, 2);
    assert.equal(q.studyUids, undefined);
    assert.deepEqual(q.includeFields, ['00081030', '00080060', '00100010']);
    assert.deepEqual(q.pass, [
      ['fuzzymatching', 'false'],
      ['PatientName', 'Doe*'],
    ]);
    assert.equal(
      pacsStudyQuery(['1.2', '1.3'], q),
      'StudyInstanceUID=1.2,1.3&limit=2&includefield=00081030,00080060,00100010&fuzzymatching=false&PatientName=Doe*',
    );
    assert.equal(
      pacsStudyQuery(['1.2'], parseVirtualStudyQuery('PatientName=a%26b%3Dc')),
      'StudyInstanceUID=1.2&limit=1&PatientName=a%26b%3Dc',
    );
  });

  test('StudyInstanceUID lists (comma or backslash) intersect when repeated; bad values 400', () => {
    assert.deepEqual([...parseVirtualStudyQuery('StudyInstanceUID=1.2,1.3').studyUids!], ['1.2', '1.3']);
    assert.deepEqual([...parseVirtualStudyQuery('0020000D=1.2%5C1.3&StudyInstanceUID=1.3').studyUids!], ['1.3']);
    assert.equal(parseVirtualStudyQuery('limit=0').limit, undefined);
    // An empty value is universal matching, as in any QIDO: every similar study, not none.
    assert.equal(parseVirtualStudyQuery('StudyInstanceUID=').studyUids, undefined);
    assert.deepEqual([...parseVirtualStudyQuery('StudyInstanceUID=&StudyInstanceUID=1.2').studyUids!], ['1.2']);
    for (const bad of ['limit=-1', 'limit=1.5', 'offset=x', 'limit='])
      assert.equal(
        code(() => parseVirtualStudyQuery(bad)),
        'BAD_PARAM',
        bad,
      );
    assert.equal(
      code(() => parseVirtualStudyQuery('StudyInstanceUID=1.2,x')),
      'BAD_UID',
    );
  });
});
