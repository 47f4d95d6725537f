/**
 * Failures of the machine, not of the file (core/dicom/resources.ts): memory exhausted in dcmjs or
 * in a codec, codecs that do not start. decodeDicom throws them, for the worker to retry, instead
 * of refusing a good image for good; the file's own problems stay refusals. Each failure is
 * injected into the real decode of a real sample, at the dependency that would raise it.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';
import dcmjs from 'dcmjs';
import { initCodecs, markCodecsForReset } from '../../core/dicom/codecs.js';
import { decodeDicom } from '../../core/dicom/decode.js';
import { DecoderResourceError } from '../../core/dicom/resources.js';
import { dicomFixturesDir } from '../helpers/fixtures.js';

const lib = createRequire(import.meta.url)('dcmjs-codecs') as typeof import('dcmjs-codecs');
const fixture = (name: string) => readFileSync(path.join(dicomFixturesDir, name));
const RLE = 'transfer-syntax/siemens_mosaic_4.dcm';

/** Replaces `obj[key]` until the end of the test. */
const restores: (() => void)[] = [];
function stub<T extends object, K extends keyof T>(obj: T, key: K, value: T[K]): void {
  const original = obj[key];
  obj[key] = value;
  restores.push(() => (obj[key] = original));
}

const thrown = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    (r) => assert.fail(`expected a throw, got ${JSON.stringify(r).slice(0, 200)}`),
    (err: unknown) => err,
  );

describe('decodeDicom: resource failures are thrown, for a retry, not refused', () => {
  afterEach(() => {
    while (restores.length) restores.pop()!();
  });

  it('memory exhausted while dcmjs reads the file', async () => {
    stub(dcmjs.data.DicomMessage, 'readFile', () => {
      throw new RangeError('Array buffer allocation failed');
    });
    const err = await thrown(decodeDicom(fixture('transfer-syntax/siemens_mosaic_1.dcm')));
    assert.ok(err instanceof DecoderResourceError, String(err));
    assert.match(err.message, /^out of memory while decoding \(retried\): Array buffer allocation failed$/);
  });

  it('memory exhausted in a codec: in JavaScript or inside the WebAssembly module', async () => {
    await initCodecs();
    const failures: [Error, RegExp][] = [
      [new RangeError('Array buffer allocation failed'), /: rle codec: Array buffer allocation failed$/],
      [new Error('std::bad_alloc'), /: rle codec: bad_alloc$/], // a C++ allocation, as dcmjs-codecs reports it
    ];
    for (const [oom, message] of failures) {
      stub(lib.NativeCodecs, 'decodeRle', () => {
        throw oom;
      });
      const err = await thrown(decodeDicom(fixture(RLE)));
      assert.ok(err instanceof DecoderResourceError, String(err));
      assert.match(err.message, message);
    }
  });

  it('a codec module that does not load', async () => {
    markCodecsForReset(); // the next decode initialises the module again
    stub(lib.NativeCodecs, 'initializeAsync', () =>
      Promise.reject(new Error("ENOENT: no such file or directory, open '.../dcmjs-native-codecs.wasm'")),
    );
    const err = await thrown(decodeDicom(fixture(RLE)));
    assert.ok(err instanceof DecoderResourceError, String(err));
    assert.match(err.message, /^pixel codecs unavailable: ENOENT/);
    restores.pop()!();
    const again = await decodeDicom(fixture(RLE));
    assert.ok(again.ok, 'decodes once the module loads');
  });

  it('an array length out of range is the file\'s (V8 says "Invalid array length" whatever memory is free): a refusal', async () => {
    stub(dcmjs.data.DicomMessage, 'readFile', () => {
      throw new RangeError('Invalid array length');
    });
    const r = await decodeDicom(fixture('transfer-syntax/siemens_mosaic_1.dcm'));
    assert.ok(!r.ok, 'refused, not thrown for a retry');
    assert.match(r.reason, /Invalid array length/);
  });

  it('the codec rejecting the data, or trapping on it, is still a refusal', async () => {
    await initCodecs();
    stub(lib.NativeCodecs, 'decodeRle', () => {
      throw new Error('RLE: segment offsets out of range');
    });
    const r = await decodeDicom(fixture(RLE));
    assert.deepEqual(r.ok ? [] : [r.code, r.reason], ['DECODE_FAILED', 'frame 1: rle codec: RLE: segment offsets out of range']);
    stub(lib.NativeCodecs, 'decodeRle', () => {
      throw new WebAssembly.RuntimeError('unreachable');
    });
    const trap = await decodeDicom(fixture(RLE));
    assert.deepEqual(trap.ok ? [] : [trap.code, trap.reason], ['DECODE_FAILED', 'frame 1: rle codec: unreachable']);
  });
});
