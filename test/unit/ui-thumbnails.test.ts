/**
 * gateway/ui/api.js's thumbnail queue (plain browser JS, imported here as an ES module):
 * a few fetches at a time, and a thumbnail that left the page while it waited is skipped,
 * so the series on screen is not held up behind one the user clicked past; the picker's
 * thumbnails wait behind the query's and the results'.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { repoRoot } from '../helpers/fixtures.js';

interface ApiModule {
  thumbnailUrl(path: string, opts?: { wanted?: () => boolean; priority?: 'high' | 'low' }): Promise<string>;
}

let api: ApiModule;
let base = '';
const asked: string[] = [];
const held: Array<() => void> = [];
const server = http.createServer((req, res) => {
  asked.push(req.url ?? '');
  held.push(() => res.writeHead(200, { 'content-type': 'image/png' }).end(Buffer.from([0x89, 0x50, 0x4e, 0x47])));
});

before(async () => {
  // A computed specifier: the page's JS is not part of the TypeScript project.
  api = (await import(pathToFileURL(path.join(repoRoot, 'gateway', 'ui', 'api.js')).href)) as ApiModule;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => server.close());

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), 'timed out');
}

test('ui: at most four thumbnails load at once, and one that left the page while it waited is never fetched', async () => {
  const shown = new Set(['a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'b1', 'b2']);
  const get = (name: string) => api.thumbnailUrl(`${base}/${name}`, { wanted: () => shown.has(name) });
  // Series A's four fill the slots; A's fifth and sixth wait, then B's two.
  const a = ['a1', 'a2', 'a3', 'a4', 'a5', 'a6'].map((n) =>
    get(n).then(
      () => 'ok',
      (e: Error) => e.name,
    ),
  );
  const b = ['b1', 'b2'].map((n) =>
    get(n).then(
      () => 'ok',
      (e: Error) => e.name,
    ),
  );
  await until(() => asked.length === 4);
  assert.deepEqual(asked, ['/a1', '/a2', '/a3', '/a4']);

  // The user opens series B: A's strip leaves the page (a5, a6 were never shown).
  shown.delete('a5');
  shown.delete('a6');
  for (const release of held.splice(0)) release();
  await until(() => asked.length === 6);
  assert.deepEqual(asked.slice(4), ['/b1', '/b2'], 'B waited behind thumbnails no longer on the page');
  for (const release of held.splice(0)) release();
  assert.deepEqual(await Promise.all([...a, ...b]), ['ok', 'ok', 'ok', 'ok', 'AbortError', 'AbortError', 'ok', 'ok']);
  assert.equal(asked.length, 6);
});

test('ui: a result thumbnail goes ahead of the picker thumbnails queued before it', async () => {
  asked.length = 0;
  const settle = (p: Promise<string>) =>
    p.then(
      () => 'ok',
      (e: Error) => e.name,
    );
  // A long series in the picker: four load, sixteen wait.
  const picker = Array.from({ length: 20 }, (_, k) => settle(api.thumbnailUrl(`${base}/p${k + 1}`, { priority: 'low' })));
  const drain = async () => {
    for (let i = 0; i < 200 && (asked.length < 21 || held.length); i++) {
      for (const release of held.splice(0)) release();
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  try {
    await until(() => asked.length === 4);
    // Then the user searches: the result's thumbnail (the heatmap waits for it too).
    const result = settle(api.thumbnailUrl(`${base}/result`));
    held.shift()!();
    await until(() => asked.length === 5);
    assert.equal(asked[4], '/result', `the result thumbnail waited behind the picker: ${asked.join(' ')}`);
    // The picker's go on after it (the server sees requests started together in any order).
    await drain();
    assert.deepEqual(new Set(asked.slice(5)), new Set(Array.from({ length: 16 }, (_, k) => `/p${k + 5}`)));
    assert.deepEqual(await Promise.all([...picker, result]), Array(21).fill('ok'));
  } finally {
    await drain(); // a failed assertion leaves no request hanging on the test's server
  }
});
