// dotfind's Web Worker: fetches an index (streaming, with progress), verifies every file
// in wasm against manifest.json, caches verified files with the Cache API, and answers
// search / rerank / encode requests off the main thread. Large indexes are scored in
// parts: helper workers (dotfind-scorer.js) scan the rows past this worker's share.
import { startRuntime, sha256Hex } from './runtime.js';
import { WorkerClient, serve } from './messages.js';

const CACHE_NAME = 'dotfind-index-v1';
const PARALLEL_FETCHES = 4;
/** Passages per scoring thread below which another thread is not worth a message round trip. */
const PASSAGES_PER_THREAD = 10_000;
const MAX_SEARCH_THREADS = 4;
let engine = null;
/** This worker scores passages [0, ownEnd); each helper {scorer, start, end} the rest. */
let ownEnd = 0;
let helpers = [];

/** A helper worker holding part of the vectors (see dotfind-scorer.js). */
function startScorer() {
  return new WorkerClient(new Worker(new URL('./dotfind-scorer.js', import.meta.url), { type: 'module' }), (event) => {
    event.preventDefault(); // handled here: the page's own worker error handler stays quiet
    return new Error(`dotfind scorer failed: ${event.message || 'could not start (is dotfind-scorer.js served next to dotfind-worker.js and allowed by worker-src?)'}`);
  });
}

/** How many threads score a search: `choice` is 'auto' or a count from 1 to 16. */
function searchThreadsFor(choice, passageCount) {
  if (choice === 'auto') {
    const cores = globalThis.navigator?.hardwareConcurrency ?? 1;
    return Math.max(1, Math.min(cores, MAX_SEARCH_THREADS, Math.floor(passageCount / PASSAGES_PER_THREAD)));
  }
  if (!Number.isInteger(choice) || choice < 1 || choice > 16) {
    throw new Error(`dotfind: searchThreads must be "auto" or an integer from 1 to 16, not ${JSON.stringify(choice)}`);
  }
  return Math.max(1, Math.min(choice, passageCount));
}

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

async function load({ indexUrl, cache: useCache, wasm, searchThreads = 'auto' }, id) {
  // The wasm compiles while manifest.json is fetched (awaited once the manifest is in).
  const runtime = startRuntime(wasm);
  runtime.catch(() => {}); // a failure is reported where it is awaited, not as unhandled
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
  const { build, module, glue: { IndexLoader } } = await runtime;
  const loader = new IndexLoader(manifestBytes);
  const files = loader.fileList();

  // Split the passages into equal row ranges, one per thread; helpers get copies of the
  // vector shards their range overlaps, so keep those bytes as they arrive.
  const shards = [];
  for (const { vectors, count } of loader.shards) {
    const start = shards.length ? shards.at(-1).start + shards.at(-1).count : 0;
    shards.push({ path: vectors, start, count });
  }
  const passageCount = shards.length ? shards.at(-1).start + shards.at(-1).count : 0;
  const threads = searchThreadsFor(searchThreads, passageCount);
  const bounds = Array.from({ length: threads + 1 }, (_, i) => Math.round((i * passageCount) / threads));
  const parts = bounds.slice(1, -1).map((start, i) => ({
    start,
    end: bounds[i + 2],
    shards: shards.filter((s) => s.start < bounds[i + 2] && s.start + s.count > start),
  }));
  const kept = new Map(parts.flatMap((p) => p.shards.map((s) => [s.path, null])));
  const total = files.reduce((s, f) => s + f.bytes, 0);
  let loaded = 0;
  const progress = (file, fileLoaded, fileTotal, fromCache) =>
    post({ type: 'progress', id, file, loaded, total, fileLoaded, fileTotal, fromCache });

  // A model split into parts: its whole digest is checked against its descriptor at the
  // end (by WebCrypto's sha256 if the descriptor records no xxh3-128), so keep the parts
  // until then.
  const modelParts = loader.modelParts;
  const modelBytes = new Map(modelParts.length > 1 ? modelParts.map((p) => [p, null]) : []);
  // Files with an xxh3-128 recorded are checked with it in wasm; others by sha256.
  const add = async ({ path, xxh3_128 }, bytes) => {
    loader.addFile(path, bytes, xxh3_128 ? undefined : ((await sha256Hex(bytes)) ?? undefined));
    if (kept.has(path)) kept.set(path, bytes);
    if (modelBytes.has(path)) modelBytes.set(path, bytes);
  };

  async function getFile(file) {
    const url = new URL(file.path, base).href;
    const cached = await cache?.match(url);
    if (cached) {
      const bytes = new Uint8Array(await cached.arrayBuffer());
      try {
        await add(file, bytes);
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
    await add(file, bytes); // throws on a size or checksum mismatch: nothing cached
    await cache?.put(url, new Response(bytes));
  }

  const queue = [...files].sort((a, b) => b.bytes - a.bytes);
  await Promise.all(
    Array.from({ length: PARALLEL_FETCHES }, async () => {
      while (queue.length) await getFile(queue.shift());
    }),
  );
  const modelSha256 = modelBytes.size && loader.modelSha256Wanted
    ? await sha256Hex(modelParts.map((p) => modelBytes.get(p)))
    : null;
  modelBytes.clear();
  engine = loader.finish(modelSha256 ?? undefined);
  ownEnd = bounds[1];
  helpers = [];
  const started = [];
  try {
    for (const part of parts) started.push({ ...part, scorer: startScorer() });
    await Promise.all(started.map(({ scorer, shards: mine }) => scorer.call('init', {
      build,
      module,
      dims: engine.dims,
      shards: mine.map(({ path, start }) => ({ path, start, bytes: kept.get(path) })),
    })));
    helpers = started;
  } catch (e) {
    started.forEach(({ scorer }) => scorer.terminate(new Error('dotfind scorer stopped')));
    ownEnd = passageCount;
    // 'auto' is an optimisation: without helpers (e.g. a CSP without worker-src for them)
    // this worker scores everything. A count the app asked for is a promise: report it.
    if (searchThreads !== 'auto') throw e;
    console.warn(`dotfind: searching on one thread: ${e.message}`);
  }
  kept.clear();
  // One throwaway search while the page is still showing "loading": the engine starts wasm
  // in its baseline tier and recompiles hot functions (the model's kernels, the scoring
  // loop) once they have run a while, so without this the visitor's first queries are the
  // slow ones. Optional: a failure here would resurface, with its message, on a real query.
  try {
    await handlers.search({ query: 'warm up', k: 1 });
  } catch {
    // nothing to do: see above
  }
  const manifest = engine.manifest;
  return {
    passageCount: engine.passageCount,
    dims: engine.dims,
    modelId: manifest.model.model_id,
    manifest,
    wasmBuild: build,
    searchThreads: 1 + helpers.length,
  };
}

function requireEngine() {
  if (!engine) throw new Error('dotfind: the index is not loaded yet');
  return engine;
}

/**
 * Exact top-k for a query vector: this worker's rows and the helpers' in parallel, merged.
 * Returns `{results, threadMs}`, threadMs = each thread's scoring time (this worker's
 * first; empty when nothing was split).
 */
async function searchVector(e, vector, k) {
  if (!helpers.length) return { results: e.searchVector(vector, k), threadMs: [] };
  const theirs = Promise.all(helpers.map(({ scorer, start, end }) => scorer.call('search', { vector, k, start, end })));
  theirs.catch(() => {}); // handled below, after this worker's own part
  const t0 = performance.now();
  const mine = e.searchVectorRows(vector, k, 0, ownEnd);
  const ownMs = performance.now() - t0;
  let parts;
  try {
    parts = [{ passages: mine.passages, scores: mine.scores, ms: ownMs }, ...(await theirs)];
  } catch (err) {
    // A helper died (the browser may reclaim workers): score everything here from now on.
    helpers.forEach(({ scorer }) => scorer.terminate(new Error('dotfind scorer stopped')));
    helpers = [];
    ownEnd = e.passageCount;
    console.warn(`dotfind: searching on one thread: ${err.message}`);
    return { results: e.searchVector(vector, k), threadMs: [] };
  } finally {
    mine.free();
  }
  const size = parts.reduce((n, p) => n + p.passages.length, 0);
  const passages = new Uint32Array(size);
  const scores = new Float32Array(size);
  let at = 0;
  for (const p of parts) {
    passages.set(p.passages, at);
    scores.set(p.scores, at);
    at += p.passages.length;
  }
  return { results: e.mergeHits(k, passages, scores), threadMs: parts.map((p) => p.ms) };
}

const handlers = {
  load,
  async search({ query, k }) {
    const e = requireEngine();
    const t0 = performance.now();
    const vector = e.encode(query);
    const t1 = performance.now();
    const { results, threadMs } = await searchVector(e, vector, k);
    const t2 = performance.now();
    return { results, timings: { encodeMs: t1 - t0, searchMs: t2 - t1, threadMs } };
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

serve('dotfind worker', handlers);
