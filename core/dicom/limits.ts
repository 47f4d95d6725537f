/**
 * How large a frame the decoder takes (Rows × Columns), here rather than in decode.ts so that
 * core/config.ts (CBMIR_WORKER_MAX_FRAME_PIXELS) reads it without loading dcmjs and the codecs.
 *
 * The bound is one of memory. Beyond the instance's own bytes, a frame costs at most about 28
 * bytes a pixel while it is decoded and then preprocessed (docs/dicom.md, the decoder's "memory"):
 *   decode: the samples as numbers (up to a Float64 per sample, three for colour: 24 bytes)
 *           and the grayscale frame (a Float32: 4 bytes);
 *   preprocessing: the frame (4), a Float64 copy to rank values other than integers of a
 *           small range (8) and the normalised Float64 image (8), the resize needing only
 *           buffers of its output's size.
 */

/** 36 Mi pixels (6144²): a 6000 × 4800 detector or a 50 µm mammogram (5928 × 4728) at about 1 GiB. */
export const DEFAULT_MAX_PIXELS_PER_FRAME = 36 * 2 ** 20;

/**
 * Bounds of the setting. Up to 64 Mi pixels (8192², about 1.8 GiB a frame) a colour JPEG 2000
 * frame still fits the codecs' WebAssembly memory, which stops at 2 GiB (a 36 Mi-pixel one grew
 * it to 616 MiB); below 64 Ki pixels (256²), a value was most likely meant in Mi.
 */
export const MIN_MAX_PIXELS_PER_FRAME = 64 * 2 ** 10;
export const MAX_MAX_PIXELS_PER_FRAME = 64 * 2 ** 20;
