// A model bundle on its own, without an index: for apps that embed text and score it
// themselves. JavaScript fetches; the wasm core verifies the bytes (sizes and checksums
// against dotfind-model.json) and runs the model. Every failure is a DotfindError naming the
// URL or file at fault.
import { DotfindError } from './errors.js';
import { fetchBytes } from './fetch.js';
import { startRuntime } from './runtime.js';

/**
 * Instantiates the wasm build once (later calls share the same promise); `wasm` is
 * `'auto'` (relaxed SIMD where the browser has it), `'relaxed'` or `'simd'`.
 */
export function initWasm(wasm = 'auto') {
  return startRuntime(wasm);
}

/**
 * Fetches and verifies the bundle at `bundleUrl` (a folder holding dotfind-model.json,
 * model.graph and tokenizer.json; relative URLs resolve against the page).
 * @returns {Promise<QueryEncoder>}
 */
export async function loadQueryEncoder(bundleUrl, { wasm = 'auto' } = {}) {
  const base = new URL(bundleUrl.endsWith('/') ? bundleUrl : `${bundleUrl}/`, globalThis.location?.href);
  const runtime = initWasm(wasm); // compiles while the bundle downloads
  runtime.catch(() => {}); // reported where it is awaited
  const [manifest, graph, tokenizer] = await Promise.all(
    ['dotfind-model.json', 'model.graph', 'tokenizer.json'].map((file) => fetchBytes(new URL(file, base))),
  );
  return createQueryEncoder(runtime, manifest, graph, tokenizer);
}

/**
 * Builds a `QueryEncoder` from bundle bytes already in memory, verified by the checksums
 * the descriptor records. `runtime`: a started wasm runtime (what `initWasm` resolves to)
 * or a promise of one.
 */
export async function createQueryEncoder(runtime, manifest, graph, tokenizer) {
  const { glue } = await runtime;
  try {
    return new glue.QueryEncoder(manifest, graph, tokenizer);
  } catch (e) {
    throw DotfindError.from(e);
  }
}
