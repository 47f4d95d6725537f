/**
 * Connection reuse towards the PACS (gateway/upstream-agent.ts): Orthanc's
 * `Keep-Alive: timeout=1` must not stop reuse, over http or https.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { createUpstreamAgent, idleWindowMs } from '../../gateway/upstream-agent.js';

/** Answers like Orthanc 1.10: keep-alive with a 1 s hint. Counts connections. */
function orthancLike(server: http.Server | https.Server): { connections: () => number } {
  let n = 0;
  server.on(server instanceof https.Server ? 'secureConnection' : 'connection', () => n++);
  server.on('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/dicom+json', 'keep-alive': 'timeout=1' }).end('[]');
  });
  return { connections: () => n };
}

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

function get(url: string, agent: http.Agent, extra: https.RequestOptions = {}): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const mod = url.startsWith('https:') ? https : http;
    const req = mod.get(url, { agent, ...extra }, (res) => {
      res.resume();
      res.on('end', () => resolve(req.reusedSocket));
    });
    req.on('error', reject);
  });
}

test('the idle window: ours, shortened to the PACS’s hint less a margin, none when the hint leaves nothing', () => {
  assert.equal(idleWindowMs(700, undefined), 700);
  assert.equal(idleWindowMs(700, 'timeout=1'), 700);
  assert.equal(idleWindowMs(5000, 'timeout=1'), 700);
  assert.equal(idleWindowMs(700, 'timeout=5, max=100'), 700);
  assert.equal(idleWindowMs(5000, 'max=100, timeout=2'), 1700);
  assert.equal(idleWindowMs(700, 'timeout=0'), 0);
  assert.equal(idleWindowMs(0, 'timeout=5'), 0);
});

test('http: a PACS that answers Keep-Alive: timeout=1 gets its connection reused', async () => {
  const server = http.createServer();
  const pacs = orthancLike(server);
  const port = await listen(server);
  const agent = createUpstreamAgent('http:', { maxSockets: 4, keepAliveMs: 700 });
  try {
    assert.equal(await get(`http://127.0.0.1:${port}/`, agent), false);
    assert.equal(await get(`http://127.0.0.1:${port}/`, agent), true);
    assert.equal(pacs.connections(), 1);
  } finally {
    agent.destroy();
    server.closeAllConnections();
    server.close();
  }
});

const openssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe('https PACS', { skip: openssl ? false : 'openssl is not installed: no certificate for a local https PACS' }, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cbmir-tls-'));
  const certFile = path.join(dir, 'cert.pem');
  let server: https.Server;
  let pacs: { connections: () => number };
  let port = 0;
  let cert: Buffer;

  after(() => {
    server?.closeAllConnections();
    server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the agent reuses the connection (no TLS handshake per request)', async () => {
    // A self-signed certificate for 127.0.0.1 (node:crypto makes keys, not certificates).
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        path.join(dir, 'key.pem'),
        '-out',
        certFile,
      ],
      { stdio: 'ignore' },
    );
    cert = readFileSync(certFile);
    server = https.createServer({ key: readFileSync(path.join(dir, 'key.pem')), cert });
    pacs = orthancLike(server);
    port = await listen(server);
    const agent = createUpstreamAgent('https:', { maxSockets: 4, keepAliveMs: 700 });
    try {
      assert.equal(await get(`https://127.0.0.1:${port}/`, agent, { ca: cert }), false);
      assert.equal(await get(`https://127.0.0.1:${port}/`, agent, { ca: cert }), true);
      assert.equal(pacs.connections(), 1);
    } finally {
      agent.destroy();
    }
  });

  test('Upstream sends sequential requests to an https PACS over one connection', async () => {
    // The PACS's CA must be trusted process-wide (NODE_EXTRA_CA_CERTS, read at start-up), so
    // Upstream runs in a child process; the PACS stays here and counts its connections.
    const before = pacs.connections();
    const script = `
      import { Upstream, parseEndpoint } from ${JSON.stringify(path.resolve(import.meta.dirname, '../../gateway/upstream.ts'))};
      const up = new Upstream({ timeoutMs: 5000, maxSockets: 4, keepAliveMs: 700 });
      const ep = parseEndpoint('https://127.0.0.1:${port}/dicom-web');
      const get = () => new Promise((resolve, reject) =>
        up.send({ endpoint: ep, method: 'GET', path: '/dicom-web/studies', headers: { host: ep.hostHeader }, body: null }, (err, res) =>
          err ? reject(err) : (res.resume(), res.on('end', resolve))));
      await get();
      await get();
      up.close();`;
    await new Promise<void>((resolve, reject) =>
      execFile(
        process.execPath,
        ['--import', 'tsx', '--input-type=module', '-e', script],
        { env: { ...process.env, NODE_EXTRA_CA_CERTS: certFile }, timeout: 30_000 },
        (err, _out, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve()),
      ),
    );
    assert.equal(pacs.connections() - before, 1);
  });
});
