// Picks and starts the wasm build this browser can run. Two builds ship: one with relaxed
// SIMD (fused multiply-add and int8 dot products, e.g. one VNNI instruction on x86: about
// 2× faster query encoding) and one with plain SIMD for browsers without it. A browser that
// lacks relaxed SIMD rejects a module using it outright, so the choice happens here, by
// validating a 60-byte probe module, before anything is fetched.

// (module (func (result v128) (i32x4.relaxed_dot_i8x16_i7x16_add_s (v128.const 0) ×3)))
const RELAXED_SIMD_PROBE = 'AGFzbQEAAAABBQFgAAF7AwIBAAo9ATsA/QwAAAAAAAAAAAAAAAAAAAAA/QwAAAAAAAAAAAAAAAAAAAAA/QwAAAAAAAAAAAAAAAAAAAAA/ZMCCw==';

/** Whether this engine validates relaxed-SIMD wasm. */
export function hasRelaxedSimd() {
  try {
    const bytes = Uint8Array.from(atob(RELAXED_SIMD_PROBE), (c) => c.charCodeAt(0));
    return WebAssembly.validate(bytes);
  } catch {
    return false;
  }
}

/**
 * The build to load: `'relaxed'` or `'simd'`. `choice` (`'auto'` by default) lets apps and
 * tests force one; forcing `'relaxed'` where it cannot run is an error, not a silent fallback.
 */
export function chooseBuild(choice = 'auto') {
  if (choice === 'simd') return 'simd';
  if (choice === 'relaxed') {
    if (!hasRelaxedSimd()) throw new Error('dotfind: this browser has no relaxed SIMD; use wasm: "simd" or "auto"');
    return 'relaxed';
  }
  if (choice !== 'auto') throw new Error(`dotfind: unknown wasm build "${choice}" (use "auto", "relaxed" or "simd")`);
  return hasRelaxedSimd() ? 'relaxed' : 'simd';
}

const started = new Map();

/**
 * Imports and instantiates a build once; returns its wasm-bindgen module. The literal
 * `import()` and `new URL(…, import.meta.url)` forms let bundlers (Vite) ship both builds.
 */
export function startRuntime(choice = 'auto') {
  const build = chooseBuild(choice);
  if (!started.has(build)) {
    started.set(build, (async () => {
      const glue = build === 'relaxed' ? await import('./pkg-relaxed/dotfind.js') : await import('./pkg/dotfind.js');
      const wasm = build === 'relaxed'
        ? new URL('./pkg-relaxed/dotfind_bg.wasm', import.meta.url)
        : new URL('./pkg/dotfind_bg.wasm', import.meta.url);
      await glue.default({ module_or_path: wasm });
      return { build, glue };
    })());
  }
  return started.get(build);
}
