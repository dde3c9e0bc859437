// Picks and starts the wasm build this browser can run. Two builds ship: one with relaxed
// SIMD (fused multiply-add and int8 dot products: faster query encoding, BENCHMARKS.md) and
// one with plain SIMD for browsers without it. A browser that lacks relaxed SIMD rejects a
// module using it outright, so the choice happens here, by running a 92-byte probe module,
// before anything is fetched. The wasm is kept in the Cache API, so that an offline visit
// starts from it.
import { FULL_BUILDS } from './builds.js';
import { DotfindError } from './errors.js';
import { fetchOk, openCache } from './fetch.js';

// (module (func (export "f") (result i32) (i32x4.extract_lane 0
//   (i32x4.relaxed_dot_i8x16_i7x16_add_s (v128.const i8x16 -1 ×16) (v128.const i8x16 1 ×16)
//     (v128.const i32x4 0 0 0 0)))))
// The standard gives -4 (four products of -1 and a 7-bit 1). Engines whose relaxed SIMD is a
// pre-standard experiment differ (node 20 with --experimental-wasm-relaxed-simd gives -8),
// and dotfind's int8 kernels rely on the standard's exact sums.
const RELAXED_SIMD_PROBE = 'AGFzbQEAAAABBQFgAAF/AwIBAAcFAQFmAAAKQAE+AP0M//////////////////////0MAQEBAQEBAQEBAQEBAQEBAf0MAAAAAAAAAAAAAAAAAAAAAP2TAv0bAAs=';

/** Whether this engine runs relaxed SIMD, with the standard's relaxed dot product. */
export function hasRelaxedSimd() {
  try {
    const bytes = Uint8Array.from(atob(RELAXED_SIMD_PROBE), (c) => c.charCodeAt(0));
    if (!WebAssembly.validate(bytes)) return false;
    return new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports.f() === -4;
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
  const relaxedShipped = FULL_BUILDS.includes('relaxed');
  if (choice === 'relaxed') {
    if (!relaxedShipped) throw new DotfindError('dotfind: this copy of the package was built without the relaxed SIMD build; use wasm: "simd" or "auto"');
    if (!hasRelaxedSimd()) throw new DotfindError('dotfind: this browser has no relaxed SIMD; use wasm: "simd" or "auto"');
    return 'relaxed';
  }
  if (choice !== 'auto') throw new DotfindError(`dotfind: unknown wasm build "${choice}" (use "auto", "relaxed" or "simd")`);
  return relaxedShipped && hasRelaxedSimd() ? 'relaxed' : 'simd';
}

const started = new Map();
const CACHE_NAME = 'dotfind-runtime-v1';

/** The build's wasm-bindgen glue (literal `import()`s, so bundlers find every build). */
function importGlue(build) {
  if (build === 'lexical') return import('./pkg-lexical/dotfind.js');
  return build === 'relaxed' ? import('./pkg-relaxed/dotfind.js') : import('./pkg/dotfind.js');
}

/** Where each build's wasm is (literal `new URL`s, for bundlers too). */
function wasmUrl(build) {
  if (build === 'lexical') return new URL('./pkg-lexical/dotfind_bg.wasm', import.meta.url);
  return build === 'relaxed'
    ? new URL('./pkg-relaxed/dotfind_bg.wasm', import.meta.url)
    : new URL('./pkg/dotfind_bg.wasm', import.meta.url);
}

/** The build's wasm: from the network (the browser's HTTP cache applies), kept in the Cache
 * API when `cache` is on; from that copy when the network fails. */
async function wasmResponse(build, cache) {
  const url = wasmUrl(build);
  const store = await openCache(CACHE_NAME, cache);
  try {
    const response = await fetchOk(url);
    store?.put(url, response.clone()).catch(() => {}); // best effort: a full quota only costs offline use
    return response;
  } catch (e) {
    const cached = await store?.match(url);
    if (cached) return cached;
    throw e;
  }
}

/** Compiles a build's wasm (streaming where the server sends application/wasm). */
async function compileWasm(build, cache) {
  const response = await wasmResponse(build, cache);
  if (response.headers.get('Content-Type')?.startsWith('application/wasm')) {
    return WebAssembly.compileStreaming(response);
  }
  return WebAssembly.compile(await response.arrayBuffer());
}

/**
 * Imports and instantiates a build once; returns `{build, glue, module}`, where `module`
 * is the compiled WebAssembly.Module, which helper workers instantiate without compiling
 * again ({@link attachRuntime}). `cache`: keep the wasm in the Cache API (default true).
 */
export function startRuntime(choice = 'auto', { cache = true } = {}) {
  return start(chooseBuild(choice), cache);
}

/**
 * The lexical module (BM25 over the index's parts, no model; about a tenth of the full
 * module's bytes): what answers a visit's first queries while the full module and the model
 * are on their way. Same shape as {@link startRuntime}'s.
 */
export function startLexicalRuntime({ cache = true } = {}) {
  return start('lexical', cache);
}

function start(build, cache) {
  if (!started.has(build)) {
    started.set(build, (async () => {
      const [glue, module] = await Promise.all([importGlue(build), compileWasm(build, cache)]);
      await glue.default({ module_or_path: module });
      return { build, glue, module };
    })());
  }
  return started.get(build);
}

/** Instantiates a module another worker compiled (see {@link startRuntime}); returns the glue. */
export async function attachRuntime(build, module) {
  const glue = await importGlue(build);
  await glue.default({ module_or_path: module });
  return glue;
}
