// The machine a benchmark ran on, printed beside its figures: int8 speed in a browser differs
// between CPUs with AMX / AVX-VNNI and those with AVX-512 VNNI only, so every figure names
// the CPU model and the SIMD extensions that decide it.
import fs from 'node:fs';
import os from 'node:os';

const SIMD_FLAGS = ['avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx_vnni', 'avx512_bf16', 'amx_bf16', 'amx_int8'];

/** `{model, cores, simd}` of this machine (simd: the extensions above that it has). */
export function machine() {
  let info = '';
  try {
    info = fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // not Linux: the model from os.cpus() and no flag list
  }
  const flags = new Set((/^flags\s*:(.*)$/m.exec(info)?.[1] ?? '').trim().split(/\s+/));
  return {
    model: os.cpus()[0]?.model.trim() ?? 'unknown CPU',
    cores: os.cpus().length,
    simd: SIMD_FLAGS.filter((f) => flags.has(f)),
  };
}

/** One line for a report: "CPU: <model>, N cores, SIMD: …". */
export function machineLine() {
  const m = machine();
  return `CPU: ${m.model}, ${m.cores} cores, SIMD: ${m.simd.join(' ') || 'none of ' + SIMD_FLAGS.join('/')}`;
}

/**
 * The widest int8 instruction this CPU has, which decides encoding speed (natively and in a
 * browser): the name of a benchmark's section per kind of CPU, so that a run on one kind
 * keeps the others' figures (twin of bench/sections.py's cpu_kind).
 */
export function cpuKind() {
  const { simd } = machine();
  const kinds = [['amx_int8', 'amx'], ['avx512_vnni', 'avx512-vnni'], ['avx_vnni', 'avx-vnni'], ['avx2', 'avx2']];
  return kinds.find(([flag]) => simd.includes(flag))?.[1] ?? 'other';
}
