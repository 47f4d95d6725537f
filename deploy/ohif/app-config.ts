/**
 * OHIF v3's `app-config.js` for one DICOMweb root: the gateway's `/dicom-web`, or
 * any root that speaks DICOMweb (e.g. a virtual root `/similar-to/{uid}/dicom-web`).
 *
 * OHIF reads `window.config` before it boots. Data source settings used, as the
 * @ohif/app 3.13 DICOMweb data source reads them
 * (extensions/default/src/DicomWebDataSource), and why each value:
 *
 * | setting | value | why |
 * |---|---|---|
 * | qidoRoot, wadoRoot | the root | QIDO-RS and WADO-RS through the gateway |
 * | wadoUriRoot | the root with `/dicom-web` → `/wado` | the gateway's WADO-URI endpoint beside the root, under the same prefix (a proxy's path, a virtual root's `/similar-to/{uid}`); used for downloads only |
 * | qidoSupportsIncludeField | true | Orthanc honours `includefield` |
 * | imageRendering | `wadors` | frames via WADO-RS, decoded in the browser |
 * | thumbnailRendering | `thumbnail` | `/…/thumbnail?accept=image/jpeg`: the gateway serves /thumbnail (Orthanc's plugin 1.7 has none) and lets `?accept=` win over OHIF's multipart Accept |
 * | supportsFuzzyMatching | false | Orthanc has no fuzzy matching (PN matching is case-insensitive already) |
 * | supportsWildcard | true | Orthanc matches `*` and `?` in QIDO |
 * | omitQuotationForMultipartRequest | false | the gateway accepts the quoted `type="…"` form (the standard one); the quotes make frame requests CORS-preflighted, which the gateway answers |
 * | bulkDataURI.enabled | true | BulkDataURIs in metadata come back rewritten to the gateway |
 * | enableStudyLazyLoad | true | series metadata on demand |
 *
 * Only JSON-serialisable values, written with JSON.stringify: no caller-supplied
 * text is ever spliced into code.
 *
 * Similar studies in the same viewer: with a gateway root (`…/dicom-web`), the config turns on
 * OHIF's `dangerouslyUseDynamicConfig` for one URL shape only, `/similar-to/{SOP}/app-config.json`
 * on the viewer's own origin (deploy/ohif/server.ts serves it): `/?configUrl=` + that path opens
 * OHIF on the virtual root of that query image, whose worklist is its similar studies. OHIF keeps
 * `configUrl` in the URL from the worklist to the viewer. The regex is anchored and admits UID
 * characters only, so no other origin's config can be loaded.
 */

export interface OhifConfigOptions {
  /** Absolute http(s) DICOMweb root, e.g. http://127.0.0.1:8080/dicom-web. */
  readonly dicomWebRoot: string;
  /** WADO-URI endpoint; default: wadoUriBeside(dicomWebRoot). */
  readonly wadoUriRoot?: string;
  /** Shown in OHIF's data source menu. */
  readonly friendlyName?: string;
  /**
   * OHIF's "investigational use" notice: 'always' (OHIF's default: once per
   * browser session), 'configure' (once per N days), 'never' (tests).
   */
  readonly investigationalUseDialog?: 'always' | 'configure' | 'never';
  /** OHIF's decoding web workers; 2 suits a 2-core machine. */
  readonly maxNumberOfWebWorkers?: number;
}

/** Parse and check a DICOMweb root (absolute http/https, no query or fragment); returns it without trailing slashes. */
export function normaliseDicomWebRoot(root: string): string {
  let u: URL;
  try {
    u = new URL(root);
  } catch {
    throw new Error(`DICOMweb root is not an absolute URL: ${JSON.stringify(root)}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`DICOMweb root must be http(s): ${root}`);
  if (u.search || u.hash) throw new Error(`DICOMweb root must have no query or fragment: ${root}`);
  if (u.username || u.password) throw new Error('DICOMweb root must not carry credentials (OHIF would expose them)');
  return u.href.replace(/\/+$/, '');
}

/**
 * The gateway's WADO-URI endpoint for a normalised DICOMweb root: `…/dicom-web` → `…/wado`, so
 * a path prefix (a proxy's, a virtual root's) is kept. A root not named `/dicom-web` (another
 * PACS's) gets its origin + `/wado`, where Orthanc serves it; pass wadoUriRoot for any other.
 */
export function wadoUriBeside(root: string): string {
  const u = new URL(root);
  return u.pathname.endsWith('/dicom-web') ? `${u.origin}${u.pathname.slice(0, -'/dicom-web'.length)}/wado` : `${u.origin}/wado`;
}

/** OHIF matches `configUrl` with String.prototype.match, which makes a RegExp of a string: JSON can carry it. */
export const SIMILAR_CONFIG_URL_RE = '^/similar-to/([0-9]+(?:\\.[0-9]+)*)/app-config\\.json$';

/** Where the viewer's server serves the config of one query image's virtual root. */
export function similarConfigPath(sop: string): string {
  return `/similar-to/${sop}/app-config.json`;
}

/**
 * The virtual root of query image `sop` beside a gateway root (`…/dicom-web` → `…/similar-to/{sop}/dicom-web`,
 * a proxy's prefix kept); undefined for a root that is not a gateway's `/dicom-web`.
 */
export function similarRootBeside(root: string, sop: string): string | undefined {
  if (!servesSimilar(root)) return undefined;
  const u = new URL(normaliseDicomWebRoot(root));
  return `${u.origin}${u.pathname.slice(0, -'/dicom-web'.length)}/similar-to/${sop}/dicom-web`;
}

/** A gateway's own `/dicom-web` (not a virtual root, not another PACS's root): it has virtual roots beside it. */
function servesSimilar(root: string): boolean {
  const { pathname } = new URL(normaliseDicomWebRoot(root));
  return pathname.endsWith('/dicom-web') && !pathname.includes('/similar-to/');
}

/** The `window.config` object for OHIF (plain data). */
export function ohifConfig(o: OhifConfigOptions): Record<string, unknown> {
  const root = normaliseDicomWebRoot(o.dicomWebRoot);
  const similar = servesSimilar(root);
  const wadoUriRoot = o.wadoUriRoot ? normaliseDicomWebRoot(o.wadoUriRoot) : wadoUriBeside(root);
  const workers = o.maxNumberOfWebWorkers ?? 2;
  if (!Number.isInteger(workers) || workers < 1 || workers > 16) throw new Error(`maxNumberOfWebWorkers must be 1..16, got ${workers}`);
  return {
    name: 'cbmir-gateway',
    routerBasename: '/',
    extensions: [],
    modes: [],
    customizationService: {},
    showStudyList: true,
    maxNumberOfWebWorkers: workers,
    // The viewer is on another origin than the gateway on purpose (realistic set-up); CORS covers it.
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: true,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    groupEnabledModesFirst: true,
    maxNumRequests: { interaction: 100, thumbnail: 5, prefetch: 10 },
    showErrorDetails: 'always',
    ...(similar ? { dangerouslyUseDynamicConfig: { enabled: true, regex: SIMILAR_CONFIG_URL_RE } } : {}),
    ...(o.investigationalUseDialog ? { investigationalUseDialog: { option: o.investigationalUseDialog } } : {}),
    defaultDataSourceName: 'cbmir',
    dataSources: [
      {
        namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
        sourceName: 'cbmir',
        configuration: {
          friendlyName: o.friendlyName ?? 'cbmir gateway',
          name: 'cbmir',
          qidoRoot: root,
          wadoRoot: root,
          wadoUriRoot,
          qidoSupportsIncludeField: true,
          imageRendering: 'wadors',
          thumbnailRendering: 'thumbnail',
          enableStudyLazyLoad: true,
          supportsFuzzyMatching: false,
          supportsWildcard: true,
          supportsReject: false,
          dicomUploadEnabled: false,
          staticWado: false,
          singlepart: 'bulkdata,video,pdf',
          omitQuotationForMultipartRequest: false,
          bulkDataURI: { enabled: true, relativeResolution: 'studies' },
        },
      },
    ],
  };
}

/** The text of app-config.js. */
export function ohifConfigScript(o: OhifConfigOptions): string {
  return `/* generated by cbmir-gateway deploy/ohif/app-config.ts */\nwindow.config = ${JSON.stringify(ohifConfig(o), null, 2)};\n`;
}
