/**
 * `cbmir load` without a PACS: labels.csv parsing and checks, the deterministic
 * study/series/instance plan, filters, the converter in --out and --dry-run modes on the
 * repo's real samples, the STOW response reader on a real Orthanc answer, and the CLI
 * as a user runs it (exit codes, JSON summary).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { decodeDicom } from '../../core/dicom/decode.js';
import { deterministicUid } from '../../core/dicom/uids.js';
import {
  DatasetError,
  parseLabelsCsv,
  patientFromFile,
  planDataset,
  readDataset,
  selectInstances,
  splitCsvLine,
  unmatchedFilters,
} from '../../workers/load/dataset.js';
import { authorizationHeader, multipartBody, parseStowResponse } from '../../workers/load/stow.js';
import { runLoad } from '../../workers/load.js';
import { figshareSampleDir, ixiSampleDir, repoRoot } from '../helpers/fixtures.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'cbmir-load-test-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('labels.csv', () => {
  it('splits quoted fields', () => {
    assert.deepEqual(splitCsvLine('a,"b,c",d'), ['a', 'b,c', 'd']);
    assert.deepEqual(splitCsvLine('"say ""hi""",2'), ['say "hi"', '2']);
  });

  it('rejects rows that cannot be loaded, with line numbers and reasons', () => {
    const csv = [
      'file,label,class_name,patient_id,fold',
      'images/1.jpg,1,meningioma,P1,5',
      '../etc/passwd.jpg,1,meningioma,P1,5',
      '/abs/2.jpg,1,meningioma,P1,5',
      'images/3.gif,1,meningioma,P1,5',
      'images/4.jpg,x,meningioma,P1,5',
      'images/5.jpg,1,,P1,5',
      'images/6.jpg,1,glioma,P\\2,5',
      'images/7.jpg,1,glioma,P2,one',
      '',
    ].join('\n');
    const { rows, rejected } = parseLabelsCsv(csv);
    assert.deepEqual(rows.map((r) => r.file), ['images/1.jpg']);
    assert.deepEqual(
      rejected.map((r) => r.line),
      [3, 4, 5, 6, 7, 8, 9],
    );
    assert.match(rejected[0]!.reason, /relative path inside/);
    assert.match(rejected[3]!.reason, /label must be an integer/);
  });

  it('needs file and class_name columns, and makes each row its own patient without patient_id', () => {
    assert.throws(() => parseLabelsCsv('name,label\nx.jpg,1\n'), DatasetError);
    const { rows } = parseLabelsCsv('file,label,class_name\nimages/a.png,0,normal\nimages/b.png,0,normal\n');
    assert.deepEqual(
      rows.map((r) => [r.patientId, r.fold, r.label]),
      [
        ['images/a', undefined, 0],
        ['images/b', undefined, 0],
      ],
    );
  });

  it('gives rows without patient_id that share a file name different patients and studies', () => {
    const { rows } = parseLabelsCsv('file,label,class_name\nglioma/1.png,0,glioma\nmeningioma/1.png,1,meningioma\n');
    const [g, m] = planDataset('ds', '.', rows).instances;
    assert.notEqual(g!.patientId, m!.patientId);
    assert.notEqual(g!.studyInstanceUid, m!.studyInstanceUid);
    // A path too long for a Patient ID (LO, 64 characters) keeps its start and a hash of the whole.
    const long = patientFromFile(`${'d/'.repeat(40)}x.png`);
    assert.equal(long.length, 64);
    assert.notEqual(long, patientFromFile(`${'d/'.repeat(40)}y.png`));
  });

  it('reads one image written two ways as one image, with the UIDs of its normal spelling', () => {
    const csv = [
      'file,label,class_name,patient_id',
      'glioma/1.png,0,glioma,P',
      './glioma/1.png,0,glioma,P',
      'a//b.png,0,glioma,P',
      'a\\b.png,0,glioma,P',
      '.\\glioma\\2.png,0,glioma,P',
      '',
    ].join('\n');
    const { rows, rejected } = parseLabelsCsv(csv);
    assert.deepEqual(rejected, []);
    const plan = planDataset('ds', '.', rows);
    assert.deepEqual(
      plan.instances.map((i) => i.file),
      ['glioma/1.png', 'a/b.png', 'glioma/2.png'],
    );
    assert.deepEqual(
      plan.rejected.map((r) => [r.line, r.file, r.reason]),
      [
        [3, 'glioma/1.png', 'duplicate file row (the same image as line 2)'],
        [5, 'a/b.png', 'duplicate file row (the same image as line 4)'],
      ],
    );
    assert.equal(plan.instances[0]!.sopInstanceUid, deterministicUid('instance', 'ds', 'glioma/1.png'));
    // Folding a/../b into b would hide the '..' the row was refused for.
    assert.match(
      parseLabelsCsv('file,class_name\na/../../b.png,x\nC:\\data\\c.png,x\n')
        .rejected.map((r) => r.reason)
        .join(),
      /relative path inside.*relative path inside/,
    );
  });
});

describe('plan', () => {
  it('makes one study per patient and one series per (patient, class), numbered in CSV order', async () => {
    const plan = await readDataset(figshareSampleDir);
    assert.equal(plan.dataset, 'figshare-cheng', 'dataset.json names the dataset the sample comes from');
    assert.equal(plan.instances.length, 36);
    assert.equal(plan.rejected.length, 0);
    const studies = new Set(plan.instances.map((i) => i.studyInstanceUid));
    const series = new Set(plan.instances.map((i) => i.seriesInstanceUid));
    assert.equal(studies.size, 9);
    assert.equal(series.size, 9);
    const p = plan.instances.filter((i) => i.patientId === '100360');
    assert.deepEqual(p.map((i) => i.instanceNumber), [1, 2, 3, 4]);
    assert.equal(p[0]!.studyInstanceUid, deterministicUid('study', 'figshare-cheng', '100360'));
    assert.equal(p[0]!.sopInstanceUid, deterministicUid('instance', 'figshare-cheng', 'images/1.jpg'));
    assert.equal(new Set(plan.instances.map((i) => i.sopInstanceUid)).size, 36);
  });

  it('gives a patient with two classes two series in one study', () => {
    const { rows } = parseLabelsCsv('file,label,class_name,patient_id\na.jpg,1,x,P\nb.jpg,2,y,P\nc.jpg,1,x,P\n');
    const plan = planDataset('ds', '.', rows);
    assert.equal(new Set(plan.instances.map((i) => i.studyInstanceUid)).size, 1);
    assert.deepEqual(plan.instances.map((i) => [i.seriesNumber, i.instanceNumber]), [[1, 1], [2, 1], [1, 2]]);
  });

  it('filters without changing UIDs or numbers', async () => {
    const plan = await readDataset(figshareSampleDir);
    const fold1 = selectInstances(plan, { folds: new Set([1]) });
    assert.ok(fold1.length > 0 && fold1.every((i) => i.fold === 1));
    const one = selectInstances(plan, { patients: new Set(['103148']), limit: 2 });
    assert.equal(one.length, 2);
    const full = plan.instances.filter((i) => i.patientId === '103148');
    assert.deepEqual(one, full.slice(0, 2));
    assert.equal(selectInstances(plan, { classes: new Set(['glioma']) }).length, 12);
  });

  it('names the filter values that match no row', async () => {
    const plan = await readDataset(figshareSampleDir);
    assert.deepEqual(
      unmatchedFilters(plan, { classes: new Set(['Glioma', 'glioma']), folds: new Set([1, 9]), patients: new Set(['100360', 'nobody']) }),
      [
        { filter: '--patients', values: ['nobody'], known: [...new Set(plan.instances.map((i) => i.patientId))].sort() },
        { filter: '--folds', values: ['9'], known: ['1', '5'] },
        { filter: '--classes', values: ['Glioma'], known: ['glioma', 'meningioma', 'pituitary'] },
      ],
    );
    assert.deepEqual(unmatchedFilters(plan, { classes: new Set(['glioma']), limit: 1 }), []);
  });
});

describe('runLoad without a PACS', () => {
  it('--out writes decodable MR files with the labels, per class counts in the summary', async () => {
    const out = path.join(tmp, 'out');
    const s = await runLoad({ dir: figshareSampleDir, mode: 'write', outDir: out, studyDate: '20250101', filters: { folds: new Set([1]) }, batchSize: 3, concurrency: 2 });
    assert.equal(s.failed, 0);
    assert.equal(s.selected, s.stored);
    assert.equal(s.byClass.glioma!.stored, 8);
    const files = readdirSync(path.join(out, 'figshare-cheng'), { recursive: true }).filter((f) => String(f).endsWith('.dcm'));
    assert.equal(files.length, s.selected);
    const labels = readFileSync(path.join(figshareSampleDir, 'labels.csv'), 'utf8');
    for (const f of files.slice(0, 4)) {
      const r = await decodeDicom(readFileSync(path.join(out, 'figshare-cheng', String(f))));
      assert.ok(r.ok);
      if (!r.ok) continue;
      assert.equal(r.meta.label?.fold, 1);
      assert.ok(labels.includes(`${r.meta.label?.sourceFile},${r.meta.label?.code},${r.meta.label?.className},`));
    }
  });

  it('--out gives every image its own file: same names in two folders, or with two extensions', async () => {
    const dir = path.join(tmp, 'same-names');
    for (const d of ['t1', 't2', '.']) mkdirSync(path.join(dir, d), { recursive: true });
    copyFileSync(path.join(ixiSampleDir, 'images/IXI012_1.png'), path.join(dir, 't1/slice_001.png'));
    copyFileSync(path.join(ixiSampleDir, 'images/IXI014_1.png'), path.join(dir, 't2/slice_001.png'));
    copyFileSync(path.join(ixiSampleDir, 'images/IXI012_1.png'), path.join(dir, 'a.png'));
    copyFileSync(path.join(figshareSampleDir, 'images/1.jpg'), path.join(dir, 'a.jpg'));
    writeFileSync(
      path.join(dir, 'labels.csv'),
      'file,label,class_name,patient_id\nt1/slice_001.png,0,normal,P1\nt2/slice_001.png,0,normal,P1\na.png,0,normal,P2\na.jpg,0,normal,P2\n',
    );
    const out = path.join(tmp, 'same-names-out');
    const s = await runLoad({ dir, mode: 'write', outDir: out, studyDate: '20250101' });
    assert.deepEqual([s.stored, s.failed], [4, 0]);
    const files = readdirSync(out, { recursive: true }).filter((f) => String(f).endsWith('.dcm'));
    assert.equal(files.length, 4);
    const sources = await Promise.all(
      files.map(async (f) => {
        const r = await decodeDicom(readFileSync(path.join(out, String(f))));
        return r.ok ? r.meta.label?.sourceFile : undefined;
      }),
    );
    assert.deepEqual(sources.sort(), ['a.jpg', 'a.png', 't1/slice_001.png', 't2/slice_001.png']);
    // A re-run into the same folder replaces its own files (same instances, same names).
    const again = await runLoad({ dir, mode: 'write', outDir: out, studyDate: '20250101' });
    assert.deepEqual([again.stored, again.failed], [4, 0]);
    assert.equal(readdirSync(out, { recursive: true }).filter((f) => String(f).endsWith('.dcm')).length, 4);
  });

  it('lists up to 100 failures in the summary', async () => {
    const dir = path.join(tmp, 'many-missing');
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      path.join(dir, 'labels.csv'),
      ['file,label,class_name', ...Array.from({ length: 120 }, (_, k) => `m${k}.png,0,normal`), ''].join('\n'),
    );
    const s = await runLoad({ dir, mode: 'dry-run' });
    assert.deepEqual([s.failed, s.failures.length], [120, 100]);
  });

  it('--dry-run converts everything and reports images it cannot read', async () => {
    const ok = await runLoad({ dir: ixiSampleDir, mode: 'dry-run' });
    assert.deepEqual([ok.selected, ok.converted, ok.failed, ok.sent], [6, 6, 0, 0]);
    // A dataset whose CSV names a missing image: that row fails with the reason, the rest load.
    const broken = path.join(tmp, 'broken');
    const { mkdirSync, writeFileSync, copyFileSync } = await import('node:fs');
    mkdirSync(path.join(broken, 'images'), { recursive: true });
    copyFileSync(path.join(ixiSampleDir, 'images/IXI012_1.png'), path.join(broken, 'images/IXI012_1.png'));
    writeFileSync(path.join(broken, 'labels.csv'), 'file,label,class_name,patient_id,fold\nimages/IXI012_1.png,0,normal,IXI012,1\nimages/missing.png,0,normal,IXI999,1\n');
    const s = await runLoad({ dir: broken, mode: 'dry-run' });
    assert.deepEqual([s.converted, s.failed], [1, 1]);
    assert.match(s.failures[0]!.reason, /cannot read image: ENOENT/);
  });
});

describe('STOW helpers', () => {
  // Orthanc 1.10's real answer to a STOW of one good instance and one garbage part: HTTP 400,
  // no Content-Type, the stored instance listed, the garbage part not (it has no UID).
  const orthancPartial = JSON.stringify({
    '00080005': { Value: ['ISO_IR 100'], vr: 'CS' },
    '00081190': { Value: ['http://127.0.0.1:18942/dicom-web/studies/2.25.259859262928794297619935657249654583434'], vr: 'UR' },
    '00081198': { vr: 'SQ' },
    '00081199': {
      Value: [
        {
          '00081150': { Value: ['1.2.840.10008.5.1.4.1.1.4'], vr: 'UI' },
          '00081155': { Value: ['2.25.36963778562709311639536494286158426744'], vr: 'UI' },
        },
      ],
      vr: 'SQ',
    },
  });

  it('reads stored and failed instances from the answer, whatever the status', () => {
    const good = '2.25.36963778562709311639536494286158426744';
    const { stored, failed } = parseStowResponse(orthancPartial, [good, '2.25.1'], 400);
    assert.deepEqual([...stored], [good]);
    assert.match(failed.get('2.25.1')!, /not listed in the STOW response \(HTTP 400\)/);
    const withFailure = JSON.stringify({ '00081198': { vr: 'SQ', Value: [{ '00081155': { vr: 'UI', Value: ['2.25.2'] }, '00081197': { vr: 'US', Value: [43264] } }] } });
    assert.match(parseStowResponse(withFailure, ['2.25.2'], 409).failed.get('2.25.2')!, /does not match SOP class/);
    assert.deepEqual([...parseStowResponse('', ['2.25.3'], 200).stored], ['2.25.3'], 'a bare 200 means stored');
  });

  it('builds a multipart/related body with one application/dicom part per instance', () => {
    const body = multipartBody([{ sopInstanceUid: '1', bytes: Buffer.from('AAA') }, { sopInstanceUid: '2', bytes: Buffer.from('BB') }], 'b0');
    assert.equal(body.toString('latin1'), '--b0\r\nContent-Type: application/dicom\r\n\r\nAAA\r\n--b0\r\nContent-Type: application/dicom\r\n\r\nBB\r\n--b0--\r\n');
  });

  it('turns --auth values into an Authorization header', () => {
    assert.equal(authorizationHeader('alice:s3cret'), `Basic ${Buffer.from('alice:s3cret').toString('base64')}`);
    assert.equal(authorizationHeader('Bearer abc.def'), 'Bearer abc.def');
    assert.equal(authorizationHeader(undefined), undefined);
    assert.throws(() => authorizationHeader('justatoken'), /user:password/);
  });
});

describe('the cbmir CLI', () => {
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'cbmir.js'), ...args], { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 });

  it('loads the IXI sample to files and prints a JSON summary', () => {
    const r = cli('load', ixiSampleDir, '--out', path.join(tmp, 'cli-out'), '--json', '--study-date', '20250102');
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout.trim().split('\n').pop()!);
    assert.deepEqual([s.dataset, s.mode, s.selected, s.stored, s.failed], ['ixi-normal', 'write', 6, 6, 0]);
  });

  it('exits 2 with a message on bad usage, 1 when images fail to send', () => {
    const bad = cli('load', ixiSampleDir, '--folds', 'one');
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /folds must be a comma-separated list/);
    const noCsv = cli('load', tmp, '--dry-run');
    assert.equal(noCsv.status, 2);
    assert.match(noCsv.stderr, /cannot read .*labels\.csv/);
    // A --url that is not an http(s) DICOMweb root, or that carries a login (printed in the summary): usage errors naming --url.
    for (const [url, why] of [
      ['ftp://127.0.0.1/dicom-web', /--url must be an http\(s\)/],
      ['not a url', /--url is not a URL/],
      ['http://admin:s3cret@127.0.0.1:9/dicom-web', /--url must not carry a user or password/],
    ] as const) {
      const r = cli('load', ixiSampleDir, '--url', url, '--limit', '1');
      assert.equal(r.status, 2, `${url}: ${r.stderr}`);
      assert.match(r.stderr, why);
      assert.doesNotMatch(r.stdout + r.stderr, /s3cret/);
    }
    const noModel = spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'cbmir.js'), 'backfill'], {
      cwd: repoRoot,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, CBMIR_MODEL: path.join(tmp, 'no-such-manifest.json') },
    });
    assert.equal(noModel.status, 2, noModel.stderr);
    assert.match(noModel.stderr, /cbmir backfill: model not found/);
    const stalled = cli('worker', '--stalled-interval-ms', 'abc');
    assert.equal(stalled.status, 2);
    assert.match(stalled.stderr, /--stalled-interval-ms must be/);
    // Nothing listens on port 9 (discard) on loopback: every batch fails, with the reason.
    const down = cli('load', ixiSampleDir, '--url', 'http://127.0.0.1:9/dicom-web', '--retries', '0', '--json', '--limit', '2');
    assert.equal(down.status, 1);
    const s = JSON.parse(down.stdout.trim().split('\n').pop()!);
    assert.equal(s.failed, 2);
    assert.match(s.failures[0].reason, /network error: ECONNREFUSED/);
  });

  it('names the labels.csv rows it rejected and exits 1: those images were not loaded', () => {
    const dir = path.join(tmp, 'with-bad-rows');
    mkdirSync(path.join(dir, 'images'), { recursive: true });
    copyFileSync(path.join(figshareSampleDir, 'images', '1.jpg'), path.join(dir, 'images', '1.jpg'));
    writeFileSync(
      path.join(dir, 'labels.csv'),
      ['file,label,class_name,patient_id,fold', 'images/1.jpg,1,meningioma,100360,5', 'images/missing.jpg,x,glioma,P2,1', ''].join('\n'),
    );
    const r = cli('load', dir, '--dry-run');
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stdout, /1 labels\.csv rows rejected/);
    assert.match(r.stdout, /line 3 \(images\/missing\.jpg\): label must be an integer/);
    const j = cli('load', dir, '--dry-run', '--json');
    assert.equal(j.status, 1);
    const s = JSON.parse(j.stdout.trim().split('\n').pop()!);
    assert.deepEqual([s.converted, s.rejectedRows, s.rejected[0].line], [1, 1, 3]);
  });

  it('exits 1 naming the values when the filters select nothing', () => {
    const wrongCase = cli('load', figshareSampleDir, '--dry-run', '--classes', 'Glioma');
    assert.equal(wrongCase.status, 1, wrongCase.stderr);
    assert.match(
      wrongCase.stderr,
      /the filters select none of the 36 images: nothing in labels\.csv matches --classes Glioma \(labels\.csv has: glioma, meningioma, pituitary\)/,
    );
    const noFold = cli('load', figshareSampleDir, '--dry-run', '--json', '--folds', '9', '--patients', '100360');
    assert.equal(noFold.status, 1, noFold.stderr);
    assert.match(noFold.stderr, /--folds 9 \(labels\.csv has: 1, 5\)/);
    assert.doesNotMatch(noFold.stderr, /--patients/, 'patient 100360 exists');
    assert.deepEqual(JSON.parse(noFold.stdout.trim().split('\n').pop()!).unmatched, [
      { filter: '--folds', values: ['9'], known: ['1', '5'] },
    ]);
    // Each value exists, but no image has both.
    const together = cli('load', figshareSampleDir, '--dry-run', '--patients', '100360', '--classes', 'glioma');
    assert.equal(together.status, 1, together.stderr);
    assert.match(together.stderr, /no image matches all of them together/);
  });
});
