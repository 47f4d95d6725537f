/**
 * /similar result shaping: the score, grouping by series/study, the JSON and DICOM JSON
 * renderings, Accept negotiation and upload body parsing — pure functions, real inputs.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { HttpProblem } from '../../core/errors.js';
import type { KnnHit, VectorDoc } from '../../core/index/types.js';
import { Grouper, MAX_MATCHES } from '../../core/similar/groups.js';
import { scoreFromDistance } from '../../core/similar/score.js';
import { CBMIR_TAGS, renderDicomJson, renderJson, urlsFor } from '../../gateway/similar-render.js';
import { extractDicom } from '../../gateway/similar-upload.js';
import { wantsDicomJson } from '../../gateway/similar.js';
import { dicomFixturesDir } from '../helpers/fixtures.js';

function hit(sop: string, series: string, study: string, distance: number, extra: Partial<VectorDoc> = {}): KnnHit {
  return {
    distance,
    doc: {
      sopInstanceUid: sop,
      seriesInstanceUid: series,
      studyInstanceUid: study,
      modelVersion: 'v1',
      indexedAt: '2025-01-01T00:00:00Z',
      vector: [],
      ...extra,
    },
  };
}

describe('score', () => {
  test('1 − d²/4: identical 1, orthogonal unit vectors 0.5, opposite 0, clamped, monotone', () => {
    assert.equal(scoreFromDistance(0), 1);
    assert.ok(Math.abs(scoreFromDistance(Math.SQRT2) - 0.5) < 1e-12);
    assert.equal(scoreFromDistance(2), 0);
    assert.equal(scoreFromDistance(2.0000001), 0);
    assert.equal(scoreFromDistance(Number.NaN), 0);
    // For unit vectors a, b: score = (1 + cos θ)/2.
    const a = [0.6, 0.8];
    const b = [1, 0];
    const d = Math.hypot(a[0]! - b[0]!, a[1]! - b[1]!);
    assert.ok(Math.abs(scoreFromDistance(d) - (1 + 0.6) / 2) < 1e-12);
    assert.ok(scoreFromDistance(0.3) > scoreFromDistance(0.31));
  });
});

describe('Grouper', () => {
  const hits = [
    hit('1.1.1.1', '1.1.1', '1.1', 0.1),
    hit('1.2.1.1', '1.2.1', '1.2', 0.2),
    hit('1.1.1.2', '1.1.1', '1.1', 0.3),
    hit('1.1.2.1', '1.1.2', '1.1', 0.4),
    hit('1.3.1.1', '1.3.1', '1.3', 0.5),
  ];

  test('study: ranked by the best instance, matches nearest first, counted', () => {
    const g = new Grouper('study');
    for (const h of hits) g.add(h);
    const top = g.top(10);
    assert.deepEqual(
      top.map((x) => [x.key, x.best.distance, x.matchedCount, x.matches.map((m) => m.doc.sopInstanceUid)]),
      [
        ['1.1', 0.1, 3, ['1.1.1.1', '1.1.1.2', '1.1.2.1']],
        ['1.2', 0.2, 1, ['1.2.1.1']],
        ['1.3', 0.5, 1, ['1.3.1.1']],
      ],
    );
    assert.deepEqual(
      g.top(2).map((x) => x.key),
      ['1.1', '1.2'],
    );
  });

  test('series and instance keys; an instance seen twice counts once', () => {
    const s = new Grouper('series');
    for (const h of [...hits, hits[0]!]) s.add(h);
    assert.deepEqual(s.keys(), ['1.1.1', '1.2.1', '1.1.2', '1.3.1']);
    assert.equal(s.top(1)[0]!.matchedCount, 2);
    const i = new Grouper('instance');
    for (const h of hits) i.add(h);
    assert.equal(i.size, 5);
  });

  test('at most MAX_MATCHES listed, all counted', () => {
    const g = new Grouper('study');
    for (let k = 0; k < MAX_MATCHES + 5; k++) g.add(hit(`1.9.1.${k + 1}`, '1.9.1', '1.9', k / 100));
    const [only] = g.top(1);
    assert.equal(only!.matches.length, MAX_MATCHES);
    assert.equal(only!.matchedCount, MAX_MATCHES + 5);
  });
});

describe('rendering', () => {
  const base = 'https://gw.example/cbmir';
  const g = new Grouper('instance');
  g.add(
    hit('1.2.3.4', '1.2.3', '1.2', 0.5, {
      modality: 'MR',
      bodyPartExamined: 'BRAIN',
      label: 'glioma',
      sopClassUid: '1.2.840.10008.5.1.4.1.1.4',
      patientKey: 'k',
    }),
  );
  const groups = g.top(10);
  const q = {
    vector: [],
    source: 'index' as const,
    modelVersion: 'v1',
    studyInstanceUid: '9.9',
    seriesInstanceUid: '9.9.9',
    sopInstanceUid: '9.9.9.9',
    patientKey: 'secret-key',
  };
  const params = {
    limit: 10,
    groupBy: 'instance' as const,
    excludeSameStudy: true,
    excludeSamePatient: true,
  };

  test('JSON: rank, distance, score, UIDs, URLs under the public base, label; no patient key', () => {
    const out = renderJson(q, params, groups, base) as {
      results: Record<string, unknown>[];
      query: Record<string, unknown>;
    };
    assert.deepEqual(out.results[0], {
      rank: 1,
      distance: 0.5,
      score: 0.9375,
      studyInstanceUid: '1.2',
      seriesInstanceUid: '1.2.3',
      sopInstanceUid: '1.2.3.4',
      modality: 'MR',
      bodyPartExamined: 'BRAIN',
      label: 'glioma',
      urls: {
        study: `${base}/dicom-web/studies/1.2`,
        series: `${base}/dicom-web/studies/1.2/series/1.2.3`,
        instance: `${base}/dicom-web/studies/1.2/series/1.2.3/instances/1.2.3.4`,
        thumbnail: `${base}/dicom-web/studies/1.2/series/1.2.3/instances/1.2.3.4/thumbnail`,
        similar: `${base}/studies/1.2/series/1.2.3/instances/1.2.3.4/similar`,
      },
    });
    assert.ok(!JSON.stringify(out).includes('secret-key'));
    assert.ok(!JSON.stringify(out).includes('"k"'));
  });

  test("a multi-frame result's thumbnail is the frame that was embedded, not the PACS's first", () => {
    assert.equal(
      urlsFor(base, '1.2', '1.2.3', '1.2.3.4', 48).thumbnail,
      `${base}/dicom-web/studies/1.2/series/1.2.3/instances/1.2.3.4/frames/48/thumbnail`,
    );
    assert.equal(
      urlsFor(base, '1.2', '1.2.3', '1.2.3.4', 1).thumbnail,
      `${base}/dicom-web/studies/1.2/series/1.2.3/instances/1.2.3.4/thumbnail`,
    );
    const out = renderJson({ ...q, frame: 48 }, params, groups, base) as { query: Record<string, unknown> };
    assert.equal(out.query.frame, 48);
  });

  test('DICOM JSON: standard attributes + CBMIR private block, tag order', () => {
    const [ds] = renderDicomJson('instance', groups, base);
    assert.deepEqual(Object.keys(ds!), [...Object.keys(ds!)].sort());
    assert.deepEqual(ds!['00080016'], {
      vr: 'UI',
      Value: ['1.2.840.10008.5.1.4.1.1.4'],
    });
    assert.deepEqual(ds!['00081190'], {
      vr: 'UR',
      Value: [`${base}/dicom-web/studies/1.2/series/1.2.3/instances/1.2.3.4`],
    });
    assert.deepEqual(ds![CBMIR_TAGS.creator], { vr: 'LO', Value: ['CBMIR'] });
    assert.deepEqual(ds![CBMIR_TAGS.rank], { vr: 'IS', Value: [1] });
    assert.deepEqual(ds![CBMIR_TAGS.score], { vr: 'DS', Value: [0.9375] });
    assert.deepEqual(ds![CBMIR_TAGS.distance], { vr: 'DS', Value: [0.5] });
    assert.deepEqual(ds![CBMIR_TAGS.label], { vr: 'LO', Value: ['glioma'] });
    // DS and IS values must fit their VRs (16 and 12 characters).
    assert.ok(String(ds![CBMIR_TAGS.score]!.Value![0]).length <= 16);
  });

  test('DICOM JSON by study: ModalitiesInStudy lists every modality among the matches', () => {
    const g = new Grouper('study');
    for (const h of [
      hit('2.1.1.1', '2.1.1', '2.1', 0.1, { modality: 'PT' }),
      hit('2.1.2.1', '2.1.2', '2.1', 0.2, { modality: 'CT' }),
      hit('2.1.2.2', '2.1.2', '2.1', 0.3, { modality: 'CT' }),
    ])
      g.add(h);
    const [ds] = renderDicomJson('study', g.top(1), base);
    assert.deepEqual(ds!['00080061'], { vr: 'CS', Value: ['CT', 'PT'] });
  });

  test('Accept: dicom+json only when preferred over JSON', () => {
    assert.equal(wantsDicomJson(undefined), false);
    assert.equal(wantsDicomJson('*/*'), false);
    assert.equal(wantsDicomJson('application/json'), false);
    assert.equal(wantsDicomJson('application/dicom+json'), true);
    assert.equal(wantsDicomJson('application/dicom+json, application/json;q=0.5'), true);
    assert.equal(wantsDicomJson('application/json, application/dicom+json;q=0.9'), false);
    assert.equal(wantsDicomJson('application/dicom+json;q=0'), false);
  });
});

describe('upload body', () => {
  const dcm = readFileSync(path.join(dicomFixturesDir, 'transfer-syntax', 'deflate_image_dfl.dcm'));
  const limit = 64 * 1024 * 1024;

  test('application/dicom and multipart/related give the same bytes', () => {
    assert.equal(Buffer.compare(Buffer.from(extractDicom('application/dicom', dcm, limit)), dcm), 0);
    const b = 'xyz-boundary';
    const body = Buffer.concat([Buffer.from(`--${b}\r\nContent-Type: application/dicom\r\n\r\n`), dcm, Buffer.from(`\r\n--${b}--\r\n`)]);
    const got = extractDicom(`multipart/related; type="application/dicom"; boundary="${b}"`, body, limit);
    assert.equal(Buffer.compare(Buffer.from(got), dcm), 0);
  });

  test('refusals: media type 415, no boundary / no part 400, not Part 10 422', () => {
    const code = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        assert.ok(err instanceof HttpProblem);
        return err.code;
      }
      return 'none';
    };
    assert.equal(
      code(() => extractDicom('image/png', dcm, limit)),
      'UNSUPPORTED_MEDIA_TYPE',
    );
    assert.equal(
      code(() => extractDicom(undefined, dcm, limit)),
      'UNSUPPORTED_MEDIA_TYPE',
    );
    assert.equal(
      code(() => extractDicom('multipart/related; type="image/jpeg"; boundary=x', dcm, limit)),
      'UNSUPPORTED_MEDIA_TYPE',
    );
    assert.equal(
      code(() => extractDicom('multipart/related; type="application/dicom"', dcm, limit)),
      'BAD_PARAM',
    );
    assert.equal(
      code(() => extractDicom('multipart/related; boundary=x', Buffer.from('--x--\r\n'), limit)),
      'BAD_PARAM',
    );
    assert.equal(
      code(() => extractDicom('application/dicom', Buffer.from('not dicom at all'), limit)),
      'NOT_EMBEDDABLE',
    );
  });
});
