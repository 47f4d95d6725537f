/** models/runtime/int8-cpu.ts: which CPUs the worker warns about when it runs the INT8 variant. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cpuHasVnni, isInt8Version } from '../../models/runtime/int8-cpu.js';

const cpuinfo = (flags: string) =>
  `processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: ${flags}\nbugs\t\t: sysret_ss_attrs\n`;

test('int8-cpu: VNNI in any of its forms is found in /proc/cpuinfo flags; AVX2 alone is not VNNI', () => {
  assert.equal(cpuHasVnni(cpuinfo('fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16')), true);
  assert.equal(cpuHasVnni(cpuinfo('fpu sse2 avx2 fma avx_vnni')), true);
  assert.equal(cpuHasVnni(cpuinfo('fpu sse2 avx2 fma amx_tile amx_int8')), true);
  assert.equal(cpuHasVnni(cpuinfo('fpu sse2 avx2 fma avx512f avx512vl')), false);
  // a flag that merely contains the word is not the flag
  assert.equal(cpuHasVnni(cpuinfo('fpu avx2 avx512_vnnix')), false);
  assert.equal(cpuHasVnni('processor\t: 0\nFeatures\t: fp asimd\n'), undefined, 'no x86 flags line: cannot tell');
});

test('int8-cpu: the INT8 variant is recognised by its version, not FP32 versions that merely mention 8', () => {
  assert.equal(isInt8Version('0.4.0-int8'), true);
  assert.equal(isInt8Version('0.5.0-int8.2'), true);
  assert.equal(isInt8Version('0.4.0'), false);
  assert.equal(isInt8Version('0.4.8'), false);
  assert.equal(isInt8Version('sha256-int8deadbeef0000'), false);
});
