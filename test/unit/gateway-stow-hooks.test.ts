import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { BodyTooLarge, ByteLimit } from '../../gateway/body-limit.js';
import { derivePublicBase, fixedPublicBase } from '../../gateway/public-url.js';
import { StowHooks, type StowResponseEvent } from '../../gateway/stow-hooks.js';

const event: StowResponseEvent = {
  status: 200,
  contentType: 'application/dicom+json',
  body: Buffer.from('{}'),
  studyUid: undefined,
  reqId: 'r1',
};

test('a failing STOW listener (throwing or rejecting) neither throws nor stops the others', async () => {
  const warnings: string[] = [];
  const log = pino({ level: 'warn' }, new Writable({ write: (c, _e, cb) => (warnings.push(String(c)), cb()) }));
  const hooks = new StowHooks(log);
  const seen: string[] = [];
  hooks.add(() => {
    throw new Error('boom');
  });
  hooks.add(async () => Promise.reject(new Error('later boom')));
  const off = hooks.add((e) => {
    seen.push(e.reqId);
  });
  assert.doesNotThrow(() => hooks.emit(event));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(seen, ['r1']);
  assert.equal(warnings.length, 2);
  off();
  assert.equal(hooks.size, 2);
});

test('settle() waits for listeners still enqueuing (shutdown must not drop their jobs), bounded', async () => {
  const hooks = new StowHooks(pino({ level: 'silent' }));
  const enqueued: string[] = [];
  hooks.add(async (e) => {
    await new Promise((r) => setTimeout(r, 50)); // a Redis round trip
    enqueued.push(e.reqId);
  });
  hooks.emit(event);
  hooks.emit({ ...event, reqId: 'r2' });
  assert.equal(await hooks.settle(5_000), true);
  assert.deepEqual(enqueued, ['r1', 'r2']);
  assert.equal(await hooks.settle(10), true, 'nothing pending');
  const stuck = new StowHooks(pino({ level: 'silent' }));
  stuck.add(() => new Promise<void>(() => undefined)); // Redis gone: never settles
  stuck.emit(event);
  const t0 = Date.now();
  assert.equal(await stuck.settle(100), false);
  assert.ok(Date.now() - t0 < 2_000);
});

test('ByteLimit passes bodies up to the limit and fails past it', async () => {
  const sink: Buffer[] = [];
  const collect = new Writable({ write: (c: Buffer, _e, cb) => (sink.push(c), cb()) });
  await pipeline(Readable.from([Buffer.alloc(600), Buffer.alloc(400)]), new ByteLimit(1000), collect);
  assert.equal(Buffer.concat(sink).length, 1000);
  await assert.rejects(
    pipeline(Readable.from([Buffer.alloc(600), Buffer.alloc(401)]), new ByteLimit(1000), new Writable({ write: (_c, _e, cb) => cb() })),
    (e: unknown) => e instanceof BodyTooLarge && e.limitBytes === 1000,
  );
});

test('public base: configured URL wins; else forwarded headers, validated; else the fallback', () => {
  assert.deepEqual(fixedPublicBase('https://gw.example/cbmir/'), {
    base: 'https://gw.example/cbmir',
    host: 'gw.example',
    proto: 'https',
    path: '/cbmir',
  });
  assert.equal(derivePublicBase({ host: 'gw:8080' }, 'fb:1').base, 'http://gw:8080');
  assert.equal(
    derivePublicBase({ host: 'gw:8080', 'x-forwarded-host': 'a.example, b', 'x-forwarded-proto': 'https' }, 'fb:1').base,
    'https://a.example',
  );
  assert.equal(derivePublicBase({ host: 'evil.example/"><x' }, '127.0.0.1:8080').base, 'http://127.0.0.1:8080');
  assert.equal(derivePublicBase({ host: 'x;proto=https' }, '127.0.0.1:8080').host, '127.0.0.1:8080');
  assert.equal(derivePublicBase({ host: '[::1]:8080' }, 'fb:1').base, 'http://[::1]:8080');
  assert.equal(derivePublicBase({ 'x-forwarded-proto': 'gopher', host: 'h' }, 'fb').proto, 'http');
});
