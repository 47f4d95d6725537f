/** The change feed's client (workers/reconcile/orthanc-changes.ts) against a scripted Orthanc REST API. */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { OrthancChangeFeed } from '../../workers/reconcile/orthanc-changes.js';

let server: http.Server;
let url: string;
const requests: string[] = [];

before(async () => {
  // 50 series became stable (an import), spread over three pages of the feed.
  const changes = Array.from({ length: 50 }, (_, i) => ({ ChangeType: 'StableSeries', ID: `a${i.toString(16)}`, Seq: i + 1 }));
  server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    const u = new URL(req.url ?? '/', 'http://x');
    res.setHeader('content-type', 'application/json');
    if (u.pathname === '/changes' && u.searchParams.has('last')) return res.end(JSON.stringify({ Last: 50 }));
    if (u.pathname === '/changes') {
      const since = Number(u.searchParams.get('since'));
      const page = changes.filter((c) => c.Seq > since).slice(0, Number(u.searchParams.get('limit')));
      const last = page.at(-1)?.Seq ?? since;
      return res.end(JSON.stringify({ Changes: page, Done: last >= 50, Last: last }));
    }
    const id = /^\/series\/([0-9a-f]+)\/study$/.exec(u.pathname)?.[1];
    if (id) return res.end(JSON.stringify({ MainDicomTags: { StudyInstanceUID: `2.25.${parseInt(id.slice(1), 16) % 7}` } }));
    res.statusCode = 404;
    res.end('{}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((r) => server.close(() => r())));

test('change feed: a poll names each study once, follows the pages, and waits for the rate limit before every request', async () => {
  const feed = new OrthancChangeFeed({ url });
  try {
    requests.length = 0;
    let taken = 0;
    const { studies, last } = await feed.poll(0, 20, async () => {
      taken++;
    });
    assert.deepEqual(studies.sort(), ['2.25.0', '2.25.1', '2.25.2', '2.25.3', '2.25.4', '2.25.5', '2.25.6']);
    assert.equal(last, 50);
    assert.equal(requests.length, 3 + 50, 'three pages of the feed, one lookup per series');
    assert.equal(taken, requests.length, 'every request waited for the limiter');
  } finally {
    await feed.close();
  }
});

test('change feed: a study lookup that fails (not 404) fails the poll, so the cursor is not moved past it; a 404 (deleted) is skipped', async () => {
  let lookup = 503;
  const srv = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    res.setHeader('content-type', 'application/json');
    if (u.pathname === '/changes')
      return res.end(
        JSON.stringify({
          Changes: [
            { ChangeType: 'StableSeries', ID: 'ab', Seq: 7 },
            { ChangeType: 'StableSeries', ID: 'cd', Seq: 8 },
          ],
          Done: true,
          Last: 8,
        }),
      );
    if (u.pathname === '/series/ab/study') {
      res.statusCode = lookup;
      return res.end(lookup === 200 ? JSON.stringify({ MainDicomTags: { StudyInstanceUID: '2.25.9' } }) : '{}');
    }
    res.statusCode = 404; // 'cd': deleted since
    res.end('{}');
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const feed = new OrthancChangeFeed({ url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}` });
  try {
    await assert.rejects(feed.poll(6), /Orthanc answered 503 for a changed series' study/);
    lookup = 200;
    assert.deepEqual(await feed.poll(6), { studies: ['2.25.9'], last: 8 });
  } finally {
    await feed.close();
    await new Promise<void>((r) => srv.close(() => r()));
  }
});
