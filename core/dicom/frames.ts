/**
 * Split Pixel Data (7FE0,0010) into per-frame byte ranges (PS3.5 §8.2, Annex A.4).
 *
 * Native: one contiguous buffer; frame i starts at i × rows × cols × samples × bytes.
 * Encapsulated: dcmjs already groups fragments into frames when the Basic Offset
 * Table is present; without it, it hands back the raw fragments. Then:
 *   fragments == frames → one fragment per frame (RLE always; most JPEG writers);
 *   one frame           → all fragments concatenated;
 *   otherwise           → a new frame starts at each fragment that opens with a
 *                          codestream start marker (JPEG SOI FFD8, JPEG 2000 SOC FF4F,
 *                          JP2 signature box, JPEG XL FF0A), as pydicom and GDCM do.
 */
export type FramesResult = { ok: true; frames: Uint8Array[] } | { ok: false; reason: string };

function u8(v: unknown): Uint8Array | undefined {
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return undefined;
}

/**
 * The bytes with each pair exchanged (a last odd byte kept). OW is a stream of 16-bit words, which
 * Explicit VR Big Endian writes most significant byte first (PS3.5 §7.3): 8-bit values packed two
 * to a word (8-bit Pixel Data, 8-bit palette entries) arrive with every pair exchanged, and read in
 * order once swapped back. OB is a stream of bytes and has no byte order.
 */
export function swapBytePairs(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length);
  const even = bytes.length - (bytes.length % 2);
  for (let i = 0; i < even; i += 2) {
    out[i] = bytes[i + 1]!;
    out[i + 1] = bytes[i]!;
  }
  if (even < bytes.length) out[even] = bytes[even]!;
  return out;
}

/**
 * Lazily sliced native frames: only the frames asked for are copied. `pairSwapped`: 8-bit samples
 * in big-endian OW (swapBytePairs), swapped over the whole Pixel Data, since a pair may straddle
 * two frames of an odd number of bytes.
 */
export function nativeFrames(value: unknown[], frameCount: number, frameBytes: number, pairSwapped = false): FramesResult {
  const parts = value.map(u8);
  if (parts.some((p) => p === undefined)) return { ok: false, reason: 'Pixel Data is not binary' };
  const stored = parts.length === 1 ? parts[0]! : Buffer.concat(parts as Uint8Array[]);
  // 1-bit data is packed across frame boundaries; callers compute frameBytes accordingly.
  const need = frameCount * frameBytes;
  if (stored.length < need) {
    return { ok: false, reason: `Pixel Data is truncated: ${stored.length} bytes for ${frameCount} frame(s) of ${frameBytes} bytes` };
  }
  const all = pairSwapped ? swapBytePairs(stored) : stored;
  const frames: Uint8Array[] = [];
  for (let i = 0; i < frameCount; i++) frames.push(all.subarray(i * frameBytes, (i + 1) * frameBytes));
  return { ok: true, frames };
}

function startsCodestream(b: Uint8Array): boolean {
  if (b.length < 2) return false;
  if (b[0] === 0xff && (b[1] === 0xd8 || b[1] === 0x4f || b[1] === 0x0a)) return true;
  // JP2 file signature box: 00 00 00 0C 6A 50 20 20
  return b.length >= 8 && b[0] === 0 && b[1] === 0 && b[2] === 0 && b[3] === 0x0c && b[4] === 0x6a && b[5] === 0x50;
}

export function encapsulatedFrames(value: unknown[], frameCount: number): FramesResult {
  const items: Uint8Array[] = [];
  for (const v of value) {
    // dcmjs may return a frame as an array of fragments (noCopy mode): flatten.
    if (Array.isArray(v)) {
      const parts = v.map(u8);
      if (parts.some((p) => p === undefined)) return { ok: false, reason: 'encapsulated fragment is not binary' };
      items.push(Buffer.concat(parts as Uint8Array[]));
    } else {
      const p = u8(v);
      if (!p) return { ok: false, reason: 'encapsulated fragment is not binary' };
      items.push(p);
    }
  }
  if (items.length === 0) return { ok: false, reason: 'encapsulated Pixel Data has no fragments' };
  if (items.length === frameCount) return { ok: true, frames: items };
  if (frameCount === 1) return { ok: true, frames: [Buffer.concat(items)] };
  const groups: Uint8Array[][] = [];
  for (const it of items) {
    if (groups.length === 0 || startsCodestream(it)) groups.push([it]);
    else groups[groups.length - 1]!.push(it);
  }
  if (groups.length !== frameCount) {
    return { ok: false, reason: `cannot split ${items.length} fragments into ${frameCount} frames (no Basic Offset Table)` };
  }
  return { ok: true, frames: groups.map((g) => (g.length === 1 ? g[0]! : Buffer.concat(g))) };
}
