// Browser loader for a dotfind model bundle. JavaScript owns the network (fetch, HTTP
// errors); the wasm core verifies the bytes and runs the model. Every failure is an
// `Error` naming the URL or file at fault.
import { startRuntime, sha256Hex } from './runtime.js';

/**
 * Instantiates the wasm build once (later calls share the same promise); `wasm` is
 * `'auto'` (relaxed SIMD where the browser has it), `'relaxed'` or `'simd'`.
 */
export function initWasm(wasm = 'auto') {
  return startRuntime(wasm);
}

async function fetchBytes(base, file) {
  const url = new URL(file, base);
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`model bundle ${base}: cannot fetch ${file}: ${e.message}`);
  }
  if (!response.ok) {
    const what = response.status === 404 ? `missing file ${file}` : `${file}: HTTP ${response.status} ${response.statusText}`;
    throw new Error(`model bundle ${base}: ${what} (HTTP ${response.status})`);
  }
  return new Uint8Array(await response.arrayBuffer());
}

/**
 * The graph file a bundle descriptor (dotfind-model.json bytes) says to load: the compiled
 * model.graph when `dotfind compile` added it (it starts faster), else model.onnx.
 * Unreadable descriptors yield model.onnx; the wasm core reports what is wrong with them.
 */
export function modelFile(manifest) {
  try {
    const { files } = JSON.parse(new TextDecoder().decode(manifest));
    return files && Object.hasOwn(files, 'model.graph') ? 'model.graph' : 'model.onnx';
  } catch {
    return 'model.onnx';
  }
}

/**
 * Whether a bundle descriptor records xxh3-128 for every one of `files`: the wasm core then
 * checks them with it (a 23 MB model in ~10 ms), and WebCrypto's sha256 is not needed.
 * Descriptors written before dotfind recorded it have sha256 only.
 */
function recordsXxh3(manifest, files) {
  try {
    const entries = JSON.parse(new TextDecoder().decode(manifest)).files ?? {};
    return files.every((f) => typeof entries[f]?.xxh3_128 === 'string');
  } catch {
    return false; // the wasm core reports what is wrong with the descriptor
  }
}

/**
 * Fetches and verifies the bundle at `bundleUrl` (a folder holding dotfind-model.json,
 * tokenizer.json and the graph file it names; relative URLs resolve against the page).
 * @returns {Promise<QueryEncoder>}
 */
export async function loadQueryEncoder(bundleUrl, { wasm = 'auto' } = {}) {
  const base = new URL(bundleUrl.endsWith('/') ? bundleUrl : `${bundleUrl}/`, globalThis.location?.href);
  const runtime = initWasm(wasm); // compiles while the bundle downloads
  let wasmError = null;
  runtime.catch((e) => {
    wasmError = e;
  });
  const [manifest, tokenizer] = await Promise.all([
    fetchBytes(base, 'dotfind-model.json'),
    fetchBytes(base, 'tokenizer.json'),
  ]);
  if (wasmError) throw wasmError; // before downloading the model for nothing
  const model = await fetchBytes(base, modelFile(manifest));
  return createQueryEncoder(runtime, manifest, model, tokenizer);
}

/**
 * Builds a `QueryEncoder` from bundle bytes already in memory (`model`: the file
 * `modelFile(manifest)` names), verified by the xxh3-128 checksums the descriptor records,
 * or for an older descriptor by sha256, hashed by WebCrypto where it can (see `sha256Hex`).
 * `runtime`: a started wasm runtime (`{ glue }`, what `initWasm` resolves to), a promise of
 * one, or the glue's `QueryEncoder` class itself.
 */
export async function createQueryEncoder(runtime, manifest, model, tokenizer) {
  const digests = recordsXxh3(manifest, [modelFile(manifest), 'tokenizer.json'])
    ? [null, null]
    : [sha256Hex(model), sha256Hex(tokenizer)];
  const [started, modelSha256, tokenizerSha256] = await Promise.all([runtime, ...digests]);
  const QueryEncoder = typeof started === 'function' ? started : started.glue.QueryEncoder;
  return new QueryEncoder(manifest, model, tokenizer, modelSha256 ?? undefined, tokenizerSha256 ?? undefined);
}
