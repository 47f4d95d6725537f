/**
 * A small line plot as PNG, for benchmark reports: the chart is written as SVG
 * (text, axes, log scales, legend) and rasterised by Debian's headless Chromium
 * (`chromium --headless --screenshot`), which renders SVG text properly with no
 * font work of ours. CBMIR_CHROMIUM names another binary; without one the SVG is
 * kept beside the requested PNG path and an error says so.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PNG } from 'pngjs';

export interface PlotSeries {
  readonly name: string;
  readonly color: string;
  readonly dashed?: boolean;
  /** [x, y] pairs; non-finite or (on a log axis) non-positive values are skipped. */
  readonly points: ReadonlyArray<readonly [number, number]>;
}

export interface PlotSpec {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly logX?: boolean;
  readonly logY?: boolean;
  readonly series: readonly PlotSeries[];
  readonly width?: number;
  readonly height?: number;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The chart as an SVG document. */
export function linePlotSvg(spec: PlotSpec): string {
  const W = spec.width ?? 940;
  const H = spec.height ?? 540;
  const m = { l: 80, r: 250, t: 46, b: 60 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const ok = (x: number, y: number): boolean => Number.isFinite(x) && Number.isFinite(y) && (!spec.logX || x > 0) && (!spec.logY || y > 0);
  const pts = spec.series.flatMap((s) => s.points.filter(([x, y]) => ok(x, y)));
  if (pts.length === 0) throw new Error('plot: no points to draw');
  const tx = (v: number): number => (spec.logX ? Math.log2(v) : v);
  const ty = (v: number): number => (spec.logY ? Math.log10(v) : v);
  let [x0, x1] = [Math.min(...pts.map((p) => tx(p[0]))), Math.max(...pts.map((p) => tx(p[0])))];
  let [y0, y1] = [Math.min(...pts.map((p) => ty(p[1]))), Math.max(...pts.map((p) => ty(p[1])))];
  if (spec.logY) [y0, y1] = [Math.floor(y0), Math.ceil(y1)];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1];
  const sx = (v: number): number => m.l + ((tx(v) - x0) / (x1 - x0)) * pw;
  const sy = (v: number): number => m.t + ph - ((ty(v) - y0) / (y1 - y0)) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="DejaVu Sans, Arial, sans-serif" font-size="13">`);
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  out.push(`<text x="${m.l}" y="28" font-size="16" font-weight="bold">${esc(spec.title)}</text>`);
  // Grid and ticks.
  const xTicks: number[] = [];
  if (spec.logX) for (let e = Math.ceil(x0); e <= Math.floor(x1); e++) xTicks.push(2 ** e);
  else for (let i = 0; i <= 5; i++) xTicks.push(x0 + ((x1 - x0) * i) / 5);
  const yTicks: number[] = [];
  if (spec.logY) for (let e = Math.ceil(y0); e <= Math.floor(y1); e++) yTicks.push(10 ** e);
  else for (let i = 0; i <= 5; i++) yTicks.push(y0 + ((y1 - y0) * i) / 5);
  const num = (v: number): string => (v >= 1000 ? `${v / 1000}k`.replace('.0k', 'k') : v >= 1 ? String(Math.round(v * 100) / 100) : String(v));
  for (const v of xTicks) {
    const x = sx(v).toFixed(1);
    out.push(`<line x1="${x}" y1="${m.t}" x2="${x}" y2="${m.t + ph}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${x}" y="${m.t + ph + 18}" text-anchor="middle">${num(v)}</text>`);
  }
  for (const v of yTicks) {
    const y = sy(v).toFixed(1);
    out.push(`<line x1="${m.l}" y1="${y}" x2="${m.l + pw}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${m.l - 8}" y="${(Number(y) + 4).toFixed(1)}" text-anchor="end">${num(v)}</text>`);
  }
  out.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${m.l + pw / 2}" y="${H - 16}" text-anchor="middle">${esc(spec.xLabel)}</text>`);
  out.push(`<text transform="translate(20 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(spec.yLabel)}</text>`);
  // Series.
  spec.series.forEach((s, i) => {
    const p = s.points.filter(([x, y]) => ok(x, y));
    const dash = s.dashed ? ' stroke-dasharray="7 5"' : '';
    if (p.length > 1) {
      out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2.2"${dash} points="${p.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}"/>`);
    }
    for (const [x, y] of p) out.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3.5" fill="${s.color}"/>`);
    const ly = m.t + 14 + i * 22;
    const lx = m.l + pw + 16;
    out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 28}" y2="${ly}" stroke="${s.color}" stroke-width="2.2"${dash}/>`);
    out.push(`<circle cx="${lx + 14}" cy="${ly}" r="3.5" fill="${s.color}"/>`);
    out.push(`<text x="${lx + 36}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

/** Write the chart to `pngPath` (rasterised by headless Chromium). */
export function linePlotPng(pngPath: string, spec: PlotSpec): void {
  const W = spec.width ?? 940;
  const H = spec.height ?? 540;
  const svg = linePlotSvg(spec);
  const chromium = process.env.CBMIR_CHROMIUM ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((c) => existsSync(c));
  if (!chromium) {
    writeFileSync(pngPath.replace(/\.png$/, '.svg'), svg);
    throw new Error(`plot: no Chromium to rasterise ${pngPath} (set CBMIR_CHROMIUM); the SVG was written beside it`);
  }
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'cbmir-plot-'));
  try {
    const html = path.join(tmp, 'plot.html');
    writeFileSync(html, `<!doctype html><html><body style="margin:0">${svg}</body></html>`);
    const shot = path.join(tmp, 'plot.png');
    execFileSync(
      chromium,
      ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', `--window-size=${W},${H}`, `--screenshot=${shot}`, `file://${html}`],
      { stdio: ['ignore', 'ignore', 'ignore'], timeout: 60_000 },
    );
    // Check it is a PNG of the expected size before replacing the published one.
    const png = PNG.sync.read(readFileSync(shot));
    if (png.width !== W || png.height !== H) throw new Error(`plot: Chromium produced ${png.width}×${png.height}, expected ${W}×${H}`);
    writeFileSync(pngPath, PNG.sync.write(png));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
