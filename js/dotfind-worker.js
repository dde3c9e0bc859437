// dotfind's Web Worker: fetches an index (streaming, with progress), verifies every file
// in wasm against manifest.json, caches verified files with the Cache API, and answers
// search / rerank / encode requests off the main thread.
import { startRuntime } from './runtime.js';

const CACHE_NAME = 'dotfind-index-v1';
const PARALLEL_FETCHES = 4;
let engine = null;

function post(message) {
  self.postMessage(message);
}

async function openCache(enabled) {
  if (!enabled || typeof caches === 'undefined') return null;
  try {
    return await caches.open(CACHE_NAME);
  } catch {
    return null; // e.g. opaque origins: caching is an optimisation, never a failure
  }
}

/** Reads a response body to bytes, reporting each chunk. */
async function readBody(response, onChunk) {
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
    onChunk(value.length);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

async function fetchBytes(base, path, onChunk) {
  const url = new URL(path, base);
  let response;
  try {
    response = await fetch(url, { cache: 'no-cache' });
  } catch (e) {
    throw new Error(`dotfind index ${base}: cannot fetch ${path}: ${e.message}`);
  }
  if (!response.ok) {
    throw new Error(`dotfind index ${base}: ${path}: HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`);
  }
  return readBody(response, onChunk);
}

async function load({ indexUrl, cache: useCache, wasm }, id) {
  const { build, glue: { IndexLoader } } = await startRuntime(wasm);
  const base = new URL(indexUrl.endsWith('/') ? indexUrl : `${indexUrl}/`);
  const cache = await openCache(useCache);
  const manifestUrl = new URL('manifest.json', base).href;

  // manifest.json: network first (it names the current files), cached copy when offline.
  let manifestBytes;
  try {
    manifestBytes = await fetchBytes(base, 'manifest.json', () => {});
    await cache?.put(manifestUrl, new Response(manifestBytes));
  } catch (e) {
    const cached = await cache?.match(manifestUrl);
    if (!cached) throw e;
    manifestBytes = new Uint8Array(await cached.arrayBuffer());
  }
  const loader = new IndexLoader(manifestBytes);
  const files = loader.fileList();
  const total = files.reduce((s, f) => s + f.bytes, 0);
  let loaded = 0;
  const progress = (file, fileLoaded, fileTotal, fromCache) =>
    post({ type: 'progress', id, file, loaded, total, fileLoaded, fileTotal, fromCache });

  async function getFile(file) {
    const url = new URL(file.path, base).href;
    const cached = await cache?.match(url);
    if (cached) {
      const bytes = new Uint8Array(await cached.arrayBuffer());
      try {
        loader.addFile(file.path, bytes);
        loaded += file.bytes;
        progress(file.path, file.bytes, file.bytes, true);
        return;
      } catch {
        await cache.delete(url); // stale or damaged copy: fetch it again
      }
    }
    let fileLoaded = 0;
    const bytes = await fetchBytes(base, file.path, (n) => {
      fileLoaded += n;
      loaded += n;
      progress(file.path, fileLoaded, file.bytes, false);
    });
    loader.addFile(file.path, bytes); // throws on size/sha256 mismatch: nothing cached
    await cache?.put(url, new Response(bytes));
  }

  const queue = [...files].sort((a, b) => b.bytes - a.bytes);
  await Promise.all(
    Array.from({ length: PARALLEL_FETCHES }, async () => {
      while (queue.length) await getFile(queue.shift());
    }),
  );
  engine = loader.finish();
  // One throwaway search while the page is still showing "loading": the engine starts wasm
  // in its baseline tier and recompiles hot functions (the model's kernels, the scoring
  // loop) once they have run a while, so without this the visitor's first queries are the
  // slow ones. Optional: a failure here would resurface, with its message, on a real query.
  try {
    engine.search('warm up', 1);
  } catch {
    // nothing to do: see above
  }
  const manifest = engine.manifest;
  return { passageCount: engine.passageCount, dims: engine.dims, modelId: manifest.model.model_id, manifest, wasmBuild: build };
}

function requireEngine() {
  if (!engine) throw new Error('dotfind: the index is not loaded yet');
  return engine;
}

const handlers = {
  load,
  search({ query, k }) {
    const e = requireEngine();
    const t0 = performance.now();
    const vector = e.encode(query);
    const t1 = performance.now();
    const results = e.searchVector(vector, k);
    const t2 = performance.now();
    return { results, timings: { encodeMs: t1 - t0, searchMs: t2 - t1 } };
  },
  lexicalSearch({ query, k }) {
    return requireEngine().lexicalSearch(query, k);
  },
  rerank({ query, candidates }) {
    return requireEngine().rerank(query, candidates);
  },
  encode({ query }) {
    return requireEngine().encode(query);
  },
};

self.onmessage = async ({ data }) => {
  const { id, type, args } = data;
  try {
    const handler = handlers[type];
    if (!handler) throw new Error(`dotfind worker: unknown request ${type}`);
    post({ id, ok: true, result: await handler(args, id) });
  } catch (e) {
    post({ id, ok: false, error: String(e?.message ?? e) });
  }
};
