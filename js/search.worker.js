// dotfind's search worker (the entry point Dotfind.load starts): loads an index into the
// wasm core, then answers search / rerank / encode requests off the main thread. Large
// indexes are scored in parts: helper workers (scorer.worker.js) scan the passages past
// this worker's share, each holding a copy of the vector shards its share overlaps.
import { DotfindError } from './errors.js';
import { fetchFiles, fetchManifest, fetchTokenChunks, openIndexCache } from './index-files.js';
import { WorkerClient, serve } from './messages.js';
import { startRuntime } from './runtime.js';

/** Passages per scoring thread below which another thread is not worth a message round trip. */
const PASSAGES_PER_THREAD = 10_000;
const MAX_SEARCH_THREADS = 4;
let engine = null;
/** Where the index is and its cache: token-embedding chunks are fetched from there as queries need them. */
let indexBase = null;
let indexCache = null;
/** This worker scores passages [0, ownEnd); each helper {scorer, start, end} the rest. */
let ownEnd = 0;
let helpers = [];

/** A helper worker holding part of the vectors (see scorer.worker.js). */
function startScorer() {
  return new WorkerClient(new Worker(new URL('./scorer.worker.js', import.meta.url), { type: 'module' }), (event) => {
    event.preventDefault(); // handled here: the page's own worker error handler stays quiet
    return new DotfindError(`dotfind: scorer.worker.js failed: ${event.message || 'could not start (is it served next to search.worker.js and allowed by worker-src?)'}`);
  });
}

/** How many threads score a search: `choice` is 'auto' or a count from 1 to 16. */
function searchThreadsFor(choice, passageCount) {
  if (choice === 'auto') {
    const cores = globalThis.navigator?.hardwareConcurrency ?? 1;
    return Math.max(1, Math.min(cores, MAX_SEARCH_THREADS, Math.floor(passageCount / PASSAGES_PER_THREAD)));
  }
  if (!Number.isInteger(choice) || choice < 1 || choice > 16) {
    throw new DotfindError(`dotfind: searchThreads must be "auto" or an integer from 1 to 16, not ${JSON.stringify(choice)}`);
  }
  return Math.max(1, Math.min(choice, passageCount));
}

/**
 * The passages split into equal row ranges, one per thread: `{ownEnd, parts}`, each helper
 * part `{start, end, shards: [{path, start, count}]}` with the vector shards it overlaps.
 */
function splitPassages(indexShards, searchThreads) {
  const shards = [];
  for (const { vectors, count } of indexShards) {
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
  return { ownEnd: bounds[1], passageCount, parts };
}

/**
 * Starts a helper per part with the vector shards it needs (`kept`: path → verified bytes).
 * With `searchThreads: 'auto'` helpers are an optimisation: if they cannot start (e.g. a CSP
 * without worker-src for them) this worker scores everything; a count the app asked for is
 * a promise, so then this rejects.
 */
async function startHelpers(split, kept, runtime, searchThreads) {
  const started = [];
  try {
    for (const part of split.parts) started.push({ ...part, scorer: startScorer() });
    await Promise.all(started.map(({ scorer, shards }) => scorer.call('init', {
      build: runtime.build,
      module: runtime.module,
      dims: engine.dims,
      shards: shards.map(({ path, start }) => ({ path, start, bytes: kept.get(path) })),
    })));
    helpers = started;
    ownEnd = split.ownEnd;
  } catch (e) {
    started.forEach(({ scorer }) => scorer.terminate(new DotfindError('dotfind: scorer stopped')));
    helpers = [];
    ownEnd = split.passageCount;
    if (searchThreads !== 'auto') throw e;
    console.warn(`dotfind: searching on one thread: ${e.message}`);
  }
}

async function load({ indexUrl, cache: useCache = true, wasm, searchThreads = 'auto' }, id) {
  // The wasm compiles while manifest.json is fetched (awaited once the manifest is in).
  const starting = startRuntime(wasm, { cache: useCache });
  starting.catch(() => {}); // a failure is reported where it is awaited, not as unhandled
  const base = new URL(indexUrl.endsWith('/') ? indexUrl : `${indexUrl}/`);
  const cache = await openIndexCache(useCache);
  const manifest = await fetchManifest(base, cache);
  const runtime = await starting;
  const loader = new runtime.glue.IndexLoader(manifest);
  const split = splitPassages(loader.shards, searchThreads);
  // Helpers get copies of the vector shards their part overlaps: kept as they arrive.
  const kept = new Map(split.parts.flatMap((p) => p.shards.map((s) => [s.path, null])));
  await fetchFiles(loader, base, cache, {
    keep: (path, bytes) => kept.has(path) && kept.set(path, bytes),
    onProgress: (progress) => self.postMessage({ type: 'progress', id, ...progress }),
  });
  engine = loader.finish();
  indexBase = base;
  indexCache = cache;
  await startHelpers(split, kept, runtime, searchThreads);
  kept.clear();
  await warmUp();
  return {
    passageCount: engine.passageCount,
    dims: engine.dims,
    modelId: engine.manifest.model.model_id,
    manifest: engine.manifest,
    wasmBuild: runtime.build,
    searchThreads: 1 + helpers.length,
  };
}

/**
 * One throwaway search while the page still shows "loading": the engine starts wasm in its
 * baseline tier and recompiles hot functions (the model's kernels, the scoring loop) once
 * they have run a while, so without this the visitor's first queries are the slow ones.
 * Optional: a failure here would resurface, with its message, on a real query.
 */
async function warmUp() {
  try {
    await handlers.search({ query: 'warm up', k: 1 });
  } catch {
    // nothing to do: see above
  }
}

function requireEngine() {
  if (!engine) throw new DotfindError('dotfind: the index is not loaded yet');
  return engine;
}

/** The engine, once the token-embedding chunks `query` needs are in (fetched or cached). */
async function engineFor(query) {
  const e = requireEngine();
  const missing = e.missingTokenChunks(query);
  if (missing.length) await fetchTokenChunks(e, missing, indexBase, indexCache);
  return e;
}

/** Concatenates the parts' passage numbers and scores for `mergeHits`. */
function concatParts(parts) {
  const size = parts.reduce((n, p) => n + p.passages.length, 0);
  const passages = new Uint32Array(size);
  const scores = new Float32Array(size);
  let at = 0;
  for (const p of parts) {
    passages.set(p.passages, at);
    scores.set(p.scores, at);
    at += p.passages.length;
  }
  return { passages, scores };
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
    helpers.forEach(({ scorer }) => scorer.terminate(new DotfindError('dotfind: scorer stopped')));
    helpers = [];
    ownEnd = e.passageCount;
    console.warn(`dotfind: searching on one thread: ${err.message}`);
    return { results: e.searchVector(vector, k), threadMs: [] };
  } finally {
    mine.free();
  }
  const { passages, scores } = concatParts(parts);
  return { results: e.mergeHits(k, passages, scores), threadMs: parts.map((p) => p.ms) };
}

const handlers = {
  load,
  async search({ query, k }) {
    const t = performance.now();
    const e = await engineFor(query);
    const fetchMs = performance.now() - t;
    const t0 = performance.now();
    const vector = e.encode(query);
    const t1 = performance.now();
    const { results, threadMs } = await searchVector(e, vector, k);
    const t2 = performance.now();
    return { results, timings: { fetchMs, encodeMs: t1 - t0, searchMs: t2 - t1, threadMs } };
  },
  lexicalSearch({ query, k }) {
    return requireEngine().lexicalSearch(query, k);
  },
  async rerank({ query, candidates }) {
    return (await engineFor(query)).rerank(query, candidates);
  },
  async encode({ query }) {
    return (await engineFor(query)).encode(query);
  },
};

serve('dotfind search worker', handlers);
