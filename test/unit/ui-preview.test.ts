/**
 * gateway/ui/dicom-preview.js (plain browser JS, imported here as an ES module): the preview
 * of a dropped file is drawn on the page's only thread, so a large image is subsampled to at
 * most PREVIEW_MAX_SIDE on its long side instead of being converted pixel by pixel.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { repoRoot } from '../helpers/fixtures.js';

interface Image {
  data: Uint8ClampedArray;
  width: number;
  height: number;
}
interface PreviewModule {
  PREVIEW_MAX_SIDE: number;
  previewDicom(buffer: ArrayBuffer): Image | null;
}

let preview: PreviewModule;

before(async () => {
  // The browser's ImageData, as far as the preview uses it.
  (globalThis as { ImageData?: unknown }).ImageData ??= class {
    constructor(
      readonly data: Uint8ClampedArray,
      readonly width: number,
      readonly height: number,
    ) {
      assert.equal(data.length, width * height * 4, 'ImageData: data matches width × height');
    }
  };
  // A computed specifier: the page's JS is not part of the TypeScript project.
  preview = (await import(pathToFileURL(path.join(repoRoot, 'gateway', 'ui', 'dicom-preview.js')).href)) as PreviewModule;
});

/** An explicit VR little-endian Part 10 file of one 16-bit grayscale frame; pixel (r, c) = value(r, c). */
function dicom16(rows: number, cols: number, value: (r: number, c: number) => number, photometric = 'MONOCHROME2'): ArrayBuffer {
  const parts: Buffer[] = [Buffer.alloc(128), Buffer.from('DICM')];
  const short = (group: number, elem: number, vr: string, body: Buffer) => {
    const h = Buffer.alloc(8);
    h.writeUInt16LE(group, 0);
    h.writeUInt16LE(elem, 2);
    h.write(vr, 4, 'latin1');
    h.writeUInt16LE(body.length, 6);
    parts.push(h, body);
  };
  const us = (v: number) => {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v);
    return b;
  };
  const str = (s: string, pad: string) => Buffer.from(s.length % 2 ? s + pad : s, 'latin1');
  short(0x0002, 0x0010, 'UI', str('1.2.840.10008.1.2.1', '\0'));
  short(0x0028, 0x0002, 'US', us(1));
  short(0x0028, 0x0004, 'CS', str(photometric, ' '));
  short(0x0028, 0x0010, 'US', us(rows));
  short(0x0028, 0x0011, 'US', us(cols));
  short(0x0028, 0x0100, 'US', us(16));
  short(0x0028, 0x0103, 'US', us(0));
  const pixels = Buffer.alloc(rows * cols * 2);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) pixels.writeUInt16LE(value(r, c), (r * cols + c) * 2);
  const h = Buffer.alloc(12);
  h.writeUInt16LE(0x7fe0, 0);
  h.writeUInt16LE(0x0010, 2);
  h.write('OW', 4, 'latin1');
  h.writeUInt32LE(pixels.length, 8);
  parts.push(h, pixels);
  const all = Buffer.concat(parts);
  return all.buffer.slice(all.byteOffset, all.byteOffset + all.length);
}

const grayAt = (img: Image, x: number, y: number) => img.data[(y * img.width + x) * 4];

describe('ui: preview of a dropped file', () => {
  it('a small image is drawn whole, min–max windowed', () => {
    const img = preview.previewDicom(dicom16(3, 4, (r, c) => 100 + r * 4 + c))!;
    assert.deepEqual([img.width, img.height], [4, 3]);
    assert.equal(grayAt(img, 0, 0), 0);
    assert.equal(grayAt(img, 3, 2), 255);
    const inverted = preview.previewDicom(dicom16(3, 4, (r, c) => 100 + r * 4 + c, 'MONOCHROME1'))!;
    assert.equal(grayAt(inverted, 0, 0), 255);
  });

  it('a large image is subsampled to at most 512 pixels on its long side, keeping its shape', () => {
    assert.equal(preview.PREVIEW_MAX_SIDE, 512);
    // 1800 × 900: every 4th pixel → 450 × 225. Rows bright at the bottom, so the orientation shows.
    const img = preview.previewDicom(dicom16(1800, 900, (r) => r))!;
    assert.deepEqual([img.width, img.height], [225, 450]);
    assert.equal(img.data.length, 225 * 450 * 4);
    assert.equal(grayAt(img, 0, 0), 0, 'the top row is the darkest');
    assert.equal(grayAt(img, 100, 449), 255, 'the bottom row sampled is the brightest');
    assert.ok(grayAt(img, 100, 100)! < grayAt(img, 100, 300)!, 'brighter further down');
    // Exactly the limit stays whole; one past it halves.
    const size = (img: Image | null) => [img?.width, img?.height];
    assert.deepEqual(size(preview.previewDicom(dicom16(512, 10, () => 0))), [10, 512]);
    assert.deepEqual(size(preview.previewDicom(dicom16(7, 513, () => 0))), [257, 4]);
  });
});
