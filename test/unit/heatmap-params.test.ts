/** /similar/heatmap parameters (gateway/similar-heatmap.ts parseHeatmapParams): strict, named problems. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HttpProblem } from '../../core/errors.js';
import { parseHeatmapParams } from '../../gateway/similar-heatmap.js';

const Q = 'StudyInstanceUID=1.2.3&SeriesInstanceUID=1.2.3.4&SOPInstanceUID=1.2.3.4.5';
const R = 'ResultStudyInstanceUID=1.2.9&ResultSeriesInstanceUID=1.2.9.4&ResultSOPInstanceUID=1.2.9.4.5';
const parse = (s: string, upload = false) => parseHeatmapParams(new URLSearchParams(s), upload);
const problem = (fn: () => unknown, code: string, detail: RegExp) =>
  assert.throws(fn, (e: unknown) => e instanceof HttpProblem && e.code === code && detail.test(e.message));

describe('parseHeatmapParams', () => {
  it('reads the query and result triples', () => {
    assert.deepEqual(parse(`${Q}&${R}`), {
      query: { studyInstanceUid: '1.2.3', seriesInstanceUid: '1.2.3.4', sopInstanceUid: '1.2.3.4.5' },
      result: { studyInstanceUid: '1.2.9', seriesInstanceUid: '1.2.9.4', sopInstanceUid: '1.2.9.4.5' },
    });
    assert.deepEqual(parse(R, true), { result: { studyInstanceUid: '1.2.9', seriesInstanceUid: '1.2.9.4', sopInstanceUid: '1.2.9.4.5' } });
  });

  it('refuses missing, repeated, malformed and unknown parameters', () => {
    problem(() => parse(Q), 'BAD_PARAM', /ResultStudyInstanceUID is required/);
    problem(() => parse(`${Q}&${R}&SOPInstanceUID=1.2`), 'BAD_PARAM', /SOPInstanceUID is required, once/);
    problem(() => parse(`${Q}&${R}`.replace('1.2.9.4.5', '1.2.x')), 'BAD_UID', /ResultSOPInstanceUID must be a DICOM UID/);
    problem(() => parse(`${Q}&${R}`.replace('1.2.3.4.5', `1.${'2'.repeat(70)}`)), 'BAD_UID', /SOPInstanceUID/);
    problem(() => parse(`${Q}&${R}&limit=3`), 'BAD_PARAM', /unknown parameter "limit"/);
    // An upload carries the query in its body: query UIDs would contradict it.
    problem(() => parse(`${Q}&${R}`, true), 'BAD_PARAM', /unknown parameter "StudyInstanceUID"/);
  });
});
