/**
 * gateway/ui/heatmap.js, the page's overlay maths (plain browser JS, pure functions
 * imported here as an ES module): cell-centred bilinear upsampling of the 7×7 grid,
 * the diverging colour map and the placement over the model's input square in a thumbnail box.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { before, describe, it } from 'node:test';
import { repoRoot } from '../helpers/fixtures.js';

interface OverlayModule {
  scaleOf(...grids: number[][][]): number;
  upsample(grid: number[][], w: number, h: number): Float32Array;
  colour(t: number): [number, number, number, number];
  overlayPixels(grid: number[][], scale: number, w: number, h: number): Uint8ClampedArray;
  modelSquareRect(bw: number, bh: number, nw: number, nh: number): { x: number; y: number; w: number; h: number };
}

let m: OverlayModule;
before(async () => {
  // A computed specifier: the page's JS is not part of the TypeScript project.
  m = (await import(pathToFileURL(path.join(repoRoot, 'gateway', 'ui', 'heatmap.js')).href)) as OverlayModule;
});

const grid7 = (f: (i: number, j: number) => number) => Array.from({ length: 7 }, (_, i) => Array.from({ length: 7 }, (_, j) => f(i, j)));

describe('heatmap overlay (gateway/ui/heatmap.js)', () => {
  it('upsampling reproduces each cell at its centre and stays within neighbouring values', () => {
    const g = grid7((i, j) => i * 7 + j);
    const up = m.upsample(g, 70, 70);
    for (let i = 0; i < 7; i++) {
      for (let j = 0; j < 7; j++) {
        // Pixel (10j+5, 10i+5) has its centre at cell coordinate j + 0.05: close to the cell value.
        const v = up[(i * 10 + 4) * 70 + (j * 10 + 4)]!;
        assert.ok(Math.abs(v - g[i]![j]!) < 0.6, `cell ${i},${j}: ${v} vs ${g[i]![j]}`);
      }
    }
    // Edges are clamped, not extrapolated; a linear ramp stays linear and monotone.
    assert.equal(up[0], 0);
    assert.equal(up[70 * 70 - 1], 48);
    for (let x = 1; x < 70; x++) assert.ok(up[x]! >= up[x - 1]!, 'monotone along a row');
  });

  it('a constant grid upsamples to the constant; a 1×1 output samples the centre cell', () => {
    const up = m.upsample(grid7(() => -2.5), 33, 17);
    assert.ok(up.every((v) => v === -2.5));
    assert.equal(m.upsample(grid7((i, j) => (i === 3 && j === 3 ? 1 : 0)), 1, 1)[0], 1);
  });

  it('colours: positive red, negative blue, alpha proportional to |t|, shared scale', () => {
    assert.deepEqual(m.colour(1), [220, 38, 38, 179]);
    assert.deepEqual(m.colour(-1), [37, 99, 235, 179]);
    assert.equal(m.colour(0)[3], 0);
    assert.equal(m.colour(0.5)[3], Math.round(255 * 0.7 * 0.5));
    assert.equal(m.colour(7)[3], 179, 'clamped');
    assert.equal(m.scaleOf(grid7(() => 0.1), grid7((i) => (i === 2 ? -0.4 : 0))), 0.4);
    const px = m.overlayPixels(grid7((i) => (i < 3 ? 1 : i > 3 ? -1 : 0)), 1, 7, 7);
    assert.deepEqual([...px.slice(0, 4)], [220, 38, 38, 179]);
    assert.deepEqual([...px.slice(6 * 7 * 4, 6 * 7 * 4 + 4)], [37, 99, 235, 179]);
    assert.equal(px[3 * 7 * 4 + 3], 0, 'zero row is transparent');
    // Nothing to attribute (identical images): fully transparent, no division by zero.
    assert.ok(m.overlayPixels(grid7(() => 0), 0, 7, 7).every((v, k) => k % 4 !== 3 || v === 0));
  });

  it("the overlay covers the model's input square (picture zero-padded to a centred square)", () => {
    // Square box: the whole box, whatever the picture's aspect (its letterbox is the padding).
    assert.deepEqual(m.modelSquareRect(160, 160, 512, 512), { x: 0, y: 0, w: 160, h: 160 });
    assert.deepEqual(m.modelSquareRect(160, 160, 512, 256), { x: 0, y: 0, w: 160, h: 160 });
    // Wide box: a centred square.
    assert.deepEqual(m.modelSquareRect(200, 100, 100, 400), { x: 50, y: 0, w: 100, h: 100 });
    // Picture not loaded yet: the largest centred square.
    assert.deepEqual(m.modelSquareRect(160, 120, 0, 0), { x: 20, y: 0, w: 120, h: 120 });
  });
});
