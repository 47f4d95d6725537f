// Heatmap overlays (docs/heatmaps.md): a 7×7 grid of signed contributions to the
// similarity, bilinearly upsampled to the thumbnail's size and drawn with alpha:
// red where a location makes the pair similar, blue where it works against it,
// transparent where it does not matter. Both images of a pair share one scale.
// Pure functions first (tested in node: test/unit/heatmap-overlay.test.ts), then drawing.

/** Largest |value| over the grids (the shared colour scale). */
export function scaleOf(...grids) {
  let m = 0;
  for (const g of grids) for (const row of g) for (const v of row) m = Math.max(m, Math.abs(v));
  return m;
}

/**
 * Bilinear upsampling of a grid (rows of numbers) to outW × outH, cell-centred: the
 * value of cell (i, j) sits at the centre of its block, edges are clamped.
 */
export function upsample(grid, outW, outH) {
  const h = grid.length;
  const w = grid[0].length;
  const out = new Float32Array(outW * outH);
  for (let y = 0; y < outH; y++) {
    const gy = Math.min(Math.max(((y + 0.5) * h) / outH - 0.5, 0), h - 1);
    const y0 = Math.floor(gy);
    const y1 = Math.min(y0 + 1, h - 1);
    const fy = gy - y0;
    for (let x = 0; x < outW; x++) {
      const gx = Math.min(Math.max(((x + 0.5) * w) / outW - 0.5, 0), w - 1);
      const x0 = Math.floor(gx);
      const x1 = Math.min(x0 + 1, w - 1);
      const fx = gx - x0;
      const top = grid[y0][x0] * (1 - fx) + grid[y0][x1] * fx;
      const bottom = grid[y1][x0] * (1 - fx) + grid[y1][x1] * fx;
      out[y * outW + x] = top * (1 - fy) + bottom * fy;
    }
  }
  return out;
}

const RED = [220, 38, 38];
const BLUE = [37, 99, 235];
const MAX_ALPHA = 0.7;

/** RGBA for t in [-1, 1]: red for t > 0, blue for t < 0, alpha ∝ |t|. */
export function colour(t) {
  const c = t >= 0 ? RED : BLUE;
  const a = Math.round(255 * MAX_ALPHA * Math.min(1, Math.abs(t)));
  return [c[0], c[1], c[2], a];
}

/** RGBA pixels (Uint8ClampedArray, outW × outH) of a grid on a given scale. */
export function overlayPixels(grid, scale, outW, outH) {
  const v = upsample(grid, outW, outH);
  const px = new Uint8ClampedArray(outW * outH * 4);
  const s = scale > 0 ? scale : 1;
  for (let i = 0; i < v.length; i++) {
    const [r, g, b, a] = colour(v[i] / s);
    px.set([r, g, b, scale > 0 ? a : 0], i * 4);
  }
  return px;
}

/**
 * Where the model's input square lies in an object-fit: contain box. The model sees the
 * image zero-padded to a centred square (models/PREPROCESSING.md §3), so the grid covers
 * that square: the picture plus, for a non-square picture, its padding — which is the
 * letterbox of a square box.
 */
export function modelSquareRect(boxW, boxH, natW, natH) {
  const side = Math.max(natW || 0, natH || 0) || Math.min(boxW, boxH);
  const k = Math.min(boxW / side, boxH / side);
  const s = Math.max(1, Math.round(side * k));
  return { x: Math.floor((boxW - s) / 2), y: Math.floor((boxH - s) / 2), w: s, h: s };
}

/** Draw a grid on the overlay canvas over `img` (as displayed). */
export function drawOverlay(canvas, img, grid, scale) {
  const bw = Math.max(1, Math.round(img.clientWidth || img.naturalWidth || 128));
  const bh = Math.max(1, Math.round(img.clientHeight || img.naturalHeight || 128));
  canvas.width = bw;
  canvas.height = bh;
  const r = modelSquareRect(bw, bh, img.naturalWidth, img.naturalHeight);
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, bw, bh);
  ctx.putImageData(new ImageData(overlayPixels(grid, scale, r.w, r.h), r.w, r.h), r.x, r.y);
  canvas.hidden = false;
  canvas.dataset.drawn = 'true';
}

export function clearOverlay(canvas) {
  canvas.getContext('2d')?.clearRect(0, 0, canvas.width, canvas.height);
  canvas.hidden = true;
  delete canvas.dataset.drawn;
}
