/**
 * The page's settings and files (core/config.ts CBMIR_VIEWER_URL_TEMPLATE /
 * CBMIR_BLUELIGHT_URL_TEMPLATE, gateway/ui.ts loadAssets): a template becomes an href on
 * the page, so only http(s) URLs and gateway paths are accepted (never javascript:);
 * only the page's own kinds of files are served; config.json tells the page the largest
 * /similar limit (CBMIR_SIMILAR_MAX_LIMIT), which bounds its Results field.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import express from 'express';
import { ConfigError, loadConfig } from '../../core/config.js';
import type { Gateway } from '../../gateway/server.js';
import { attachUi, loadAssets, uiDir, uiPageConfig, type UiPageConfig } from '../../gateway/ui.js';

const DEFAULT_VIEWER = 'http://127.0.0.1:3000/viewer?StudyInstanceUIDs={study}&initialSeriesInstanceUID={series}&initialSOPInstanceUID={instance}';

describe('/ui settings and files', () => {
  it('viewer templates: OHIF default, BlueLight optional, only http(s) or a path', () => {
    const d = loadConfig({});
    assert.equal(d.ui.viewerUrlTemplate, DEFAULT_VIEWER);
    assert.equal(d.ui.blueLightUrlTemplate, undefined);
    const c = loadConfig({ CBMIR_VIEWER_URL_TEMPLATE: '/ohif/viewer?StudyInstanceUIDs={study}', CBMIR_BLUELIGHT_URL_TEMPLATE: 'https://pacs.example/bluelight/html/start.html?StudyInstanceUID={study}' });
    assert.equal(c.ui.viewerUrlTemplate, '/ohif/viewer?StudyInstanceUIDs={study}');
    assert.equal(loadConfig({ CBMIR_VIEWER_URL_TEMPLATE: 'none' }).ui.viewerUrlTemplate, undefined, 'none: no viewer link');
    // The query image's similar studies in deploy/ohif's viewer (its /similar-to/{sop}/app-config.json).
    assert.equal(d.ui.viewerSimilarUrlTemplate, 'http://127.0.0.1:3000/?configUrl=%2Fsimilar-to%2F{instance}%2Fapp-config.json');
    assert.equal(loadConfig({ CBMIR_VIEWER_SIMILAR_URL_TEMPLATE: 'none' }).ui.viewerSimilarUrlTemplate, undefined);
    assert.throws(() => loadConfig({ CBMIR_VIEWER_SIMILAR_URL_TEMPLATE: 'javascript:alert(1)' }), /CBMIR_VIEWER_SIMILAR_URL_TEMPLATE/);
    assert.match(c.ui.blueLightUrlTemplate ?? '', /^https:/);
    for (const bad of ['javascript:alert(1)', 'data:text/html,x', 'None', 'none ', 'ftp://x/{study}', 'viewer?x={study}', 'http://a b/{study}', '//evil.example/{study}', '/\\evil.example/{study}', '/\\/evil.example/{study}']) {
      assert.throws(() => loadConfig({ CBMIR_VIEWER_URL_TEMPLATE: bad }), (e: unknown) => e instanceof ConfigError && /CBMIR_VIEWER_URL_TEMPLATE/.test(e.message), bad);
    }
  });

  it('the default viewer link opens OHIF on the result: study, series and image, URL-encoded', async () => {
    // A computed specifier: the page's JS is not part of the TypeScript project.
    const api = (await import(pathToFileURL(path.join(uiDir(), 'api.js')).href)) as {
      viewerUrl(template: string, uids: { study: string; series: string; sop: string }): string;
    };
    const href = api.viewerUrl(DEFAULT_VIEWER, { study: '1.2.3', series: '1.2.3.4', sop: '1.2&x=5' });
    assert.equal(href, 'http://127.0.0.1:3000/viewer?StudyInstanceUIDs=1.2.3&initialSeriesInstanceUID=1.2.3.4&initialSOPInstanceUID=1.2%26x%3D5');
    const q = new URL(href).searchParams;
    assert.deepEqual([q.get('StudyInstanceUIDs'), q.get('initialSeriesInstanceUID'), q.get('initialSOPInstanceUID')], ['1.2.3', '1.2.3.4', '1.2&x=5']);
    // A path template (a viewer behind the gateway's host) stays on that host.
    assert.equal(new URL(api.viewerUrl('/ohif/viewer?StudyInstanceUIDs={study}', { study: '1', series: '2', sop: '3' }), 'https://gw.example/ui/').host, 'gw.example');
  });

  it('serves the shipped page and only html/js/css/svg files with plain names', async () => {
    const shipped = loadAssets(uiDir());
    for (const f of ['index.html', 'app.js', 'api.js', 'browse.js', 'heatmap.js', 'dicom-preview.js', 'style.css']) assert.ok(shipped.has(f), f);
    assert.match(shipped.get('app.js')!.type, /^text\/javascript/);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'cbmir-ui-'));
    try {
      await writeFile(path.join(dir, 'index.html'), '<!doctype html>');
      await writeFile(path.join(dir, 'notes.md'), '#');
      await writeFile(path.join(dir, '.hidden.js'), '');
      await writeFile(path.join(dir, 'server.ts'), '');
      await mkdir(path.join(dir, 'sub.js'));
      assert.deepEqual([...loadAssets(dir).keys()], ['index.html']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("config.json tells the page the largest /similar limit, and the page's Results field keeps within it", async () => {
    assert.equal(uiPageConfig(loadConfig({})).maxLimit, 100);
    const low = loadConfig({ CBMIR_SIMILAR_MAX_LIMIT: '5' });
    assert.equal(uiPageConfig(low).maxLimit, 5);
    // As served: a gateway's express app with only the page attached.
    const app = express();
    attachUi({ app } as unknown as Gateway, low);
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/ui/config.json`);
      assert.equal(res.status, 200);
      const cfg = (await res.json()) as UiPageConfig;
      assert.equal(cfg.maxLimit, 5);
      assert.equal(cfg.dicomWebRoot, '../dicom-web');
    } finally {
      server.close();
    }
    // The page's side (api.js): it asks for at most that many, never more than its own 50.
    const api = (await import(pathToFileURL(path.join(uiDir(), 'api.js')).href)) as {
      limitBound(maxLimit: unknown): number;
      clampLimit(value: unknown, max?: number): number;
    };
    assert.equal(api.clampLimit('10', api.limitBound(5)), 5, 'the default 10 above a bound of 5');
    assert.equal(api.clampLimit('50', api.limitBound(100)), 50);
    assert.equal(api.clampLimit('50', api.limitBound(undefined)), 50, 'a gateway that does not say');
  });
});
