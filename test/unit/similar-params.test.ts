/**
 * /similar query parameters (core/similar/params.ts): defaults, bounds, strictness.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HttpProblem } from '../../core/errors.js';
import { DEFAULT_LIMIT, MAX_LIMIT, parseQueryUids, parseSimilarParams, pathUids } from '../../core/similar/params.js';

const qs = (s: string) => new URLSearchParams(s);
const problem = (fn: () => unknown): HttpProblem => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof HttpProblem, `expected an HttpProblem, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a problem');
};

describe('parseSimilarParams', () => {
  test('defaults: limit 10, instances, both exclusions on, no filters', () => {
    assert.deepEqual(parseSimilarParams(qs(''), { allowUids: false }), {
      limit: DEFAULT_LIMIT,
      groupBy: 'instance',
      excludeSameStudy: true,
      excludeSamePatient: true,
    });
  });

  test('every option parsed', () => {
    const p = parseSimilarParams(
      qs('limit=100&groupBy=study&excludeSameStudy=false&excludeSamePatient=0&Modality=MR,CT&Modality=MR&BodyPartExamined=BRAIN'),
      {
        allowUids: false,
      },
    );
    assert.deepEqual(p, {
      limit: MAX_LIMIT,
      groupBy: 'study',
      excludeSameStudy: false,
      excludeSamePatient: false,
      modality: ['MR', 'CT'],
      bodyPartExamined: ['BRAIN'],
    });
    assert.equal(
      parseSimilarParams(qs('excludeSameStudy=TRUE&excludeSamePatient=1'), {
        allowUids: false,
      }).excludeSameStudy,
      true,
    );
  });

  test('limit: integers 1…100 only', () => {
    for (const bad of ['0', '101', '-1', '1.5', '1e2', 'ten', '', '0x10', '99999999']) {
      const p = problem(() => parseSimilarParams(qs(`limit=${bad}`), { allowUids: false }));
      assert.equal(p.code, 'BAD_PARAM', bad);
      assert.equal(p.status, 400);
    }
    assert.equal(parseSimilarParams(qs('limit=1'), { allowUids: false }).limit, 1);
    assert.equal(parseSimilarParams(qs('limit=007'), { allowUids: false }).limit, 7);
  });

  test('limit: a configured maximum (CBMIR_SIMILAR_MAX_LIMIT, evaluation) raises the bound and still refuses above it', () => {
    assert.equal(parseSimilarParams(qs('limit=3064'), { allowUids: false, maxLimit: 10_000 }).limit, 3064);
    const p = problem(() => parseSimilarParams(qs('limit=10001'), { allowUids: false, maxLimit: 10_000 }));
    assert.equal(p.code, 'BAD_PARAM');
    assert.match(p.detail ?? '', /1 to 10000/);
  });

  test('limit: a configured maximum below the default bounds the default too (never more results than an explicit limit may ask)', () => {
    assert.equal(parseSimilarParams(qs(''), { allowUids: false, maxLimit: 5 }).limit, 5);
    assert.equal(problem(() => parseSimilarParams(qs(`limit=${DEFAULT_LIMIT}`), { allowUids: false, maxLimit: 5 })).code, 'BAD_PARAM');
    assert.equal(parseSimilarParams(qs(''), { allowUids: false, maxLimit: 50 }).limit, DEFAULT_LIMIT);
  });

  test('unknown and repeated parameters are refused, naming them', () => {
    const p = problem(() =>
      parseSimilarParams(qs('limit=5&excludeSamePatients=false'), {
        allowUids: false,
      }),
    );
    assert.match(p.detail ?? '', /excludeSamePatients/);
    // UIDs are options only where the form takes them.
    assert.equal(problem(() => parseSimilarParams(qs('SOPInstanceUID=1.2'), { allowUids: false })).code, 'BAD_PARAM');
    assert.doesNotThrow(() => parseSimilarParams(qs('SOPInstanceUID=1.2'), { allowUids: true }));
    assert.match(
      problem(() =>
        parseSimilarParams(qs('groupBy=study&groupBy=series'), {
          allowUids: false,
        }),
      ).detail ?? '',
      /2 times/,
    );
  });

  test('groupBy, booleans and code strings are checked', () => {
    assert.equal(problem(() => parseSimilarParams(qs('groupBy=patient'), { allowUids: false })).code, 'BAD_PARAM');
    assert.equal(
      problem(() =>
        parseSimilarParams(qs('excludeSameStudy=yes please'), {
          allowUids: false,
        }),
      ).code,
      'BAD_PARAM',
    );
    // Lower case is read as the code string it stands for ("Brain" as many archives write it).
    assert.deepEqual(parseSimilarParams(qs('BodyPartExamined=Brain&Modality=mr'), { allowUids: false }).bodyPartExamined, ['BRAIN']);
    assert.deepEqual(parseSimilarParams(qs('Modality=mr'), { allowUids: false }).modality, ['MR']);
    for (const bad of ['M<R', 'A'.repeat(17), 'MR,', "MR' OR 1=1"]) {
      assert.equal(
        problem(() =>
          parseSimilarParams(qs(`Modality=${encodeURIComponent(bad)}`), {
            allowUids: false,
          }),
        ).code,
        'BAD_PARAM',
        bad,
      );
    }
    const many = Array.from({ length: 17 }, (_, i) => `M${i}`).join(',');
    assert.equal(
      problem(() =>
        parseSimilarParams(qs(`BodyPartExamined=${many}`), {
          allowUids: false,
        }),
      ).code,
      'BAD_PARAM',
    );
  });
});

describe('UIDs', () => {
  test('query form: all three required and valid', () => {
    assert.deepEqual(parseQueryUids(qs('StudyInstanceUID=1.2&SeriesInstanceUID=1.2.3&SOPInstanceUID=1.2.3.4')), {
      studyInstanceUid: '1.2',
      seriesInstanceUid: '1.2.3',
      sopInstanceUid: '1.2.3.4',
    });
    assert.equal(problem(() => parseQueryUids(qs('StudyInstanceUID=1.2&SeriesInstanceUID=1.2.3'))).code, 'BAD_PARAM');
    assert.equal(problem(() => parseQueryUids(qs('StudyInstanceUID=1.2&SeriesInstanceUID=1.2.3&SOPInstanceUID='))).code, 'BAD_PARAM');
    for (const bad of ['1..2', '.1', '1.', 'a.b', '1.2 ', `1.${'2'.repeat(63)}`]) {
      const p = problem(() => parseQueryUids(qs(`StudyInstanceUID=${encodeURIComponent(bad)}&SeriesInstanceUID=1.2.3&SOPInstanceUID=1.3`)));
      assert.equal(p.code, 'BAD_UID', bad);
    }
  });

  test('path form: each segment a UID', () => {
    assert.deepEqual(pathUids('1', '2', '3'), {
      studyInstanceUid: '1',
      seriesInstanceUid: '2',
      sopInstanceUid: '3',
    });
    assert.equal(problem(() => pathUids('1', '2.x', '3')).code, 'BAD_UID');
  });
});
