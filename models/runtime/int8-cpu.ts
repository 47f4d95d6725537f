/**
 * Whether this CPU suits the INT8 model variant. onnxruntime's INT8 convolutions pay off
 * with VNNI (AVX-512 VNNI, AVX-VNNI or AMX): measured on 2-core AMD EPYCs, the 0.4.0 INT8
 * file was 1.51× faster than FP32 with 0.14 mAP points lost on one with VNNI, but only
 * 1.08× faster with 0.28 points lost on one with AVX2 alone (docs/benchmarks.md, "INT8").
 */
import { readFileSync } from 'node:fs';

const VNNI_FLAGS = ['avx512_vnni', 'avx_vnni', 'amx_int8'];

/** true / false on x86-64 Linux; undefined where it cannot tell (another architecture or OS). */
export function cpuHasVnni(cpuinfo?: string): boolean | undefined {
  if (cpuinfo === undefined) {
    if (process.arch !== 'x64') return undefined;
    try {
      cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return undefined;
    }
  }
  const flags = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1]?.trim().split(/\s+/) ?? [];
  if (flags.length === 0) return undefined;
  return VNNI_FLAGS.some((f) => flags.includes(f));
}

/** A model version of the INT8 variant (bench/int8/quantize.py --ship names it `<version>-int8`). */
export function isInt8Version(version: string): boolean {
  return /-int8(?:$|[.-])/.test(version);
}
