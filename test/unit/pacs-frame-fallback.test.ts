/**
 * A multi-frame instance over CBMIR_WORKER_MAX_INSTANCE_BYTES is embedded from its middle frame,
 * fetched alone (workers/index-worker.ts fetchForEmbedding). A stub PACS (node:http) answers as
 * Orthanc's DICOMweb plugin 1.7 does: the instance declared larger than the limit; its metadata
 * as DICOM JSON, binary values as BulkDataURIs naming its public host; Retrieve Frames with
 * transfer-syntax=* as stored, the syntax in the part's media type ("image/jls;
 * transfer-syntax=…"). What the worker would embed must be exactly what decoding the whole file
 * gives: the same middle frame, the same pixels, in every transfer syntax.
 *
 * Samples: the repo's Enhanced MR (6 frames, native) and its own frames re-encoded by
 * dcmjs-codecs as RLE, JPEG-LS, JPEG 2000, JPEG lossless and big endian, and an 8-bit copy as
 * JPEG baseline, with a different rescale per frame so that the wrong frame's functional group
 * shows; with ../shared/dicom-samples, also its 96-frame Enhanced MR in those syntaxes and its
 * 30-frame JPEG baseline ultrasound (YBR_FULL_422) as they are.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { UnrecoverableError } from 'bullmq';
import dcmjs, { type DcmDataset } from 'dcmjs';
import { initCodecs } from '../../core/dicom/codecs.js';
import { items, num } from '../../core/dicom/dataset-values.js';
import { decodeDicom, selectFrames, type DecodeOk, type DecodeResult } from '../../core/dicom/decode.js';
import { encapsulatedFrames, nativeFrames } from '../../core/dicom/frames.js';
import { parseDicom } from '../../core/dicom/parse.js';
import { nativeFrameBytes } from '../../core/dicom/pixels.js';
import { pixelEncoding } from '../../core/dicom/transfer-syntaxes.js';
import { PacsClient, transferSyntaxOf } from '../../core/pacs/client.js';
import { classifyFailure } from '../../workers/failed-jobs.js';
import { fetchForEmbedding } from '../../workers/index-worker.js';
import { dicomFixturesDir, sharedDir } from '../helpers/fixtures.js';

const require = createRequire(import.meta.url);
const codecs = require('dcmjs-codecs') as typeof import('dcmjs-codecs');
// The transcoder's own dcmjs warns about every private attribute and ambiguous VR it meets.
const codecsLog = (createRequire(require.resolve('dcmjs-codecs'))('dcmjs') as typeof dcmjs).log;
codecsLog.setLevel('silent');
codecsLog.getLogger('validation.dcmjs').setLevel('silent');

const IDS = { studyInstanceUid: '1.2.3', seriesInstanceUid: '1.2.3.4', sopInstanceUid: '1.2.3.4.5' };
const INSTANCE = `/dicom-web/studies/${IDS.studyInstanceUid}/series/${IDS.seriesInstanceUid}/instances/${IDS.sopInstanceUid}`;
const FRAMES_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';
const LIMIT = 64 * 2 ** 20;
const middle = (frames: number) => selectFrames(frames, 'middle')[0]! + 1;

function ok(r: DecodeResult): DecodeOk {
  if (!r.ok) assert.fail(`expected a decoded image, got refusal ${r.code}: ${r.reason}`);
  return r;
}

/** The file rewritten by dcmjs (Explicit VR Little Endian) after `edit`. */
function edited(file: Uint8Array, edit: (ds: DcmDataset) => void): Uint8Array {
  const dict = dcmjs.data.DicomMessage.readFile(new Uint8Array(file).buffer);
  edit(dict.dict);
  return new Uint8Array(dict.write());
}

function transcoded(file: Uint8Array, transferSyntaxUid: string): Uint8Array {
  const t = new codecs.Transcoder(new Uint8Array(file).buffer);
  t.transcode(transferSyntaxUid);
  return new Uint8Array(t.getDicomPart10());
}

/** Frame i rescaled by slope 1 + i/4 and intercept −3i: taking another frame's functional group changes the pixels. */
const rescalePerFrame = (ds: DcmDataset) =>
  items(ds, '52009230').forEach((item, i) => {
    item['00289145'] = { vr: 'SQ', Value: [{ '00281052': { vr: 'DS', Value: [-3 * i] }, '00281053': { vr: 'DS', Value: [1 + i / 4] } }] };
  });

/** 16-bit samples as 8-bit (JPEG baseline takes nothing else). */
const eightBit = (ds: DcmDataset) => {
  const words = new Uint16Array((ds['7FE00010']!.Value as ArrayBuffer[])[0]!);
  ds['7FE00010'] = { vr: 'OB', Value: [Uint8Array.from(words, (v) => Math.min(255, v >> 2)).buffer] };
  ds['00280100'] = { vr: 'US', Value: [8] };
  ds['00280101'] = { vr: 'US', Value: [8] };
  ds['00280102'] = { vr: 'US', Value: [7] };
};

/** A Modality LUT Sequence (v → 7 + 3v) in place of every rescale, so the decoder needs LUT Data, a bulk value. */
const lutInsteadOfRescale = (ds: DcmDataset) => {
  for (const item of items(ds, '52009230')) delete item['00289145'];
  const lut = Uint16Array.from({ length: 4096 }, (_, v) => Math.min(65535, 7 + 3 * v));
  ds['00283000'] = {
    vr: 'SQ',
    Value: [{ '00283002': { vr: 'US', Value: [4096, 0, 16] }, '00283006': { vr: 'OW', Value: [lut.buffer] } }],
  };
};

const ENCODINGS: [string, string][] = [
  ['RLE', '1.2.840.10008.1.2.5'],
  ['JPEG-LS', '1.2.840.10008.1.2.4.80'],
  ['JPEG 2000', '1.2.840.10008.1.2.4.90'],
  ['JPEG lossless', '1.2.840.10008.1.2.4.70'],
  ['big endian', '1.2.840.10008.1.2.2'],
];

function samples(): [string, () => Uint8Array][] {
  const fixture = () => edited(readFileSync(path.join(dicomFixturesDir, 'multi-frame/enhanced_mr_xa10_6fr.dcm')), rescalePerFrame);
  const out: [string, () => Uint8Array][] = [
    ['Enhanced MR, 6 frames, native', fixture],
    ...ENCODINGS.map(([name, ts]): [string, () => Uint8Array] => [`Enhanced MR, 6 frames, ${name}`, () => transcoded(fixture(), ts)]),
    ['Enhanced MR, 6 frames, 8-bit, JPEG baseline', () => transcoded(edited(fixture(), eightBit), '1.2.840.10008.1.2.4.50')],
  ];
  const shared = sharedDir();
  if (shared) {
    const dir = path.join(shared, 'dicom-samples', 'multi-frame');
    const mr = () => new Uint8Array(readFileSync(path.join(dir, 'enhanced_mr_t1w_brain_96fr.dcm')));
    out.push(
      ['shared Enhanced MR, 96 frames, native', mr],
      ...ENCODINGS.map(([name, ts]): [string, () => Uint8Array] => [`shared Enhanced MR, 96 frames, ${name}`, () => transcoded(mr(), ts)]),
      [
        'shared ultrasound, 30 frames, JPEG baseline YBR_FULL_422',
        () => new Uint8Array(readFileSync(path.join(dir, 'us_multiframe_jpeg_ybr_30fr.dcm'))),
      ],
    );
  }
  return out;
}

/** The media type Orthanc's DICOMweb plugin 1.7 gives a frame (big endian, which it has none for: a conforming PACS's). */
function frameMediaType(ts: string): string {
  const kind = pixelEncoding(ts)?.kind;
  const media =
    kind === 'jpeg'
      ? 'image/jpeg'
      : kind === 'rle'
        ? 'image/dicom-rle'
        : kind === 'jpegls'
          ? 'image/jls'
          : kind === 'jpeg2000'
            ? 'image/jp2'
            : 'application/octet-stream';
  return `${media}; transfer-syntax=${ts}`;
}

const BINARY_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'UN']);
const PUBLIC_ROOT = 'http://orthanc.example:8042';

/** The dataset as Orthanc's /metadata writes it: binary values by BulkDataURI (its bulk route), AT as hex, empty values without Value. */
function orthancJson(ds: DcmDataset, at = `${INSTANCE}/bulk`): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [tag, el] of Object.entries(ds)) {
    const here = `${at}/${tag.toLowerCase()}`;
    const values = el.Value ?? [];
    if (el.vr === 'SQ') out[tag] = { vr: 'SQ', Value: values.map((item, i) => orthancJson(item as DcmDataset, `${here}/${i + 1}`)) };
    else if (BINARY_VRS.has(el.vr)) out[tag] = { vr: el.vr, BulkDataURI: PUBLIC_ROOT + here };
    else if (el.vr === 'AT') out[tag] = { vr: 'AT', Value: values.map((v) => Number(v).toString(16).toUpperCase().padStart(8, '0')) };
    else out[tag] = values.length ? { vr: el.vr, Value: values } : { vr: el.vr };
  }
  return out;
}

/** The bytes a bulk route names: /bulk/52009229/1/00283006 → that element of that item. */
function bulkValue(ds: DcmDataset, route: string): Uint8Array | undefined {
  const steps = route.split('/').filter(Boolean);
  let here: DcmDataset | undefined = ds;
  for (let i = 0; i < steps.length - 1; i += 2) here = items(here, steps[i]!.toUpperCase())[Number(steps[i + 1]) - 1];
  const v = here?.[steps[steps.length - 1]!.toUpperCase()]?.Value?.[0];
  return v instanceof ArrayBuffer ? new Uint8Array(v) : undefined;
}

/** The frames as the PACS stores them. */
function storedFrames(ds: DcmDataset, ts: string): Uint8Array[] {
  const count = Math.max(1, num(ds, '00280008') ?? 1);
  const value = (ds['7FE00010'] ?? ds['7FE00008'] ?? ds['7FE00009'])!.Value!; // Pixel Data, Float, Double Float
  const format = {
    rows: num(ds, '00280010')!,
    cols: num(ds, '00280011')!,
    samplesPerPixel: num(ds, '00280002') ?? 1,
    bitsAllocated: num(ds, '00280100')!,
    photometric: String(ds['00280004']?.Value?.[0] ?? 'MONOCHROME2'),
  };
  const split =
    pixelEncoding(ts)?.kind === 'native' ? nativeFrames(value, count, nativeFrameBytes(format)) : encapsulatedFrames(value, count);
  assert.ok(split.ok);
  return split.frames;
}

function multipart(res: http.ServerResponse, type: string, body: Uint8Array): void {
  const boundary = 'orthanc-boundary';
  res.writeHead(200, { 'content-type': `multipart/related; type=${type}; boundary=${boundary}` });
  res.end(Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Type: ${type}\r\n\r\n`), body, Buffer.from(`\r\n--${boundary}--\r\n`)]));
}

interface StubOptions {
  /** How the whole instance is too large: a declared Content-Length, or a body that streams past the limit. */
  readonly instance?: 'declared' | 'streamed';
  /** The frame answer declares this many bytes (and sends none). */
  readonly frameDeclares?: number;
  /** Status for the frame request instead of the frame. */
  readonly frameStatus?: number;
}

/** A PACS holding `file` as instance IDS; records each request as "path accept". */
async function stubPacs(file: Uint8Array, opts: StubOptions = {}) {
  const parsed = parseDicom(file);
  assert.ok(parsed.ok);
  const { dataset, transferSyntaxUid } = parsed.value;
  const frames = storedFrames(dataset, transferSyntaxUid);
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const url = req.url ?? '';
    requests.push(`${url} ${req.headers.accept ?? ''}`);
    const frame = /\/frames\/(\d+)$/.exec(url);
    if (url === INSTANCE) {
      if (opts.instance === 'streamed') {
        res.writeHead(200, { 'content-type': 'multipart/related; type="application/dicom"; boundary=b' });
        const chunk = Buffer.alloc(64 * 1024);
        const more = (): void => {
          while (!res.destroyed) if (!res.write(chunk)) return void res.once('drain', more);
        };
        more();
      } else {
        res.writeHead(200, {
          'content-type': 'multipart/related; type="application/dicom"; boundary=b',
          'content-length': String(2 ** 31),
        });
        res.flushHeaders();
      }
    } else if (url === `${INSTANCE}/metadata`) {
      res.writeHead(200, { 'content-type': 'application/dicom+json' });
      res.end(JSON.stringify([orthancJson(dataset)]));
    } else if (frame && opts.frameStatus) {
      res.writeHead(opts.frameStatus).end();
    } else if (frame && opts.frameDeclares) {
      res.writeHead(200, {
        'content-type': `multipart/related; type=${frameMediaType(transferSyntaxUid)}; boundary=b`,
        'content-length': String(opts.frameDeclares),
      });
      res.flushHeaders();
    } else if (frame && frames[Number(frame[1]) - 1]) {
      multipart(res, frameMediaType(transferSyntaxUid), frames[Number(frame[1]) - 1]!);
    } else if (url.startsWith(`${INSTANCE}/bulk/`) && bulkValue(dataset, url.slice(`${INSTANCE}/bulk`.length))) {
      multipart(res, 'application/octet-stream', bulkValue(dataset, url.slice(`${INSTANCE}/bulk`.length))!);
    } else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const pacs = new PacsClient({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/dicom-web`, timeoutMs: 30_000 });
  return {
    pacs,
    requests,
    frameCount: frames.length,
    async close() {
      await pacs.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function failureOf(p: Promise<unknown>): Promise<Error> {
  return p.then(
    () => assert.fail('fetched'),
    (e: unknown) => e as Error,
  );
}

before(() => initCodecs());

describe('a multi-frame instance over the limit: the same embedding input as the whole file', () => {
  for (const [name, sample] of samples()) {
    it(`${name}: its middle frame, pixel for pixel`, async () => {
      const file = sample();
      const whole = ok(await decodeDicom(file));
      const stub = await stubPacs(file);
      try {
        const fetched = await fetchForEmbedding(stub.pacs, IDS, LIMIT, middle);
        assert.deepEqual(fetched.frame, { number: whole.frames[0]!.frameNumber, of: stub.frameCount });
        assert.ok(stub.frameCount > 1);
        const alone = ok(await decodeDicom(fetched.bytes));
        assert.equal(alone.frames.length, 1);
        const [a, w] = [alone.frames[0]!, whole.frames[0]!];
        assert.deepEqual([a.rows, a.cols], [w.rows, w.cols]);
        assert.deepEqual(a.pixels, w.pixels);
        const ids = ({ sopInstanceUid, studyInstanceUid, seriesInstanceUid, modality, bodyPartExamined, patientId }: DecodeOk['meta']) => ({
          sopInstanceUid,
          studyInstanceUid,
          seriesInstanceUid,
          modality,
          bodyPartExamined,
          patientId,
        });
        assert.deepEqual(ids(alone.meta), ids(whole.meta));
        assert.deepEqual(stub.requests, [
          `${INSTANCE} multipart/related; type="application/dicom"; transfer-syntax=*`,
          `${INSTANCE}/metadata application/dicom+json`,
          `${INSTANCE}/frames/${w.frameNumber} ${FRAMES_ACCEPT}`,
        ]);
      } finally {
        await stub.close();
      }
    });
  }

  it('an instance of no declared length is cut off at the limit and then fetched the same way', async () => {
    const file = edited(readFileSync(path.join(dicomFixturesDir, 'multi-frame/enhanced_mr_xa10_6fr.dcm')), rescalePerFrame);
    const stub = await stubPacs(file, { instance: 'streamed' });
    try {
      const fetched = await fetchForEmbedding(stub.pacs, IDS, 2 ** 20, middle);
      assert.deepEqual(ok(await decodeDicom(fetched.bytes)).frames[0]!.pixels, ok(await decodeDicom(file)).frames[0]!.pixels);
      assert.equal(fetched.frame?.number, 3);
    } finally {
      await stub.close();
    }
  });

  it('follows the BulkDataURIs the decoder needs (LUT Data) through the PACS client, whatever host they name', async () => {
    const file = edited(readFileSync(path.join(dicomFixturesDir, 'multi-frame/enhanced_mr_xa10_6fr.dcm')), lutInsteadOfRescale);
    const stub = await stubPacs(file);
    try {
      const fetched = await fetchForEmbedding(stub.pacs, IDS, LIMIT, middle);
      assert.deepEqual(ok(await decodeDicom(fetched.bytes)).frames[0]!.pixels, ok(await decodeDicom(file)).frames[0]!.pixels);
      assert.deepEqual(
        stub.requests.filter((r) => r.includes('/bulk/')),
        [`${INSTANCE}/bulk/00283000/1/00283006 multipart/related; type="application/octet-stream"`],
        'LUT Data only: not Pixel Data nor the private binary values',
      );
    } finally {
      await stub.close();
    }
  });
});

describe('what stays refused', () => {
  it('a single-frame instance over the limit is refused as decode/TOO_LARGE, its frames never asked for', async () => {
    const stub = await stubPacs(readFileSync(path.join(dicomFixturesDir, 'transfer-syntax/jpeg_baseline_SC_rgb_jpeg_dcmtk.dcm')));
    try {
      const err = await failureOf(fetchForEmbedding(stub.pacs, IDS, LIMIT, middle));
      assert.ok(err instanceof UnrecoverableError, String(err));
      assert.equal(
        err.message,
        `decode: TOO_LARGE: WADO-RS answer of ${2 ** 31} bytes for the instance exceeds CBMIR_WORKER_MAX_INSTANCE_BYTES (${LIMIT}), ` +
          'and a single-frame instance has no smaller part to fetch',
      );
      const c = classifyFailure(err.message);
      assert.deepEqual([c.step, c.code, c.retryable], ['decode', 'TOO_LARGE', false]);
      assert.ok(!stub.requests.some((r) => r.includes('/frames/')));
    } finally {
      await stub.close();
    }
  });

  it('Float and Double Float Pixel Data are refused from the metadata as the whole file is, its frames never asked for', async () => {
    const mr = readFileSync(path.join(dicomFixturesDir, 'multi-frame/enhanced_mr_xa10_6fr.dcm'));
    for (const [tag, vr, bits, Samples] of [
      ['7FE00008', 'OF', 32, Float32Array],
      ['7FE00009', 'OD', 64, Float64Array],
    ] as const) {
      // The real sample's 16-bit samples as floats, in Float (or Double Float) Pixel Data.
      const file = edited(mr, (ds) => {
        const words = new Uint16Array((ds['7FE00010']!.Value as ArrayBuffer[])[0]!);
        delete ds['7FE00010'];
        for (const t of ['00280101', '00280102', '00280103']) delete ds[t];
        ds['00280100'] = { vr: 'US', Value: [bits] };
        ds[tag] = { vr, Value: [Samples.from(words).buffer] };
      });
      const whole = await decodeDicom(file);
      assert.ok(!whole.ok, tag);
      const stub = await stubPacs(file);
      try {
        const err = await failureOf(fetchForEmbedding(stub.pacs, IDS, LIMIT, middle));
        assert.ok(err instanceof UnrecoverableError, String(err));
        assert.equal(err.message, `decode: ${whole.code}: ${whole.reason}`);
        assert.equal(err.message, 'decode: UNSUPPORTED_PIXELS: float pixel data is not supported');
        assert.ok(!stub.requests.some((r) => r.includes('/frames/')), tag);
      } finally {
        await stub.close();
      }
    }
  });

  it('a frame answer over the limit is refused as decode/TOO_LARGE, naming the frame', async () => {
    const stub = await stubPacs(readFileSync(path.join(dicomFixturesDir, 'multi-frame/enhanced_mr_xa10_6fr.dcm')), {
      frameDeclares: 2 ** 31,
    });
    try {
      const err = await failureOf(fetchForEmbedding(stub.pacs, IDS, LIMIT, middle));
      assert.ok(err instanceof UnrecoverableError, String(err));
      assert.equal(
        err.message,
        `decode: TOO_LARGE: WADO-RS answer of ${2 ** 31} bytes for frame 3 exceeds CBMIR_WORKER_MAX_INSTANCE_BYTES (${LIMIT})`,
      );
    } finally {
      await stub.close();
    }
  });

  it('a frame the PACS does not have fails for good; a PACS answering 503 is retried', async () => {
    const file = readFileSync(path.join(dicomFixturesDir, 'multi-frame/enhanced_mr_xa10_6fr.dcm'));
    for (const [status, permanent] of [
      [404, true],
      [503, false],
    ] as const) {
      const stub = await stubPacs(file, { frameStatus: status });
      try {
        const err = await failureOf(fetchForEmbedding(stub.pacs, IDS, LIMIT, middle));
        assert.equal(err instanceof UnrecoverableError, permanent, `${status}: ${err.message}`);
        assert.match(err.message, new RegExp(`PACS answered ${status} for /studies/.*/frames/3$`));
      } finally {
        await stub.close();
      }
    }
  });
});

describe('transferSyntaxOf', () => {
  it('reads a frame’s transfer syntax from its media type as Orthanc and the standard write it', () => {
    assert.equal(
      transferSyntaxOf('multipart/related; type=image/jls; transfer-syntax=1.2.840.10008.1.2.4.80; boundary=x'),
      '1.2.840.10008.1.2.4.80',
    );
    assert.equal(transferSyntaxOf('image/dicom-rle; transfer-syntax=1.2.840.10008.1.2.5'), '1.2.840.10008.1.2.5');
    assert.equal(
      transferSyntaxOf('image/jp2; transferSyntax=1.2.840.10008.1.2.4.90'),
      '1.2.840.10008.1.2.4.90',
      'DICOMweb plugin before 1.2',
    );
    assert.equal(transferSyntaxOf('multipart/related; type="application/octet-stream"; boundary=x'), '1.2.840.10008.1.2.1');
    assert.equal(transferSyntaxOf('image/jpeg'), '1.2.840.10008.1.2.4.70', 'PS3.18 default');
    assert.equal(transferSyntaxOf('text/plain'), undefined);
    assert.equal(transferSyntaxOf(undefined), undefined);
  });
});
