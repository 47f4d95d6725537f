/**
 * The archive browser of gateway/ui (plain browser JS, imported here as ES modules): the study
 * filter as QIDO matching keys, lists that say when the archive holds more than they show,
 * series paged to the end, and the strip of a long series centred on the matched image.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { repoRoot } from '../helpers/fixtures.js';

type Pairs = Array<[string, string]>;
interface BrowseModule {
  studyMatch(field: string, text: string): Pairs;
  stripWindow(total: number, index: number, max: number): { start: number; end: number; before: number; after: number };
}
type Dataset = Record<string, { vr: string; Value: unknown[] }>;
interface ApiModule {
  listStudies(root: string, match?: Pairs, limit?: number): Promise<{ studies: Dataset[]; more: boolean }>;
  listInstances(
    root: string,
    study: string,
    series: string,
    opts?: { pageSize?: number; max?: number },
  ): Promise<{ instances: Dataset[]; complete: boolean }>;
  tagValue(ds: Dataset, tag: string): unknown;
}

let browse: BrowseModule;
let api: ApiModule;
let root = '';
/** The instances the fake PACS holds in the series, and the studies it holds. */
let seriesSize = 0;
let studyCount = 0;
/** A PACS that caps its pages below the limit asked for (0: no cap). */
let pageCap = 0;
const asked: URL[] = [];
const server = http.createServer((req, res) => {
  const u = new URL(req.url ?? '/', 'http://pacs');
  asked.push(u);
  const asked_ = Number(u.searchParams.get('limit') ?? Infinity);
  const limit = pageCap ? Math.min(pageCap, asked_) : asked_;
  const offset = Number(u.searchParams.get('offset') ?? 0);
  const total = u.pathname.endsWith('/instances') ? seriesSize : studyCount;
  const body: Dataset[] = [];
  for (let k = offset; k < Math.min(total, offset + limit); k++) {
    body.push(
      u.pathname.endsWith('/instances')
        ? { '00080018': { vr: 'UI', Value: [`1.2.3.${k + 1}`] }, '00200013': { vr: 'IS', Value: [k + 1] } }
        : { '0020000D': { vr: 'UI', Value: [`1.2.9.${k + 1}`] } },
    );
  }
  res.writeHead(200, { 'content-type': 'application/dicom+json' }).end(JSON.stringify(body));
});

const ui = (f: string) => pathToFileURL(path.join(repoRoot, 'gateway', 'ui', f)).href;

before(async () => {
  // Computed specifiers: the page's JS is not part of the TypeScript project.
  browse = (await import(ui('browse.js'))) as BrowseModule;
  api = (await import(ui('api.js'))) as ApiModule;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  root = `http://127.0.0.1:${(server.address() as AddressInfo).port}/dicom-web`;
});
after(() => server.close());

describe('ui: the study filter as QIDO matching keys', () => {
  it('finds a text anywhere in the value; a name word by word; typed wildcards as they are', () => {
    assert.deepEqual(browse.studyMatch('PatientName', '  '), []);
    assert.deepEqual(browse.studyMatch('PatientName', 'doe'), [['PatientName', '*doe*']]);
    assert.deepEqual(browse.studyMatch('PatientName', ' Doe,  Jane '), [['PatientName', '*Doe*Jane*']]);
    assert.deepEqual(browse.studyMatch('PatientName', 'DOE^J*'), [['PatientName', 'DOE^J*']]);
    assert.deepEqual(browse.studyMatch('PatientID', 'A 12'), [['PatientID', '*A 12*']]);
    assert.deepEqual(browse.studyMatch('AccessionNumber', 'ACC?1'), [['AccessionNumber', 'ACC?1']]);
    // "\" would split the value into several (DICOM value multiplicity).
    assert.deepEqual(browse.studyMatch('PatientID', 'a\\b'), [['PatientID', 'a?b']]);
    assert.throws(() => browse.studyMatch('StudyInstanceUID', '1.2'), /Unknown filter field/);
  });

  it('reads a day, a month, a year or a range as DICOM date range matching', () => {
    const date = (t: string) => browse.studyMatch('StudyDate', t)[0]![1];
    assert.equal(date('2025-01-31'), '20250131');
    assert.equal(date('20250131'), '20250131');
    assert.equal(date('2024-02'), '20240201-20240229');
    assert.equal(date('2025'), '20250101-20251231');
    assert.equal(date('2025-01 .. 2025-03'), '20250101-20250331');
    assert.equal(date('2025-01-15 - 2025-02-01'), '20250115-20250201');
    assert.equal(date('2024 to 2025-06'), '20240101-20250630');
    assert.equal(date('20250101-20250131'), '20250101-20250131');
    assert.equal(date('-20250131'), '-20250131');
    assert.equal(date('2025-03 ..'), '20250301-');
    for (const bad of ['yesterday', '2025-13', '2025-02-30', '2025-03 .. 2025-01', '..', '2025-1-5']) {
      assert.throws(() => browse.studyMatch('StudyDate', bad), /Study date: write 2025-01-31/, bad);
    }
  });

  it('sends the filter with the study QIDO, and says when the archive holds more than the list shows', async () => {
    studyCount = 3;
    asked.length = 0;
    const few = await api.listStudies(root, [['PatientName', '*doe*']], 5);
    assert.equal(asked[0]!.pathname, '/dicom-web/studies');
    assert.equal(asked[0]!.searchParams.get('PatientName'), '*doe*');
    assert.deepEqual([few.studies.length, few.more], [3, false]);
    studyCount = 5;
    assert.equal((await api.listStudies(root, [], 5)).more, false, 'exactly the limit: nothing left out');
    studyCount = 250;
    const many = await api.listStudies(root, [], 200);
    assert.deepEqual([many.studies.length, many.more], [200, true]);
  });
});

describe('ui: a series is listed to its end, page by page', () => {
  const ids = (r: { instances: Dataset[] }) => r.instances.map((d) => api.tagValue(d, '00080018'));

  it('pages with offset until an empty page, and keeps every instance, also from a PACS that caps its pages', async () => {
    seriesSize = 2345;
    asked.length = 0;
    const r = await api.listInstances(root, '1.2', '1.2.3');
    assert.equal(r.complete, true);
    assert.equal(r.instances.length, 2345);
    assert.equal(new Set(ids(r)).size, 2345);
    assert.deepEqual(
      asked.map((u) => [u.searchParams.get('offset'), u.searchParams.get('limit')]),
      [
        ['0', '1000'],
        ['1000', '1000'],
        ['2000', '1000'],
        ['2345', '1000'],
      ],
    );
    assert.ok(asked.every((u) => u.pathname === '/dicom-web/studies/1.2/series/1.2.3/instances'));
    pageCap = 100; // a short page is not the end of the series
    try {
      const capped = await api.listInstances(root, '1.2', '1.2.3');
      assert.deepEqual([capped.instances.length, capped.complete], [2345, true]);
    } finally {
      pageCap = 0;
    }
  });

  it('stops at the bound and says the series was cut (and not when it holds exactly the bound)', async () => {
    seriesSize = 12;
    assert.deepEqual(
      await api.listInstances(root, '1.2', '1.2.3', { pageSize: 5, max: 12 }).then((r) => [r.instances.length, r.complete]),
      [12, true],
    );
    seriesSize = 40;
    asked.length = 0;
    const cut = await api.listInstances(root, '1.2', '1.2.3', { pageSize: 5, max: 12 });
    assert.deepEqual([cut.instances.length, cut.complete], [12, false]);
    assert.deepEqual(
      asked.map((u) => u.searchParams.get('limit')),
      ['5', '5', '3'],
      'one more than the bound is asked for, no further',
    );
  });
});

describe('ui: the strip of a long series', () => {
  it('shows a short series whole', () => {
    assert.deepEqual(browse.stripWindow(36, 30, 200), { start: 0, end: 36, before: 0, after: 0 });
  });

  it('centres the window on the matched image, as far as the ends allow', () => {
    assert.deepEqual(browse.stripWindow(1000, 700, 200), { start: 600, end: 800, before: 600, after: 200 });
    assert.deepEqual(browse.stripWindow(1000, 20, 200), { start: 0, end: 200, before: 0, after: 800 });
    assert.deepEqual(browse.stripWindow(1000, 990, 200), { start: 800, end: 1000, before: 800, after: 0 });
    assert.deepEqual(browse.stripWindow(1000, -1, 200), { start: 0, end: 200, before: 0, after: 800 });
    for (const index of [0, 99, 100, 500, 899, 900, 999]) {
      const w = browse.stripWindow(1000, index, 200);
      assert.ok(w.start <= index && index < w.end && w.end - w.start === 200, `${index}: ${JSON.stringify(w)}`);
    }
  });
});
