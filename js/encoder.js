// A model bundle on its own, without an index: for apps that embed text and score it
// themselves. JavaScript fetches; the wasm core verifies the bytes (sizes and checksums
// against dotfind-model.json) and runs the model. Bundles that keep their token embeddings
// apart (dotfind-model.json's `token_embeddings`) fetch the chunk files a text needs before
// encoding it, verified and kept in the Cache API. Every failure is a DotfindError naming the
// URL or file at fault.
import { DotfindError, requireText } from './errors.js';
import { fetchBytes } from './fetch.js';
import { fetchTokenChunks, openIndexCache } from './index-files.js';
import { startRuntime } from './runtime.js';

/**
 * Instantiates the wasm build once (later calls share the same promise); `wasm` is
 * `'auto'` (relaxed SIMD where the browser has it), `'relaxed'` or `'simd'`.
 */
export function initWasm(wasm = 'auto') {
  return startRuntime(wasm);
}

const CHECKSUMS_FILE = 'token-embeddings/checksums.bin';

/**
 * Fetches and verifies the bundle at `bundleUrl` (a folder holding dotfind-model.json,
 * model.graph and tokenizer.json, and token-embeddings/ where the bundle has it; relative
 * URLs resolve against the page). `cache`: keep token-embedding chunks in the Cache API.
 * @returns {Promise<QueryEncoder>}
 */
export async function loadQueryEncoder(bundleUrl, { wasm = 'auto', cache = true } = {}) {
  const base = new URL(bundleUrl.endsWith('/') ? bundleUrl : `${bundleUrl}/`, globalThis.location?.href);
  const runtime = initWasm(wasm); // compiles while the bundle downloads
  runtime.catch(() => {}); // reported where it is awaited
  const fetchFile = (file) => fetchBytes(new URL(file, base));
  const descriptor = fetchFile('dotfind-model.json');
  const [manifest, graph, tokenizer, tokenChecksums] = await Promise.all([
    descriptor,
    fetchFile('model.graph'),
    fetchFile('tokenizer.json'),
    // The checksums file exists only where the descriptor says so.
    descriptor.then((bytes) => (keepsTokensApart(bytes) ? fetchFile(CHECKSUMS_FILE) : undefined)),
  ]);
  return createQueryEncoder(runtime, manifest, graph, tokenizer, { tokenChecksums, base, cache });
}

/** Whether a descriptor's bundle keeps its token embeddings in chunk files. */
function keepsTokensApart(descriptor) {
  try {
    return Boolean(JSON.parse(new TextDecoder().decode(descriptor)).token_embeddings);
  } catch {
    return false; // the wasm core names what is wrong with the descriptor
  }
}

/**
 * Builds a `QueryEncoder` from bundle bytes already in memory, verified by the checksums
 * the descriptor records. `runtime`: a started wasm runtime (what `initWasm` resolves to)
 * or a promise of one. For bundles with token-embedding chunks: `tokenChecksums` (the bytes
 * of token-embeddings/checksums.bin) and `base`, the bundle's URL the chunks are fetched from.
 */
export async function createQueryEncoder(runtime, manifest, graph, tokenizer, { tokenChecksums, base, cache = true } = {}) {
  const { glue } = await runtime;
  let inner;
  try {
    inner = new glue.QueryEncoder(manifest, graph, tokenizer, tokenChecksums);
  } catch (e) {
    throw DotfindError.from(e);
  }
  return new QueryEncoder(inner, base, await openIndexCache(cache));
}

/** A bundle's encoder: text in, vectors out, token-embedding chunks fetched as needed. */
export class QueryEncoder {
  #inner;
  #base;
  #cache;

  constructor(inner, base, cache) {
    this.#inner = inner;
    this.#base = base;
    this.#cache = cache;
  }

  async #fetchChunks(paths) {
    if (!paths.length) return;
    if (!this.#base) throw new DotfindError('dotfind: this model fetches token embeddings on demand: give createQueryEncoder its bundle URL (`base`)');
    await fetchTokenChunks(this.#inner, paths, this.#base, this.#cache);
  }

  #wasm(f) {
    try {
      return f();
    } catch (e) {
      throw DotfindError.from(e);
    }
  }

  /** The query's vector (`dims` floats). */
  async encode(query) {
    requireText(query);
    await this.#fetchChunks(this.#wasm(() => this.#inner.missingTokenChunks(query)));
    return this.#wasm(() => this.#inner.encode(query));
  }

  /** The passages' vectors, `passages.length × dims` floats, row-major. */
  async encodePassages(passages) {
    passages = Array.from(passages, (p) => requireText(p, 'each passage'));
    await this.#fetchChunks(this.#wasm(() => this.#inner.missingPassageTokenChunks(passages)));
    return this.#wasm(() => this.#inner.encodePassages(passages));
  }

  /** Token ids of a query as the model sees them. */
  tokenize(query) {
    return this.#wasm(() => this.#inner.tokenize(requireText(query)));
  }

  get dims() {
    return this.#inner.dims;
  }

  /** The bundle descriptor as a plain object. */
  get manifest() {
    return this.#wasm(() => this.#inner.manifest);
  }

  /** Frees the wasm memory the model holds. */
  free() {
    this.#inner.free();
  }
}
