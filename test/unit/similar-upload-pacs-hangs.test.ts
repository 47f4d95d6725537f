/**
 * POST /similar with a PACS that takes connections and never answers (gateway/similar-credentials.ts):
 * the credential probe gives up after its own 2 s, not the PACS client's timeout (up to 10 s), so
 * the upload goes on to its embedding; and a probe without an answer is not cached.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../core/config.js';
import type { VectorIndex } from '../../core/index/types.js';
import type { EmbedJobResult } from '../../core/jobs.js';
import { createLogger } from '../../core/log.js';
import { PacsClient } from '../../core/pacs/client.js';
import { callerOf } from '../../gateway/caller.js';
import { expressGateway } from './fake-gateway.js';
import { attachSimilar } from '../../gateway/similar.js';
import { CredentialProbe } from '../../gateway/similar-credentials.js';

/** The smallest body POST /similar takes to a worker: a preamble and "DICM". */
const PART10 = Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), Buffer.alloc(16)]);

let asked = 0;
let pacs: http.Server;
let pacsUrl = '';

before(async () => {
  pacs = http.createServer(() => void asked++); // never answers
  pacs.listen(0, '127.0.0.1');
  await once(pacs, 'listening');
  pacsUrl = `http://127.0.0.1:${(pacs.address() as AddressInfo).port}/dicom-web`;
});

after(() => {
  pacs.closeAllConnections();
  pacs.close();
});

test('a PACS that never answers: the upload reaches its embedding within about 2 s', async () => {
  const closeHooks: Array<() => Promise<void> | void> = [];
  const { gateway, app } = expressGateway(closeHooks);
  const index = { liveVersion: async () => 'v1', knn: async () => [] } as unknown as VectorIndex;
  let embeddedAt: number | undefined;
  const embed = {
    embed: async () => {
      embeddedAt = Date.now();
      return { status: 'embedded', vector: [1, 0, 0, 0], modelVersion: 'v1' } as EmbedJobResult;
    },
    close: async () => undefined,
  };
  attachSimilar(gateway, {
    config: loadConfig({ CBMIR_PACS_URL: pacsUrl, CBMIR_PACS_TIMEOUT_MS: '10000' }),
    index,
    modelVersion: 'v1',
    logger: createLogger('silent', 'test'),
    embed,
  });
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const abort = new AbortController();
  const t0 = Date.now();
  try {
    // What follows the embedding (the access check) waits for the PACS in its turn: not this test's.
    const answer = fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/similar`, {
      method: 'POST',
      headers: { 'content-type': 'application/dicom' },
      body: PART10,
      signal: abort.signal,
    }).catch(() => undefined);
    while (embeddedAt === undefined && Date.now() - t0 < 4_000) await new Promise((r) => setTimeout(r, 20));
    assert.ok(embeddedAt !== undefined, 'the upload was embedded within 4 s');
    assert.ok(embeddedAt - t0 < 3_000, `embedded after ${embeddedAt - t0} ms`);
    abort.abort();
    await answer;
  } finally {
    abort.abort();
    server.closeAllConnections();
    server.close();
    pacs.closeAllConnections(); // the gateway's PACS pool closes once its requests have ended
    for (const h of closeHooks) await h();
  }
});

test('a probe the PACS did not answer in time is not refused, and not cached', async () => {
  const client = new PacsClient({ url: pacsUrl, timeoutMs: 10_000 });
  const probe = new CredentialProbe(client, { ttlMs: 60_000, maxEntries: 10, deadlineMs: 100 });
  const caller = callerOf({ authorization: 'Basic dTpw' });
  try {
    const before = asked;
    const t0 = Date.now();
    await probe.require(caller);
    await probe.require(caller);
    assert.ok(Date.now() - t0 < 1_000, `${Date.now() - t0} ms`);
    // Wait for the second request to reach the server (it is counted when its headers arrive).
    for (let i = 0; i < 50 && asked - before < 2; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(asked - before, 2, 'asked again: nothing was cached');
  } finally {
    pacs.closeAllConnections();
    await client.close();
  }
});
