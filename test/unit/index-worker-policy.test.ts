/**
 * How the worker turns a PACS fetch failure into "retry" or "give up", and how
 * `cbmir failed` then reads the reason it recorded.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import dcmjs from 'dcmjs';
import {
  EMBED_JOB_OPTIONS,
  type EmbedQueueJobData,
  type EmbedQueueJobResult,
  type IndexJobData,
  type IndexJobResult,
} from '../../core/jobs.js';
import { PacsClient, PacsHttpError, PacsTooLargeError } from '../../core/pacs/client.js';
import { classifyFailure } from '../../workers/failed-jobs.js';
import {
  asStoredFrame,
  deferOtherModelEmbed,
  embedConcurrency,
  embedJobProcessor,
  fetchFailure,
  indexJobProcessor,
  toDoc,
  withoutUploads,
} from '../../workers/index-worker.js';
import { decodeDicom, type InstanceMeta } from '../../core/dicom/decode.js';
import { docProblem } from '../../core/index/validate.js';
import { dicomFixturesDir } from '../helpers/fixtures.js';

const path = '/dicom-web/studies/1.2/series/1.3/instances/1.4';

test('a refused service login is retried and listed as retryable, naming the settings', () => {
  for (const status of [401, 403]) {
    const e = fetchFailure('fetch (WADO-RS)', new PacsHttpError(status, path));
    assert.ok(!(e instanceof UnrecoverableError), String(status));
    assert.match(e.message, /CBMIR_PACS_USER \/ CBMIR_PACS_PASSWORD/);
    assert.equal(classifyFailure(e.message).retryable, true);
  }
});

test('an instance the PACS does not have is given up at once, as permanent', () => {
  const e = fetchFailure('fetch (WADO-RS)', new PacsHttpError(404, path));
  assert.ok(e instanceof UnrecoverableError);
  const c = classifyFailure(e.message);
  assert.deepEqual([c.step, c.retryable], ['fetch', false]);
});

test('5xx and connection faults are retried', () => {
  assert.ok(!(fetchFailure('fetch (WADO-RS)', new PacsHttpError(503, path)) instanceof UnrecoverableError));
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8042'), { code: 'ECONNREFUSED' });
  assert.ok(!(fetchFailure('fetch (WADO-RS)', refused) instanceof UnrecoverableError));
  // A PACS whose name does not resolve (its container stopped) or whose route is down is away, not gone.
  for (const code of ['ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']) {
    const e = fetchFailure('fetch (WADO-RS)', Object.assign(new Error(`getaddrinfo ${code} orthanc`), { code }));
    assert.ok(!(e instanceof UnrecoverableError), code);
  }
});

test('an optional text over the index limit (a 300-character label) is left out, not the image refused', () => {
  const meta = {
    studyInstanceUid: '1.2',
    seriesInstanceUid: '1.2.3',
    modality: 'MR',
    label: { className: 'x'.repeat(300) },
  } as unknown as InstanceMeta;
  const doc = toDoc(
    meta,
    { studyInstanceUid: '1.2', seriesInstanceUid: '1.2.3', sopInstanceUid: '1.2.3.4' },
    new Float32Array(4).fill(0.5),
    1,
    '0.4.0',
    undefined,
  );
  assert.equal(doc.label, undefined);
  assert.equal(doc.modality, 'MR');
  assert.equal(docProblem(doc, 4, '0.4.0'), undefined);
  // Code strings are stored as the standard writes them, so the filters match "Brain" as BRAIN.
  const mixed = toDoc(
    { ...meta, bodyPartExamined: ' Brain ', modality: 'mr' } as InstanceMeta,
    { studyInstanceUid: '1.2', seriesInstanceUid: '1.2.3', sopInstanceUid: '1.2.3.4' },
    new Float32Array(4).fill(0.5),
    1,
    '0.4.0',
    undefined,
  );
  assert.deepEqual([mixed.bodyPartExamined, mixed.modality], ['BRAIN', 'MR']);
});

test('a document carries the PACS’s study and series UIDs (the job’s), not the file’s', () => {
  // A PACS that coerced the UIDs on storage, or where a study was split: the reconciler and the
  // access checks see the PACS's, and a document under the file's was pruned as moved every pass.
  const meta = { studyInstanceUid: '9.9', seriesInstanceUid: '9.9.9', modality: 'MR' } as unknown as InstanceMeta;
  const doc = toDoc(
    meta,
    { studyInstanceUid: '1.2', seriesInstanceUid: '1.2.3', sopInstanceUid: '1.2.3.4' },
    new Float32Array(4).fill(0.5),
    1,
    '0.4.0',
    undefined,
  );
  assert.deepEqual([doc.studyInstanceUid, doc.seriesInstanceUid, doc.sopInstanceUid], ['1.2', '1.2.3', '1.2.3.4']);
});

test('a frame fetched alone is recorded, and refused, under its number in the stored instance, which the document keeps as `frame`', () => {
  const meta = { sopInstanceUid: '1.2.3.4', numberOfFrames: 1 } as InstanceMeta;
  const vector = new Float32Array(4).fill(0.5);
  const alone = { ok: true as const, meta, vectors: [{ frameNumber: 1, vector }] };
  const r = asStoredFrame(alone, { number: 48, of: 96 });
  assert.ok(r.ok);
  assert.deepEqual([r.vectors[0]!.frameNumber, r.meta.numberOfFrames], [48, 96]);
  const doc = toDoc(
    r.meta,
    { studyInstanceUid: '1.2', seriesInstanceUid: '1.2.3', sopInstanceUid: '1.2.3.4' },
    vector,
    r.vectors[0]!.frameNumber,
    '0.4.0',
    undefined,
  );
  assert.equal(doc.frame, 48);
  assert.equal(asStoredFrame(alone, undefined), alone, 'an instance fetched whole keeps its own numbers');
  const refusal = { ok: false as const, code: 'DECODE_FAILED' as const, reason: 'frame 1: codec returned 10 bytes, expected 20' };
  assert.deepEqual(asStoredFrame(refusal, { number: 48, of: 96 }), {
    ...refusal,
    reason: 'frame 48: codec returned 10 bytes, expected 20',
  });
});

test('interactive embed jobs are bounded by the decode limit, not by the index-job concurrency', () => {
  assert.equal(embedConcurrency(64, 32), 32);
  assert.equal(embedConcurrency(64, 4), 4);
  assert.equal(embedConcurrency(8, 32), 8);
  assert.equal(embedConcurrency(1, 1), 2);
  assert.equal(embedConcurrency(64), 32);
});

/** A PACS whose WADO-RS answer is `answer`'s; counts the body bytes written until the client hangs up. */
async function pacsAnswering(answer: (res: http.ServerResponse, sent: { bytes: number }) => void) {
  const sent = { bytes: 0, closed: false };
  const server = http.createServer((req, res) => {
    res.on('close', () => (sent.closed = true));
    answer(res, sent);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const pacs = new PacsClient({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/dicom-web`, timeoutMs: 30_000 });
  return {
    pacs,
    sent,
    async close() {
      await pacs.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Writes `chunk` for as long as the client reads (backpressure respected), up to `total` bytes. */
function stream(res: http.ServerResponse, sent: { bytes: number }, chunk: Buffer, total: number): void {
  const more = (): void => {
    while (sent.bytes < total && !res.destroyed) {
      sent.bytes += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', more);
    }
    res.end();
  };
  more();
}

const MiB = 2 ** 20;
const retrieve = (pacs: PacsClient, maxBytes: number) => pacs.retrieveInstance('1.2', '1.2.3', '1.2.3.4', {}, { maxBytes });

test('an answer declared larger than the limit is refused at once, unread, as decode/TOO_LARGE naming the answer', async () => {
  // 2 GiB declared, 1 MiB sent, the rest never: reading it would wait for the body timeout.
  const p = await pacsAnswering((res, sent) => {
    res.writeHead(200, {
      'content-type': 'multipart/related; type="application/dicom"; boundary=b',
      'content-length': String(2 * 1024 * MiB),
    });
    stream(res, sent, Buffer.alloc(64 * 1024), MiB);
  });
  try {
    const started = Date.now();
    const err = await retrieve(p.pacs, 512 * MiB).then(
      () => assert.fail('retrieved'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof PacsTooLargeError, String(err));
    assert.ok(Date.now() - started < 5_000);
    const e = fetchFailure('fetch (WADO-RS)', err);
    assert.ok(e instanceof UnrecoverableError);
    assert.equal(
      e.message,
      `decode: TOO_LARGE: WADO-RS answer of ${2 * 1024 * MiB} bytes for the instance exceeds CBMIR_WORKER_MAX_INSTANCE_BYTES (${512 * MiB})`,
    );
    const c = classifyFailure(e.message);
    assert.deepEqual([c.step, c.code, c.retryable], ['decode', 'TOO_LARGE', false]);
  } finally {
    await p.close();
  }
});

test('an answer of no declared length is cut off once past the limit, not read to its end', async () => {
  const p = await pacsAnswering((res, sent) => {
    res.writeHead(200, { 'content-type': 'multipart/related; type="application/dicom"; boundary=b' }); // chunked
    stream(res, sent, Buffer.alloc(64 * 1024), 1024 * MiB);
  });
  try {
    const err = await retrieve(p.pacs, 2 * MiB).then(
      () => assert.fail('retrieved'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof PacsTooLargeError, String(err));
    assert.equal(
      fetchFailure('fetch (WADO-RS)', err).message,
      `decode: TOO_LARGE: WADO-RS answer of more than ${2 * MiB} bytes for the instance exceeds CBMIR_WORKER_MAX_INSTANCE_BYTES (${2 * MiB})`,
    );
    await waitUntil(() => p.sent.closed);
    // What the sockets' buffers took beyond the limit, not the 1 GiB on offer.
    assert.ok(p.sent.bytes < 64 * MiB, `${p.sent.bytes} bytes sent`);
  } finally {
    await p.close();
  }
});

test('an instance within the limit is read whole', async () => {
  const dicom = Buffer.alloc(3 * MiB, 7);
  const body = Buffer.concat([Buffer.from('--b\r\ncontent-type: application/dicom\r\n\r\n'), dicom, Buffer.from('\r\n--b--\r\n')]);
  const p = await pacsAnswering((res) => {
    res.writeHead(200, {
      'content-type': 'multipart/related; type="application/dicom"; boundary=b',
      'content-length': String(body.length),
    });
    res.end(body);
  });
  try {
    assert.deepEqual(Buffer.from(await retrieve(p.pacs, 4 * MiB)), dicom);
  } finally {
    await p.close();
  }
});

async function waitUntil(done: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) assert.fail('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An embed-queue job as far as the other-model rule touches it; records what is done to it. */
function embedJob(data: EmbedQueueJobData) {
  const calls: string[] = [];
  const job = {
    data,
    async updateData(d: EmbedQueueJobData) {
      calls.push('updateData');
      job.data = d;
    },
    async moveToDelayed(at: number) {
      calls.push(`moveToDelayed +${at - NOW}`);
    },
  };
  return { job: job as unknown as Pick<Job<EmbedQueueJobData, EmbedQueueJobResult>, 'data' | 'updateData' | 'moveToDelayed'>, calls };
}
const NOW = 1_800_000_000_000;

test("another model's /similar job is put back while the gateway waits, with its upload, counting the put-backs", async () => {
  const { job, calls } = embedJob({ kind: 'upload', dicomBase64: 'AAAA', modelVersion: '0.5.0', enqueuedAt: NOW, deferrals: 18 });
  await assert.rejects(deferOtherModelEmbed(job, 'token', '0.4.0', 20_000, NOW), DelayedError);
  assert.deepEqual(calls, ['updateData', 'moveToDelayed +1000']);
  assert.equal(job.data.deferrals, 19);
  assert.equal(job.data.kind === 'upload' && job.data.dicomBase64, 'AAAA', 'a worker of its version still needs the file');
});

test("another model's /similar job: its age is the workers' count, not the gateway's clock", async () => {
  // The gateway's clock a minute behind or ahead of this worker's: a first put-back all the same.
  for (const enqueuedAt of [NOW - 60_000, NOW + 60_000]) {
    const { job, calls } = embedJob({ kind: 'upload', dicomBase64: 'AAAA', modelVersion: '0.5.0', enqueuedAt });
    await assert.rejects(deferOtherModelEmbed(job, 'token', '0.4.0', 20_000, NOW), DelayedError);
    assert.deepEqual(calls, ['updateData', 'moveToDelayed +1000']);
  }
});

test("another model's /similar job nobody waits for any more fails, its uploaded files dropped first", async () => {
  const old = { enqueuedAt: NOW, deferrals: 20 }; // put back 20 times, a second each: the 20 s are up
  const upload = embedJob({ kind: 'upload', dicomBase64: 'AAAA', modelVersion: '0.5.0', ...old });
  await assert.rejects(deferOtherModelEmbed(upload.job, 'token', '0.4.0', 20_000, NOW), (err: Error) => {
    assert.ok(err instanceof UnrecoverableError);
    assert.match(err.message, /^model version 0\.5\.0: no worker of that version took the job within 20000 ms, .*this worker runs 0\.4\.0/);
    return true;
  });
  assert.deepEqual(upload.calls, ['updateData']);
  assert.equal(upload.job.data.kind === 'upload' && upload.job.data.dicomBase64, '');

  const heat = embedJob({
    kind: 'heatmap',
    query: { dicomBase64: 'AAAA' },
    result: { studyInstanceUid: '1.2', seriesInstanceUid: '1.2.3', sopInstanceUid: '1.2.3.4' },
    modelVersion: '0.5.0',
    ...old,
  });
  await assert.rejects(deferOtherModelEmbed(heat.job, undefined, '0.4.0', 20_000, NOW), UnrecoverableError);
  assert.deepEqual(heat.job.data.kind === 'heatmap' && [heat.job.data.query, heat.job.data.result], [
    { dicomBase64: '' },
    { studyInstanceUid: '1.2', seriesInstanceUid: '1.2.3', sopInstanceUid: '1.2.3.4' },
  ]);

  const instance = embedJob({
    kind: 'instance',
    studyInstanceUid: '1.2',
    seriesInstanceUid: '1.2.3',
    sopInstanceUid: '1.2.3.4',
    modelVersion: '0.5.0',
    index: true,
    ...old,
  });
  await assert.rejects(deferOtherModelEmbed(instance.job, undefined, '0.4.0', 20_000, NOW), UnrecoverableError);
  assert.deepEqual(instance.calls, [], 'nothing to drop');
});

test('withoutUploads blanks both sides of a heatmap and leaves jobs without files alone', () => {
  const ids = { studyInstanceUid: '1.2', seriesInstanceUid: '1.2.3', sopInstanceUid: '1.2.3.4' };
  const both = withoutUploads({
    kind: 'heatmap',
    query: { dicomBase64: 'AA' },
    result: { dicomBase64: 'BB' },
    modelVersion: 'v',
    enqueuedAt: 0,
  });
  assert.deepEqual(both?.kind === 'heatmap' && [both.query, both.result], [{ dicomBase64: '' }, { dicomBase64: '' }]);
  assert.equal(withoutUploads({ kind: 'heatmap', query: ids, result: ids, modelVersion: 'v', enqueuedAt: 0 }), undefined);
  assert.equal(withoutUploads({ kind: 'upload', dicomBase64: '', modelVersion: 'v', enqueuedAt: 0 }), undefined, 'already blank');
});

/** The index job handler, its embed step decoding `bytes` as the pipeline does (core/dicom/decode), a stand-in vector for the model's. */
function indexing(bytes: Uint8Array) {
  const written: unknown[] = [];
  const process = indexJobProcessor({
    version: '0.4.0',
    async embed() {
      const d = await decodeDicom(bytes);
      if (!d.ok) return d;
      return {
        ok: true,
        meta: d.meta,
        vectors: d.frames.map((f) => ({ frameNumber: f.frameNumber, vector: new Float32Array(4).fill(0.5) })),
      };
    },
    write: async (doc) => void written.push(doc),
    keyOf: () => undefined,
    holdingInstance: (fn) => fn(),
    onOtherModel: () => assert.fail('the job is for this model version'),
  });
  const job = {
    data: {
      studyInstanceUid: '1.2',
      seriesInstanceUid: '1.2.3',
      sopInstanceUid: '1.2.3.4',
      modelVersion: '0.4.0',
      source: 'stow',
      enqueuedAt: Date.now(),
    },
  } as Job<IndexJobData, IndexJobResult>;
  return { run: () => process(job), written };
}

const failureOf = (p: Promise<unknown>): Promise<Error> =>
  p.then(
    () => assert.fail('the job completed'),
    (err: unknown) => (err instanceof Error ? err : assert.fail(String(err))),
  );

const mosaic = () => readFileSync(`${dicomFixturesDir}/transfer-syntax/siemens_mosaic_1.dcm`);

test('an image the decoder could not read for want of memory is retried with backoff, not refused for good', async () => {
  const ok = indexing(mosaic());
  assert.equal((await ok.run()).status, 'indexed');
  // Memory pressure as V8 reports it, in the first allocation of a read (dcmjs copying the file).
  const readFile = dcmjs.data.DicomMessage.readFile;
  dcmjs.data.DicomMessage.readFile = () => {
    throw new RangeError('Array buffer allocation failed');
  };
  try {
    const short = indexing(mosaic());
    const err = await failureOf(short.run());
    assert.ok(!(err instanceof UnrecoverableError), `retried, not given up: ${err.message}`);
    assert.match(err.message, /Array buffer allocation failed/);
    assert.deepEqual(short.written, []);
    assert.equal(classifyFailure(err.message).retryable, true, 'listed by `cbmir failed` as retryable if every attempt fails');
  } finally {
    dcmjs.data.DicomMessage.readFile = readFile;
  }
});

test('an image that is the problem is still refused for good, naming the code', async () => {
  const sr = await failureOf(indexing(readFileSync(`${dicomFixturesDir}/non-image/comprehensive_sr_test-SR.dcm`)).run());
  assert.ok(sr instanceof UnrecoverableError);
  assert.match(sr.message, /^decode: NOT_AN_IMAGE: /);
  const cut = mosaic().subarray(0, 60_000);
  const truncated = await failureOf(indexing(cut).run());
  assert.ok(truncated instanceof UnrecoverableError);
  assert.deepEqual([classifyFailure(truncated.message).step, classifyFailure(truncated.message).code], ['decode', 'MALFORMED']);
});

/**
 * The embed job handler on a stand-in job (attempt `attemptsMade + 1` of EMBED_JOB_OPTIONS.attempts),
 * its upload embedding and heatmap steps throwing `fault`: what it threw, and the job's data after.
 */
async function failingEmbedJob(data: EmbedQueueJobData, attemptsMade: number, fault: Error) {
  const seen: string[] = [];
  const process = embedJobProcessor({
    version: '0.4.0',
    embedInstance: async () => assert.fail('no archived instance here'),
    embedDicom: async (bytes) => {
      seen.push(Buffer.from(bytes).toString('base64'));
      throw fault;
    },
    heatmap: async (d) => {
      seen.push('dicomBase64' in d.query ? d.query.dicomBase64 : '');
      throw fault;
    },
    write: async () => undefined,
    keyOf: () => undefined,
    onOtherModel: () => assert.fail('the job is for this model version'),
    otherModelMaxAgeMs: 20_000,
  });
  const job = {
    data,
    opts: { ...EMBED_JOB_OPTIONS },
    attemptsMade,
    async updateData(d: EmbedQueueJobData) {
      job.data = d;
    },
  };
  const err = await failureOf(process(job as unknown as Job<EmbedQueueJobData, EmbedQueueJobResult>));
  return { err, data: job.data, seen };
}

test('an upload whose embedding throws keeps its file for the retry, and drops it when no attempt is left', async () => {
  assert.equal(EMBED_JOB_OPTIONS.attempts, 2);
  const upload: EmbedQueueJobData = { kind: 'upload', dicomBase64: 'AAAA', modelVersion: '0.4.0', enqueuedAt: NOW };
  const outage = () => new Error('connect ECONNREFUSED 10.0.0.5:9200');

  const first = await failingEmbedJob(upload, 0, outage());
  assert.match(first.err.message, /ECONNREFUSED/, 'thrown as it was, so BullMQ retries');
  assert.deepEqual(first.seen, ['AAAA']);
  assert.equal(first.data.kind === 'upload' && first.data.dicomBase64, 'AAAA', 'the retry needs the file');

  const last = await failingEmbedJob(first.data, 1, outage());
  assert.match(last.err.message, /ECONNREFUSED/);
  assert.deepEqual(last.seen, ['AAAA'], 'the retry had the file');
  assert.equal(last.data.kind === 'upload' && last.data.dicomBase64, '', 'the failed job, kept 10 minutes, keeps no image');

  // Given up at the first attempt: nothing will read the file again.
  const unrecoverable = await failingEmbedJob(upload, 0, new UnrecoverableError('decode: MALFORMED: cut short'));
  assert.ok(unrecoverable.err instanceof UnrecoverableError);
  assert.equal(unrecoverable.data.kind === 'upload' && unrecoverable.data.dicomBase64, '');
});

test('a heatmap of an uploaded query that throws drops the upload when no attempt is left, and keeps the archived side', async () => {
  const result = { studyInstanceUid: '1.2', seriesInstanceUid: '1.2.3', sopInstanceUid: '1.2.3.4' };
  const heatmap: EmbedQueueJobData = { kind: 'heatmap', query: { dicomBase64: 'AAAA' }, result, modelVersion: '0.4.0', enqueuedAt: NOW };
  const retried = await failingEmbedJob(heatmap, 0, new Error('fetch (WADO-RS): 503'));
  assert.deepEqual(retried.data.kind === 'heatmap' && retried.data.query, { dicomBase64: 'AAAA' });
  const last = await failingEmbedJob(heatmap, 1, new Error('fetch (WADO-RS): 503'));
  assert.deepEqual(last.data.kind === 'heatmap' && [last.data.query, last.data.result], [{ dicomBase64: '' }, result]);
});
