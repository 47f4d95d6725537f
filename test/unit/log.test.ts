/** core/log.ts: what reaches a log line. UIDs (identifiers under de-identification rules) never do. */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger, scrubUids } from '../../core/log.js';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { lines, stream };
}

test('log: UIDs in fields, nested errors and messages are replaced; addresses, versions and numbers stay', () => {
  const { lines, stream } = capture();
  const log = createLogger('info', 'test', stream);
  log.warn(
    {
      err: 'PACS answered 500 for /studies/2.25.173034427058252326210734503483570814372/instances',
      detail: { series: ['1.2.840.113619.2.55.3.604688119'] },
      host: '127.0.0.1',
      version: '0.4.0-int8',
      ms: 12.5,
      time: 1795922495094,
    },
    'study 1.3.6.1.4.1.14519.5.2.1 not checked',
  );
  const line = lines.join('');
  assert.doesNotMatch(line, /2\.25\.1730|1\.2\.840\.113619|1\.3\.6\.1\.4\.1/, line);
  const o = JSON.parse(line) as Record<string, unknown>;
  assert.equal(o.err, 'PACS answered 500 for /studies/<uid>/instances');
  assert.deepEqual(o.detail, { series: ['<uid>'] });
  assert.equal(o.msg, 'study <uid> not checked');
  assert.equal(o.host, '127.0.0.1');
  assert.equal(o.version, '0.4.0-int8');
  assert.equal(o.ms, 12.5);
});

test('log: an Error object keeps its message, without the UIDs in it', () => {
  const { lines, stream } = capture();
  createLogger('info', 'test', stream).error({ err: new Error('PACS answered 404 for /studies/1.2.840.113619.2.5.1/series') }, 'failed');
  const o = JSON.parse(lines.join('')) as { err: { message: string; stack: string } };
  assert.equal(o.err.message, 'PACS answered 404 for /studies/<uid>/series');
  assert.doesNotMatch(o.err.stack, /1\.2\.840/);
});

test('log: what is and is not taken for a UID', () => {
  assert.equal(scrubUids('1.2.3.4.5'), '<uid>');
  assert.equal(scrubUids('2.25.1234567890'), '<uid>');
  assert.equal(scrubUids('10.0.0.1:8042'), '10.0.0.1:8042');
  // job ids are `<uid>_<version>`: no word boundary after the UID, and none of it may leak
  assert.equal(scrubUids('job 2.25.329800735698586629295641978511506172918_0.2.0 failed'), 'job <uid>_0.2.0 failed');
  assert.equal(scrubUids('q_1.2.3.4.5_0.4.0-int8'), 'q_<uid>_0.4.0-int8');
  assert.equal(scrubUids('study 1.2.3.4.5.'), 'study <uid>.');
  assert.equal(scrubUids('model 0.4.0 took 36.9 ms'), 'model 0.4.0 took 36.9 ms');
  // the standard's own UIDs (a transfer syntax in a refusal) name no one
  assert.equal(scrubUids('transfer syntax 1.2.840.10008.1.2.4.100 unsupported'), 'transfer syntax 1.2.840.10008.1.2.4.100 unsupported');
});
