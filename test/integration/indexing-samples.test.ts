/**
 * Every real sample file through the whole indexing path (store in Orthanc → index job
 * → WADO-RS fetch → decode → embed → index), and bad input that must never bring a
 * worker down:
 *   - each file of test/fixtures/dicom-samples — and of ../shared/dicom-samples when it
 *     exists — ends up indexed, or refused with a reason that `cbmir failed` shows
 *     (files the PACS itself refuses are reported with the PACS's answer);
 *   - a `cbmir worker` process given corrupt uploads (cut short, bytes overwritten,
 *     not DICOM at all) and a DICOM whose Pixel Data is cut short but which the PACS
 *     accepted answers each with a refusal and goes on indexing real images.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { QueueEvents, Queue } from 'bullmq';
import dcmjs from 'dcmjs';
import { EMBED_JOB_OPTIONS, queueName, type EmbedJobResult, type EmbedQueueJobData, type EmbedQueueJobResult } from '../../core/jobs.js';
import { IndexEnqueuer } from '../../core/queue/index-enqueuer.js';
import { listFailed } from '../../workers/failed-jobs.js';
import { dicomFixturesDir, ixiSampleDir, listDicom, repoRoot, sharedDir } from '../helpers/fixtures.js';
import { testStack } from '../helpers/stack.js';
import { deleteStudies, json, raw } from './gateway-fixture.js';
import {
  closeSharedPipeline,
  deleteLoaded,
  dropQueues,
  indexPlace,
  indexQueue,
  inProcessWorkers,
  loadAs,
  sharedPipeline,
  spawnWorker,
  uniqueName,
  waitFor,
} from './indexing-fixture.js';

const run = promisify(execFile);

interface Stored {
  readonly file: string;
  readonly study?: string;
  readonly series?: string;
  readonly sop?: string;
  /** Why the PACS did not store it. */
  readonly pacsRefusal?: string;
}

/** POST a Part-10 file to Orthanc's REST API and read back its UIDs. */
async function storeInOrthanc(file: string, bytes: Buffer): Promise<Stored> {
  const base = testStack().orthancUrl;
  const r = await raw(`${base}/instances`, { method: 'POST', headers: { 'content-type': 'application/dicom' }, body: bytes });
  if (r.status !== 200) return { file, pacsRefusal: `Orthanc answered ${r.status}: ${r.body.toString('utf8').slice(0, 200)}` };
  const id = json<{ ID: string }>(r).ID;
  const tags = json<Record<string, string>>(await raw(`${base}/instances/${id}/tags?simplify`));
  return { file, study: tags.StudyInstanceUID, series: tags.SeriesInstanceUID, sop: tags.SOPInstanceUID };
}

/** Wait until a namespace's index queue has nothing waiting, delayed or running. */
async function drained(ns: string, timeoutMs: number): Promise<void> {
  const q = indexQueue(ns);
  try {
    await waitFor(
      'the index queue drained',
      async () => {
        const c = await q.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
        return Object.values(c).every((n) => n === 0);
      },
      timeoutMs,
      500,
    );
  } finally {
    await q.close();
  }
}

describe('indexing: every sample file, and corrupt input', () => {
  after(closeSharedPipeline);

  it('every sample DICOM file is indexed or refused with a reason shown by `cbmir failed`', { timeout: 900_000 }, async () => {
    const ns = uniqueName('samples');
    const place = indexPlace('embedded', ns);
    const pipeline = await sharedPipeline();
    const enqueuer = new IndexEnqueuer(testStack().redisUrl, pipeline.modelVersion, { namespace: ns });
    const index = place.open();
    const workers = await inProcessWorkers({ namespace: ns, index, concurrency: 4 });
    const roots = [dicomFixturesDir, ...(sharedDir() ? [path.join(sharedDir()!, 'dicom-samples')] : [])];
    const stored: Stored[] = [];
    try {
      for (const root of roots) {
        for (const rel of listDicom(root)) {
          const file = path.join(root, rel);
          stored.push(await storeInOrthanc(path.relative(repoRoot, file), readFileSync(file)));
        }
      }
      // One job per distinct instance (copies of one instance share a SOP Instance UID).
      const bySop = new Map<string, Stored>();
      for (const s of stored) if (s.sop && !bySop.has(s.sop)) bySop.set(s.sop, s);
      const r = await enqueuer.enqueue(
        [...bySop.values()].map((s) => ({
          studyInstanceUid: s.study!,
          seriesInstanceUid: s.series!,
          sopInstanceUid: s.sop!,
          sopClassUid: undefined,
        })),
        'stow',
      );
      assert.equal(r.enqueued, bySop.size);
      await drained(ns, 840_000);

      const indexed = await index.has([...bySop.keys()]);
      const queue = indexQueue(ns);
      const failed = await listFailed(queue, 100_000).finally(() => queue.close());
      const refusedBySop = new Map(failed.jobs.map((j) => [j.sopInstanceUid, j]));
      const problems: string[] = [];
      for (const s of stored) {
        if (s.pacsRefusal) continue; // the PACS's own answer is the reason
        const refusal = refusedBySop.get(s.sop!);
        if (indexed.has(s.sop!)) continue;
        if (!refusal) problems.push(`${s.file}: neither indexed nor refused`);
        else if (!refusal.reason || refusal.retryable)
          problems.push(`${s.file}: failed without a permanent reason (${refusal.step}: ${refusal.reason})`);
      }
      assert.deepEqual(problems, []);
      assert.equal(indexed.size + failed.total, bySop.size, 'every job ended indexed or refused');

      // The repo's own samples: the ten images are indexed, the SR and the presentation state refused as non-images.
      const fixture = (rel: string) => stored.find((s) => s.file === path.join('test/fixtures/dicom-samples', rel))!;
      for (const rel of listDicom(dicomFixturesDir)) {
        const s = fixture(rel);
        if (rel.startsWith('non-image/')) {
          const f = refusedBySop.get(s.sop!);
          assert.equal(f?.step, 'decode', rel);
          assert.equal(f?.code, 'NOT_AN_IMAGE', rel);
        } else {
          assert.ok(indexed.has(s.sop!), `${rel} indexed`);
        }
      }

      // The same view through the CLI.
      const cli = await run(process.execPath, ['--import', 'tsx', 'workers/cli.ts', 'failed', '--json', '--namespace', ns], {
        cwd: repoRoot,
        env: { ...process.env, CBMIR_REDIS_URL: testStack().redisUrl, CBMIR_LOG_LEVEL: 'silent' },
        maxBuffer: 64 << 20,
      });
      const lines = cli.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const summary = lines.pop()!;
      assert.equal(summary.failed, failed.total);
      assert.equal(summary.retryable, 0);
      const sr = fixture('non-image/comprehensive_sr_test-SR.dcm');
      const line = lines.find((l) => l.sopInstanceUid === sr.sop);
      assert.ok(line, 'the SR is listed');
      assert.equal(line.step, 'decode');
      assert.match(String(line.reason), /not an image/i);
      for (const k of ['jobId', 'studyInstanceUid', 'seriesInstanceUid', 'attempts', 'failedAt']) assert.ok(k in line, `field ${k}`);
      const pacsRefused = stored.filter((s) => s.pacsRefusal);
      const codes: Record<string, number> = {};
      for (const j of failed.jobs) codes[`${j.step}/${j.code ?? '-'}`] = (codes[`${j.step}/${j.code ?? '-'}`] ?? 0) + 1;
      process.stderr.write(
        `# ${stored.length} files, ${bySop.size} distinct instances: ${indexed.size} indexed, ${failed.total} refused ${JSON.stringify(codes)}, ` +
          `${pacsRefused.length} refused by the PACS${pacsRefused.length ? `: ${pacsRefused.map((s) => `${s.file} (${s.pacsRefusal?.split('\n')[0]})`).join('; ')}` : ''}\n`,
      );
    } finally {
      await workers.close();
      await enqueuer.close();
      await index.close();
      await place.cleanup();
      await dropQueues(ns);
      await deleteStudies(
        testStack().orthancUrl,
        stored.filter((s) => s.study).map((s) => s.study!),
      );
    }
  });

  it('a worker process refuses corrupt files with a reason and keeps indexing', { timeout: 300_000 }, async () => {
    const ns = uniqueName('corrupt');
    const place = indexPlace('embedded', ns);
    const pipeline = await sharedPipeline();
    const out = mkdtempSync(path.join(os.tmpdir(), 'cbmir-corrupt-'));
    const worker = spawnWorker(place.env, ns);
    const redis = new URL(testStack().redisUrl);
    const connection = { host: redis.hostname, port: Number(redis.port), maxRetriesPerRequest: null };
    const embedQueue = new Queue<EmbedQueueJobData, EmbedQueueJobResult>(queueName('embed', ns), { connection });
    const events = new QueueEvents(queueName('embed', ns), { connection });
    const enqueuer = new IndexEnqueuer(testStack().redisUrl, pipeline.modelVersion, { namespace: ns });
    const index = place.open();
    let instances: { studyInstanceUid: string; seriesInstanceUid: string; sopInstanceUid: string }[] = [];
    try {
      await waitFor('worker ready', async () => worker.output().includes('worker ready'), 90_000, 200);
      await events.waitUntilReady();
      // Real images as DICOM files with UIDs of their own.
      const loaded = await loadAs(ixiSampleDir, ns, '', { mode: 'write', outDir: out });
      instances = loaded.instances;
      const files = listDicom(out).map((f) => path.join(out, f));
      const good = readFileSync(files[0]!);

      // 1. Uploads on the embed path: cut short, header bytes overwritten, not DICOM at all.
      const overwritten = Buffer.from(good);
      overwritten.fill(0xff, 132 + 16, 132 + 400);
      const corrupt: Record<string, Buffer> = {
        'cut short': good.subarray(0, Math.floor(good.length / 2)),
        'header overwritten': overwritten,
        'not DICOM': readFileSync(path.join(repoRoot, 'README.md')),
        empty: Buffer.alloc(0),
      };
      for (const [what, bytes] of Object.entries(corrupt)) {
        const job = await embedQueue.add(
          'upload',
          { kind: 'upload', dicomBase64: bytes.toString('base64'), modelVersion: pipeline.modelVersion, enqueuedAt: Date.now() },
          EMBED_JOB_OPTIONS,
        );
        const result = (await job.waitUntilFinished(events, 60_000)) as EmbedJobResult;
        assert.equal(result.status, 'refused', what);
        if (result.status === 'refused') assert.ok(result.reason.length > 0, `${what}: a reason`);
        assert.equal(worker.child.exitCode, null, `worker alive after "${what}"`);
        // Nobody deleted this job (the gateway would have): the worker left no file in it.
        const kept = (await embedQueue.getJob(job.id!))?.data;
        assert.ok(kept?.kind === 'upload' && kept.dicomBase64 === '', `${what}: upload blanked in Redis`);
      }
      // A heatmap of a dropped file: computed, and the file does not stay in the job either.
      const heat = await embedQueue.add(
        'heatmap',
        {
          kind: 'heatmap',
          query: { dicomBase64: good.toString('base64') },
          result: { dicomBase64: good.toString('base64') },
          modelVersion: pipeline.modelVersion,
          enqueuedAt: Date.now(),
        },
        EMBED_JOB_OPTIONS,
      );
      const heatmap = (await heat.waitUntilFinished(events, 60_000)) as { status: string };
      assert.equal(heatmap.status, 'heatmap');
      const keptHeat = (await embedQueue.getJob(heat.id!))?.data;
      assert.ok(
        keptHeat?.kind === 'heatmap' && 'dicomBase64' in keptHeat.query && keptHeat.query.dicomBase64 === '',
        'heatmap upload blanked in Redis',
      );

      // 2. Pixel Data cut short but the element length made consistent: the PACS accepts
      //    it (it does not check pixel sizes); the worker must refuse it, not crash.
      const cut = truncatePixelData(readFileSync(files[1]!));
      const stored = await storeInOrthanc('truncated', cut);
      assert.equal(stored.pacsRefusal, undefined, 'the PACS accepted the truncated file');
      const victim = {
        studyInstanceUid: stored.study!,
        seriesInstanceUid: stored.series!,
        sopInstanceUid: stored.sop!,
        sopClassUid: undefined,
      };
      // 3. …and real images after it, indexed by the same worker.
      const rest = files.slice(2);
      const real = [];
      for (const f of rest) real.push(await storeInOrthanc(f, readFileSync(f)));
      await enqueuer.enqueue(
        [
          victim,
          ...real.map((s) => ({
            studyInstanceUid: s.study!,
            seriesInstanceUid: s.series!,
            sopInstanceUid: s.sop!,
            sopClassUid: undefined,
          })),
        ],
        'stow',
      );
      await drained(ns, 120_000);
      const queue = indexQueue(ns);
      const failed = await listFailed(queue, 100).finally(() => queue.close());
      assert.equal(failed.total, 1);
      assert.equal(failed.jobs[0]!.sopInstanceUid, victim.sopInstanceUid);
      assert.equal(failed.jobs[0]!.step, 'decode');
      assert.equal(failed.jobs[0]!.code, 'MALFORMED');
      assert.equal((await index.has(real.map((s) => s.sop!))).size, rest.length);
      assert.equal(worker.child.exitCode, null, 'the worker is still running');
    } finally {
      await worker.stop();
      await events.close();
      await embedQueue.close();
      await enqueuer.close();
      await index.close();
      await place.cleanup();
      await dropQueues(ns);
      await deleteLoaded(instances);
      rmSync(out, { recursive: true, force: true });
    }
  });

  it(
    'over CBMIR_WORKER_MAX_INSTANCE_BYTES, a multi-frame object is indexed from its middle frame, fetched alone; a single-frame one is refused as decode/TOO_LARGE; the others are indexed',
    { timeout: 300_000 },
    async () => {
      const ns = uniqueName('toolarge');
      const place = indexPlace('embedded', ns);
      const pipeline = await sharedPipeline();
      const out = mkdtempSync(path.join(os.tmpdir(), 'cbmir-toolarge-'));
      const limit = 1 << 20; // the smallest the setting allows
      const worker = spawnWorker({ ...place.env, CBMIR_WORKER_MAX_INSTANCE_BYTES: String(limit) }, ns);
      const enqueuer = new IndexEnqueuer(testStack().redisUrl, pipeline.modelVersion, { namespace: ns });
      const index = place.open();
      let instances: { studyInstanceUid: string }[] = [];
      try {
        await waitFor('worker ready', async () => worker.output().includes('worker ready'), 90_000, 200);
        const loaded = await loadAs(ixiSampleDir, ns, '', { mode: 'write', outDir: out });
        instances = loaded.instances;
        const files = listDicom(out)
          .slice(0, 4)
          .map((f) => path.join(out, f));
        const image = readFileSync(files[0]!);
        // A real image repeated into a multi-frame object of a few MB (a cine in miniature),
        // and tiled into one frame of a few MB, which no frame fetch makes smaller.
        const multi = asMultiFrame(image, limit);
        const frames = Number(dcmjs.data.DicomMessage.readFile(new Uint8Array(multi).buffer).dict['00280008']!.Value![0]);
        const big = await storeInOrthanc('multi-frame', multi);
        const single = await storeInOrthanc('single-frame', asLargeSingleFrame(image, limit));
        assert.equal(big.pacsRefusal, undefined, big.pacsRefusal);
        assert.equal(single.pacsRefusal, undefined, single.pacsRefusal);
        const small = [];
        for (const f of files.slice(1)) small.push(await storeInOrthanc(f, readFileSync(f)));
        await enqueuer.enqueue(
          [big, single, ...small].map((s) => ({
            studyInstanceUid: s.study!,
            seriesInstanceUid: s.series!,
            sopInstanceUid: s.sop!,
            sopClassUid: undefined,
          })),
          'stow',
        );
        await drained(ns, 120_000);
        const queue = indexQueue(ns);
        const failed = await listFailed(queue, 100).finally(() => queue.close());
        assert.deepEqual(
          failed.jobs.map((j) => [j.sopInstanceUid, j.step, j.code, j.retryable]),
          [[single.sop, 'decode', 'TOO_LARGE', false]],
        );
        assert.match(
          failed.jobs[0]!.reason,
          new RegExp(
            `^WADO-RS answer of (more than )?\\d+ bytes for the instance exceeds CBMIR_WORKER_MAX_INSTANCE_BYTES \\(${limit}\\), and a single-frame instance has no smaller part to fetch$`,
          ),
        );
        // Every frame is the image, so the middle one embeds as the image does.
        const doc = await index.get(big.sop!);
        assert.ok(doc, 'the multi-frame object is indexed');
        assert.equal(doc.frame, Math.floor((frames - 1) / 2) + 1);
        const alone = await pipeline.embedDicom(new Uint8Array(image));
        assert.ok(alone.ok);
        const expected = alone.vectors[0]!.vector;
        // Same pixels, so the same vector but for float rounding of another process and batch.
        const diffs = Array.from(doc.vector).map((v, i) => Math.abs(v - expected[i]!));
        assert.ok(Math.max(...diffs) <= 1e-4, `the vector of the middle frame: max |Δ| ${Math.max(...diffs)}`);
        assert.equal((await index.has(small.map((s) => s.sop!))).size, small.length);
        assert.equal(worker.child.exitCode, null, 'the worker is still running');
      } finally {
        await worker.stop();
        await enqueuer.close();
        await index.close();
        await place.cleanup();
        await dropQueues(ns);
        await deleteLoaded(instances);
        rmSync(out, { recursive: true, force: true });
      }
    },
  );
});

/** The image as a multi-frame object (its one frame repeated) of more than `bytes` bytes, with an instance UID of its own. */
function asMultiFrame(file: Buffer, bytes: number): Buffer {
  const dict = dcmjs.data.DicomMessage.readFile(new Uint8Array(file).buffer);
  const frame = nativeFrame(dict);
  const frames = Math.ceil((2 * bytes) / frame.length);
  const pixels = new Uint8Array(even(frame.length * frames));
  for (let i = 0; i < frames; i++) pixels.set(frame, i * frame.length);
  const sop = `${String(dict.dict['00080018']!.Value![0])}.9`;
  dict.dict['00080018'] = { vr: 'UI', Value: [sop] };
  dict.meta['00020003'] = { vr: 'UI', Value: [sop] };
  dict.dict['00280008'] = { vr: 'IS', Value: [frames] };
  dict.dict['7FE00010'] = { vr: dict.dict['7FE00010']!.vr, Value: [pixels.buffer] };
  return Buffer.from(dict.write());
}

/** A value length made even with a pad byte (PS3.5 §7.1.1). */
const even = (length: number): number => length + (length % 2);

/**
 * The one native frame of a single-frame dataset, without the pad byte that makes an odd-length
 * Pixel Data value even (233 × 197 8-bit pixels are stored in 45,902 bytes): frames are packed
 * back to back, so copying the padded value shifts every later frame by a byte per frame.
 */
function nativeFrame(dict: ReturnType<typeof dcmjs.data.DicomMessage.readFile>): Uint8Array {
  const value = new Uint8Array((dict.dict['7FE00010']!.Value as ArrayBuffer[])[0]!);
  const n = (name: string, tag: string): number => {
    const v = Number(dict.dict[tag]?.Value?.[0]);
    assert.ok(Number.isInteger(v) && v > 0, `${name} of the sample`);
    return v;
  };
  const length =
    (n('Rows', '00280010') * n('Columns', '00280011') * n('Samples per Pixel', '00280002') * n('Bits Allocated', '00280100')) / 8;
  assert.ok(Number.isInteger(length) && value.length - length <= 1, `native Pixel Data of ${value.length} bytes for a frame of ${length}`);
  return value.subarray(0, length);
}

/** The image tiled k × k into one frame of more than `bytes` bytes, with an instance UID of its own. */
function asLargeSingleFrame(file: Buffer, bytes: number): Buffer {
  const dict = dcmjs.data.DicomMessage.readFile(new Uint8Array(file).buffer);
  const rows = Number(dict.dict['00280010']!.Value![0]);
  const cols = Number(dict.dict['00280011']!.Value![0]);
  const frame = nativeFrame(dict);
  const rowBytes = frame.length / rows;
  const k = Math.ceil(Math.sqrt((2 * bytes) / frame.length));
  const pixels = new Uint8Array(even(frame.length * k * k));
  for (let r = 0; r < rows * k; r++) {
    const source = frame.subarray((r % rows) * rowBytes, ((r % rows) + 1) * rowBytes);
    for (let c = 0; c < k; c++) pixels.set(source, (r * k + c) * rowBytes);
  }
  const sop = `${String(dict.dict['00080018']!.Value![0])}.8`;
  dict.dict['00080018'] = { vr: 'UI', Value: [sop] };
  dict.meta['00020003'] = { vr: 'UI', Value: [sop] };
  dict.dict['00280010'] = { vr: 'US', Value: [rows * k] };
  dict.dict['00280011'] = { vr: 'US', Value: [cols * k] };
  dict.dict['7FE00010'] = { vr: dict.dict['7FE00010']!.vr, Value: [pixels.buffer] };
  return Buffer.from(dict.write());
}

/**
 * Halve the native Pixel Data of an Explicit VR Little Endian file and make its element
 * length say so: a structurally valid file whose pixels are too few for Rows × Columns.
 */
function truncatePixelData(file: Buffer): Buffer {
  const header = Buffer.from([0xe0, 0x7f, 0x10, 0x00]);
  const at = file.lastIndexOf(header);
  assert.ok(at > 0, 'Pixel Data element found');
  const vr = file.toString('latin1', at + 4, at + 6);
  assert.ok(vr === 'OW' || vr === 'OB', `explicit VR OW/OB, got ${vr}`);
  const len = file.readUInt32LE(at + 8);
  assert.equal(at + 12 + len, file.length, 'Pixel Data is the last element');
  const half = (len >> 1) & ~1;
  const out = Buffer.from(file.subarray(0, at + 12 + half));
  out.writeUInt32LE(half, at + 8);
  return out;
}
