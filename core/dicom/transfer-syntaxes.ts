/**
 * Transfer syntaxes (PS3.5 §10, PS3.6 Annex A) and how core/dicom decodes each.
 * "native" = uncompressed pixel data that dcmjs hands over as bytes;
 * everything else is encapsulated and goes through a codec (core/dicom/codecs.ts).
 */
export type PixelEncoding =
  | { kind: 'native'; littleEndian: boolean }
  | { kind: 'rle' }
  | { kind: 'jpeg' } // baseline 8-bit, extended 12-bit, lossless (processes 1, 2&4, 14, 14 SV1)
  | { kind: 'jpegls' }
  | { kind: 'jpeg2000' }
  | { kind: 'htj2k' }
  | { kind: 'jpegxl' };

export const TS = {
  ImplicitVRLittleEndian: '1.2.840.10008.1.2',
  ExplicitVRLittleEndian: '1.2.840.10008.1.2.1',
  DeflatedExplicitVRLittleEndian: '1.2.840.10008.1.2.1.99',
  ExplicitVRBigEndian: '1.2.840.10008.1.2.2',
  RleLossless: '1.2.840.10008.1.2.5',
} as const;

const table: Record<string, { name: string; encoding: PixelEncoding }> = {
  '1.2.840.10008.1.2': { name: 'Implicit VR Little Endian', encoding: { kind: 'native', littleEndian: true } },
  '1.2.840.10008.1.2.1': { name: 'Explicit VR Little Endian', encoding: { kind: 'native', littleEndian: true } },
  '1.2.840.10008.1.2.1.99': { name: 'Deflated Explicit VR Little Endian', encoding: { kind: 'native', littleEndian: true } },
  '1.2.840.10008.1.2.2': { name: 'Explicit VR Big Endian', encoding: { kind: 'native', littleEndian: false } },
  '1.2.840.10008.1.2.5': { name: 'RLE Lossless', encoding: { kind: 'rle' } },
  '1.2.840.10008.1.2.4.50': { name: 'JPEG Baseline (Process 1)', encoding: { kind: 'jpeg' } },
  '1.2.840.10008.1.2.4.51': { name: 'JPEG Extended (Process 2 & 4)', encoding: { kind: 'jpeg' } },
  '1.2.840.10008.1.2.4.57': { name: 'JPEG Lossless (Process 14)', encoding: { kind: 'jpeg' } },
  '1.2.840.10008.1.2.4.70': { name: 'JPEG Lossless SV1 (Process 14)', encoding: { kind: 'jpeg' } },
  '1.2.840.10008.1.2.4.80': { name: 'JPEG-LS Lossless', encoding: { kind: 'jpegls' } },
  '1.2.840.10008.1.2.4.81': { name: 'JPEG-LS Near-Lossless', encoding: { kind: 'jpegls' } },
  '1.2.840.10008.1.2.4.90': { name: 'JPEG 2000 Lossless', encoding: { kind: 'jpeg2000' } },
  '1.2.840.10008.1.2.4.91': { name: 'JPEG 2000', encoding: { kind: 'jpeg2000' } },
  '1.2.840.10008.1.2.4.110': { name: 'JPEG XL Lossless', encoding: { kind: 'jpegxl' } },
  '1.2.840.10008.1.2.4.111': { name: 'JPEG XL JPEG Recompression', encoding: { kind: 'jpegxl' } },
  '1.2.840.10008.1.2.4.112': { name: 'JPEG XL', encoding: { kind: 'jpegxl' } },
  '1.2.840.10008.1.2.4.201': { name: 'HTJ2K Lossless', encoding: { kind: 'htj2k' } },
  '1.2.840.10008.1.2.4.202': { name: 'HTJ2K RPCL Lossless', encoding: { kind: 'htj2k' } },
  '1.2.840.10008.1.2.4.203': { name: 'HTJ2K', encoding: { kind: 'htj2k' } },
};

export function transferSyntaxName(uid: string): string {
  return table[uid]?.name ?? uid;
}

/** How to decode pixel data in this syntax; undefined = not supported (video, retired JPEG processes, private). */
export function pixelEncoding(uid: string): PixelEncoding | undefined {
  return table[uid]?.encoding;
}
