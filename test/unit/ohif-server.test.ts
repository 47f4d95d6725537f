/**
 * deploy/ohif: the generated app-config.js and the static server, on a stand-in
 * dist/ folder (the real viewer is exercised by test/e2e/ohif-viewer.test.ts).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import vm from 'node:vm';
import { after, before, describe, test } from 'node:test';
import { normaliseDicomWebRoot, ohifConfig, ohifConfigScript, similarConfigPath } from '../../deploy/ohif/app-config.js';
import { startOhifServer, type OhifServer } from '../../deploy/ohif/server.js';

interface DataSource {
  sourceName: string;
  configuration: Record<string, unknown>;
}

describe('OHIF app-config.js', () => {
  test('points every root of the one data source at the given DICOMweb root', () => {
    const c = ohifConfig({ dicomWebRoot: 'http://127.0.0.1:8080/similar-to/1.2.3/dicom-web/' });
    const ds = (c.dataSources as DataSource[])[0]!;
    assert.equal(c.defaultDataSourceName, ds.sourceName);
    assert.equal(ds.configuration.qidoRoot, 'http://127.0.0.1:8080/similar-to/1.2.3/dicom-web');
    assert.equal(ds.configuration.wadoRoot, 'http://127.0.0.1:8080/similar-to/1.2.3/dicom-web');
    assert.equal(ds.configuration.wadoUriRoot, 'http://127.0.0.1:8080/similar-to/1.2.3/wado', "the virtual root's own WADO-URI");
    assert.equal(ds.configuration.thumbnailRendering, 'thumbnail');
    assert.equal(c.routerBasename, '/');
  });

  test('wadoUriRoot: beside the root under any path prefix; origin + /wado for other roots; an explicit one wins', () => {
    const wadoUri = (o: Parameters<typeof ohifConfig>[0]) => (ohifConfig(o).dataSources as DataSource[])[0]!.configuration.wadoUriRoot;
    assert.equal(wadoUri({ dicomWebRoot: 'https://host.example/cbmir/dicom-web' }), 'https://host.example/cbmir/wado');
    assert.equal(wadoUri({ dicomWebRoot: 'http://127.0.0.1:8080/dicom-web/' }), 'http://127.0.0.1:8080/wado');
    assert.equal(
      wadoUri({ dicomWebRoot: 'https://host.example/cbmir/similar-to/1.2.3/dicom-web' }),
      'https://host.example/cbmir/similar-to/1.2.3/wado',
    );
    assert.equal(wadoUri({ dicomWebRoot: 'http://pacs.example:8042/other/rs' }), 'http://pacs.example:8042/wado');
    assert.equal(
      wadoUri({ dicomWebRoot: 'http://pacs.example/rs', wadoUriRoot: 'http://pacs.example/wado-uri/' }),
      'http://pacs.example/wado-uri',
    );
  });

  test('the script sets window.config to exactly that object, even for hostile-looking input', () => {
    const root = "http://127.0.0.1:8080/x';alert(1);'/dicom-web";
    const sandbox = { window: {} as { config?: unknown } };
    vm.runInNewContext(ohifConfigScript({ dicomWebRoot: root, investigationalUseDialog: 'never' }), sandbox);
    // Objects from another realm: compare their JSON.
    assert.deepEqual(
      JSON.parse(JSON.stringify(sandbox.window.config)),
      ohifConfig({ dicomWebRoot: root, investigationalUseDialog: 'never' }),
    );
    const ds = ((sandbox.window.config as Record<string, unknown>).dataSources as DataSource[])[0]!;
    assert.equal(ds.configuration.qidoRoot, new URL(root).href);
  });

  test('refuses roots OHIF cannot use or should not see', () => {
    for (const bad of ['/dicom-web', 'ftp://h/dicom-web', 'http://h/dicom-web?x=1', 'http://h/dicom-web#f', 'http://u:p@h/dicom-web', '']) {
      assert.throws(() => normaliseDicomWebRoot(bad), /DICOMweb root/, bad);
    }
    assert.throws(() => ohifConfig({ dicomWebRoot: 'http://h/dicom-web', maxNumberOfWebWorkers: 0 }), /maxNumberOfWebWorkers/);
  });
});

function get(
  url: string,
  method = 'GET',
): Promise<{ status: number; type: string; cache: string; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    // Raw path, no URL normalisation, so traversal attempts arrive as written.
    const req = http.request({ host: u.hostname, port: u.port, path: url.slice(u.origin.length), method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          type: String(res.headers['content-type'] ?? ''),
          cache: String(res.headers['cache-control'] ?? ''),
          body,
          headers: res.headers,
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

describe('OHIF static server', () => {
  let tmp: string;
  let srv: OhifServer;
  const bundle = 'app.bundle.0f6159c501addfe9.js';

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'cbmir-ohif-unit-'));
    const dist = path.join(tmp, 'dist');
    await mkdir(path.join(dist, 'assets'), { recursive: true });
    await writeFile(path.join(dist, 'index.html'), '<!doctype html><title>OHIF stand-in</title>');
    await writeFile(path.join(dist, 'app-config.js'), 'window.config = { packaged: true };');
    await writeFile(path.join(dist, bundle), 'console.log(1)');
    await writeFile(path.join(dist, 'assets', 'logo.svg'), '<svg/>');
    await writeFile(path.join(tmp, 'secret.txt'), 'outside dist');
    await symlink(path.join(tmp, 'secret.txt'), path.join(dist, 'link.txt'));
    srv = await startOhifServer({ distDir: dist, dicomWebRoot: 'http://127.0.0.1:8080/dicom-web', port: 0 });
  });
  after(async () => {
    await srv?.close();
    await rm(tmp, { recursive: true, force: true });
  });

  test('binds loopback by default', () => {
    assert.match(srv.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  });

  test('serves the generated app-config.js, not the packaged one, uncached', async () => {
    const r = await get(`${srv.url}/app-config.js`);
    assert.equal(r.status, 200);
    assert.match(r.type, /^text\/javascript/);
    assert.equal(r.cache, 'no-store');
    assert.doesNotMatch(r.body, /packaged/);
    assert.match(r.body, /"qidoRoot": "http:\/\/127\.0\.0\.1:8080\/dicom-web"/);
  });

  test("a query image's similar studies: its virtual root's config, for OHIF's configUrl only", async () => {
    const r = await get(`${srv.url}${similarConfigPath('1.2.840.5')}`);
    assert.deepEqual([r.status, r.cache], [200, 'no-store']);
    assert.match(r.type, /^application\/json/);
    const config = JSON.parse(r.body) as { dataSources: DataSource[]; dangerouslyUseDynamicConfig?: unknown };
    const ds = config.dataSources[0]!.configuration;
    assert.equal(ds.qidoRoot, 'http://127.0.0.1:8080/similar-to/1.2.840.5/dicom-web');
    assert.equal(ds.wadoUriRoot, 'http://127.0.0.1:8080/similar-to/1.2.840.5/wado');
    assert.equal(config.dangerouslyUseDynamicConfig, undefined, 'a loaded config loads no other');
    // The page's own config admits exactly that path shape (OHIF: configUrl.match(regex)).
    const regex = (ohifConfig({ dicomWebRoot: 'http://127.0.0.1:8080/dicom-web' }).dangerouslyUseDynamicConfig as { regex: string }).regex;
    assert.ok(similarConfigPath('1.2.840.5').match(regex));
    for (const bad of [
      'https://evil.example/similar-to/1.2/app-config.json',
      '//evil.example/similar-to/1.2/app-config.json',
      '/similar-to/1.2/app-config.json?x',
      '/similar-to/1.2/../x/app-config.json',
      '/similar-to/a/app-config.json',
    ])
      assert.equal(bad.match(regex), null, bad);
    for (const bad of [
      '/similar-to/1..2/app-config.json',
      `/similar-to/${'1.'.repeat(40)}1/app-config.json`,
      '/similar-to/x/app-config.json',
    ])
      assert.equal((await get(`${srv.url}${bad}`)).status, 404, bad);
  });

  test('no dynamic config where the root is not a gateway root (a virtual root, another PACS)', () => {
    for (const root of ['http://127.0.0.1:8080/similar-to/1.2.3/dicom-web', 'http://pacs:8042/wado-rs'])
      assert.equal(ohifConfig({ dicomWebRoot: root }).dangerouslyUseDynamicConfig, undefined, root);
  });

  test('files with their types; hashed bundles cacheable for good', async () => {
    const js = await get(`${srv.url}/${bundle}`);
    assert.deepEqual([js.status, js.body], [200, 'console.log(1)']);
    assert.match(js.type, /^text\/javascript/);
    assert.match(js.cache, /immutable/);
    const svg = await get(`${srv.url}/assets/logo.svg`);
    assert.deepEqual([svg.status, svg.type, svg.cache], [200, 'image/svg+xml', 'no-cache']);
    const head = await get(`${srv.url}/${bundle}`, 'HEAD');
    assert.deepEqual([head.status, head.body], [200, '']);
  });

  test('no other site may frame the viewer or read its URLs through Referer; nothing is sniffed', async () => {
    for (const p of ['/', '/viewer?StudyInstanceUIDs=1.2.3', '/app-config.js', `/${bundle}`, '/missing.bundle.js']) {
      const h = (await get(`${srv.url}${p}`)).headers;
      assert.equal(h['x-frame-options'], 'DENY', p);
      assert.equal(h['content-security-policy'], "frame-ancestors 'none'", p);
      assert.equal(h['referrer-policy'], 'no-referrer', p);
      assert.equal(h['x-content-type-options'], 'nosniff', p);
    }
  });

  test('client-side routes get index.html; missing assets are 404, not HTML', async () => {
    for (const p of ['/', '/viewer?StudyInstanceUIDs=1.2.3', '/viewer/dicomweb', '/index.html']) {
      const r = await get(`${srv.url}${p}`);
      assert.equal(r.status, 200, p);
      assert.match(r.body, /OHIF stand-in/, p);
    }
    for (const p of ['/missing.bundle.js', '/assets/none.png', '/x.wasm']) assert.equal((await get(`${srv.url}${p}`)).status, 404, p);
  });

  test('nothing outside dist/ is reachable: traversal, encoded traversal, symlinks', async () => {
    for (const p of ['/../secret.txt', '/%2e%2e/secret.txt', '/..%2fsecret.txt', '/assets/%2e%2e/%2e%2e/secret.txt', '/link.txt']) {
      const r = await get(`${srv.url}${p}`);
      assert.doesNotMatch(r.body, /outside dist/, p);
      assert.equal(r.status, 404, p);
    }
    assert.equal((await get(`${srv.url}/a%00b`)).status, 400);
  });

  test('read-only: other methods are 405', async () => {
    assert.equal((await get(`${srv.url}/`, 'POST')).status, 405);
    assert.equal((await get(`${srv.url}/app-config.js`, 'DELETE')).status, 405);
  });
});
