// dotfind's search worker (the entry point Dotfind.load and Dotfind.open start): loads an
// index into the wasm core, then answers search / rerank / encode requests off the main
// thread. The index arrives in parts. `openLexical` loads the lexical module and the part
// table only, so BM25 answers within a few hundred KB; `load` loads the full module and the
// model. Then each search step first asks the core which parts it needs — the term buckets
// of the query's words, the token-embedding chunks, the vector lists its centroids select,
// the passage fragments of the hits shown — and fetches only those (Cache API first).
import { DotfindError } from './errors.js';
import { fetchBytes, setFetchPolicy } from './fetch.js';
import { dropStale, fetchFiles, fetchManifest, fetchParts, fetchTokenChunks, isFileError, openIndexCache, sameBytes } from './index-files.js';
import { serve } from './messages.js';
import { startLexicalRuntime, startRuntime } from './runtime.js';

let engine = null;
/** The lexical module's index: answers lexical queries until `engine` is loaded. */
let lexicalIndex = null;
/** What `openLexical` fetched, for `load` to go on from: `{indexUrl, manifest}`. */
let opened = null;
/** The full module's glue, once loaded. */
let glue = null;
/** Lexical searches under way, and who waits for none to be (see `lexicalIdle`). */
let lexicalBusy = 0;
let lexicalWaiters = [];

/** Resolves once no lexical search is under way: a visit's first keyword queries go before the model's download. */
function lexicalIdle() {
  return lexicalBusy ? new Promise((resolve) => lexicalWaiters.push(resolve)) : Promise.resolve();
}
/** The wasm instance's memory size, once the runtime started. */
let wasmMemoryBytes = () => 0;
/** Where the index is and its cache: parts are fetched from there as queries need them. */
let indexBase = null;
let indexCache = null;
/** What the index was loaded from (`load`'s arguments, manifest.json's bytes): a search
 * failing on a part that is not what that manifest promised checks it against the server's. */
let loadedFrom = null;

/** `probe` as the core takes it: undefined (the index's depth), a list count, or every list. */
function probeArg(probe) {
  if (probe === undefined || probe === 'default') return undefined;
  if (probe === 'exact') return Number.MAX_SAFE_INTEGER;
  if (Number.isInteger(probe) && probe >= 1) return probe;
  throw new DotfindError(`dotfind: probe must be "default", "exact" or a positive integer, not ${JSON.stringify(probe)}`);
}

/** Vector lists a tab holds by default: a long session on a large index stays within it. */
const DEFAULT_MAX_VECTOR_BYTES = 128 * 1024 * 1024;

async function load(args, id) {
  const { indexUrl, cache: useCache = true, wasm, maxVectorBytes = DEFAULT_MAX_VECTOR_BYTES, stallTimeoutMs } = args;
  setFetchPolicy({ stallMs: stallTimeoutMs });
  await lexicalIdle();
  if (maxVectorBytes !== null && !(Number.isInteger(maxVectorBytes) && maxVectorBytes > 0 && maxVectorBytes < 2 ** 32)) {
    throw new DotfindError(`dotfind: maxVectorBytes must be a positive integer below 2^32 or null, not ${JSON.stringify(maxVectorBytes)}`);
  }
  // The wasm compiles while manifest.json is fetched (awaited once the manifest is in).
  const starting = startRuntime(wasm, { cache: useCache });
  starting.catch(() => {}); // a failure is reported where it is awaited, not as unhandled
  const base = baseOf(indexUrl);
  const cache = await openIndexCache(useCache);
  // After `openLexical`, the manifest it fetched (and checked for a rebuild) is the one.
  const { bytes: manifest, changed } = opened?.indexUrl === indexUrl
    ? { bytes: opened.manifest, changed: false }
    : await fetchManifest(base, cache);
  opened = null;
  const runtime = await starting;
  glue = runtime.glue;
  wasmMemoryBytes = () => runtime.glue.wasmMemoryBytes();
  const loader = new runtime.glue.IndexLoader(manifest);
  const files = loader.fileList();
  if (changed) await dropStale(cache, base, files.map((f) => f.path));
  const loadTotal = files.reduce((s, f) => s + f.bytes, 0);
  const report = (offset, total) => (p) => self.postMessage({ type: 'progress', id, ...p, loaded: offset + p.loaded, total });
  await fetchFiles(files, (path, bytes) => loader.addFile(path, bytes), base, cache, { onProgress: report(0, loadTotal) });
  // A replaced engine is not freed: a search still running on it would fail on a freed
  // object; the garbage collector takes it once that search is done.
  engine = loader.finish();
  engine.setListBudget(maxVectorBytes ?? undefined);
  lexicalIndex?.free();
  lexicalIndex = null;
  indexBase = base;
  indexCache = cache;
  loadedFrom = { args, manifest };
  // An index small enough to scan whole comes in one piece with the model.
  const parts = engine.partsEveryQueryNeeds();
  const partsTotal = parts.reduce((s, f) => s + f.bytes, 0);
  await fetchFiles(parts, (path, bytes) => engine.addPart(path, bytes), base, cache, { onProgress: report(loadTotal, loadTotal + partsTotal) });
  await warmUp();
  const { layout } = engine.manifest;
  return {
    passageCount: engine.passageCount,
    dims: engine.dims,
    modelId: engine.manifest.model.model_id,
    manifest: engine.manifest,
    wasmBuild: runtime.build,
    layout,
  };
}

function baseOf(indexUrl) {
  return new URL(indexUrl.endsWith('/') ? indexUrl : `${indexUrl}/`);
}

/**
 * The lexical module and the part table, nothing else: BM25 answers from here on, each
 * query fetching its terms' buckets and its hits' fragments, while `load` brings the model.
 */
async function openLexical(args) {
  const { indexUrl, cache: useCache = true, stallTimeoutMs } = args;
  setFetchPolicy({ stallMs: stallTimeoutMs });
  const starting = startLexicalRuntime({ cache: useCache });
  starting.catch(() => {});
  const base = baseOf(indexUrl);
  const cache = await openIndexCache(useCache);
  const { bytes: manifest, changed } = await fetchManifest(base, cache);
  const runtime = await starting;
  const index = new runtime.glue.LexicalIndex(manifest);
  if (changed) await dropStale(cache, base, index.indexFiles());
  await fetchFiles(index.fileList(), (path, bytes) => index.addFile(path, bytes), base, cache);
  index.finish();
  indexBase = base;
  indexCache = cache;
  opened = { indexUrl, manifest };
  if (!engine) lexicalIndex = index;
  return { passageCount: index.passageCount, manifest: index.manifest };
}

/** Memory held by the engine: `{listBytes, wasmBytes}` (vector lists; the wasm instance's memory). */
function stats() {
  return { listBytes: requireEngine().listBytesHeld, wasmBytes: wasmMemoryBytes() };
}

/**
 * One throwaway search while the page still shows "loading": the engine starts wasm in its
 * baseline tier and recompiles hot functions (the model's kernels, the scoring loop) once
 * they have run a while, so without this the visitor's first queries are the slow ones.
 * Optional: a failure here would resurface, with its message, on a real query.
 */
async function warmUp() {
  try {
    // Encoding, and scoring where the lists came with the load; nothing else is fetched for
    // it (on a large index a search's lists are megabytes).
    const e = await engineFor('warm up');
    const vector = e.encode('warm up');
    if (!e.missingLists(vector, 1, undefined).length) e.searchHits(vector, 1, undefined).free();
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

/** Fetches and adds the parts a step named (none: nothing to do). */
async function ensureParts(e, paths) {
  if (paths.length) await fetchParts(e, paths, indexBase, indexCache);
}

/**
 * Fetches what `missing()` names until it names nothing, at most `rounds` times: each step
 * of a search names what it needs next (a directory, then the ranges it points into).
 * Returns what is still missing then (the step's own check names it, if it matters).
 */
async function fetchUntilHeld(e, missing, rounds) {
  let paths = missing();
  for (let round = 0; paths.length && round < rounds; round += 1) {
    await ensureParts(e, paths);
    paths = missing();
  }
  return paths;
}

/** The index lexical search runs on: the engine once loaded, else the lexical module's. */
function lexicalTarget() {
  if (engine) return engine;
  if (lexicalIndex) return lexicalIndex;
  throw new DotfindError('dotfind: the index is not loaded yet');
}

/** A wasm `Hits` as plain `{passages, scores}`, the wasm object freed. */
function plainHits(hits) {
  const { passages, scores } = hits;
  hits.free();
  return { passages, scores };
}

/**
 * The parts the lexical side needs: the id buckets naming another engine's `candidates`
 * (`{keys, scores}`: ids or URLs, e.g. Pagefind's) when the page sent them, else the term
 * buckets of the query's words.
 */
function lexicalParts(index, query, candidates) {
  return ensureParts(index, candidates ? index.missingIdBuckets(candidates.keys) : index.missingTermBuckets(query));
}

/** The lexical side's top-k hits (its parts added): the candidates', else BM25's. */
function lexicalSide(index, query, k, candidates) {
  return plainHits(candidates
    ? index.candidateHits(candidates.keys, Float32Array.from(candidates.scores), k)
    : index.lexicalHits(query, k));
}

/** The records of `passages`: their fragments' directories, then the records themselves. */
async function ensureRecords(index, passages) {
  await fetchUntilHeld(index, () => index.missingFragments(passages), 3);
}

/** Hits as results, their records fetched first. */
async function resultsOf(index, { passages, scores }) {
  await ensureRecords(index, passages);
  return index.results(passages, scores);
}

/** The lexical ranking's top-k (no model involved), with timings as `search` has them. */
async function lexical(query, k, candidates) {
  lexicalBusy += 1;
  try {
    return await lexicalOn(lexicalTarget(), query, k, candidates);
  } finally {
    lexicalBusy -= 1;
    if (!lexicalBusy) for (const resolve of lexicalWaiters.splice(0)) resolve();
  }
}

async function lexicalOn(index, query, k, candidates) {
  const t0 = performance.now();
  await lexicalParts(index, query, candidates);
  const t1 = performance.now();
  const hits = lexicalSide(index, query, k, candidates);
  const t2 = performance.now();
  const results = await resultsOf(index, hits);
  return { results, timings: { fetchMs: t1 - t0 + (performance.now() - t2), encodeMs: 0, searchMs: t2 - t1 } };
}

/**
 * What a search for `vector` and `k` results reads of the vector lists, fetched until all
 * is held: the probed lists' codes, then the best candidates' rows (or whole lists, for an
 * exact scan). A search typed meanwhile may have pushed some out of the memory budget
 * (maxVectorBytes) before they were scored; asked again, they come from the cache.
 */
async function ensureLists(e, vector, k, probe) {
  const missing = await fetchUntilHeld(e, () => e.missingLists(vector, k, probe), 4);
  if (missing.length) throw new DotfindError(`dotfind: the memory budget (maxVectorBytes) cannot hold the lists this query probes: ${missing.join(', ')}`);
}

/**
 * Top-k for a query vector: the lists its centroids select, then the fragments of the hits.
 * Returns `{results, partsMs, scoreMs}`: time spent fetching parts, and the rest (probing,
 * scoring, decoding results).
 */
async function searchVector(e, vector, k, probe) {
  const t0 = performance.now();
  await ensureLists(e, vector, k, probe);
  const t1 = performance.now();
  const { passages, scores } = plainHits(e.searchHits(vector, k, probe));
  const t2 = performance.now();
  await ensureRecords(e, passages);
  const t3 = performance.now();
  return { results: e.results(passages, scores), partsMs: t1 - t0 + (t3 - t2), scoreMs: t2 - t1 + (performance.now() - t3) };
}

/** Whether manifest.json on the server is no longer the one loaded: the site was rebuilt. */
async function indexReplaced() {
  if (!loadedFrom) return false;
  try {
    const now = await fetchBytes(new URL('manifest.json', indexBase), { init: { cache: 'no-cache' } });
    return !sameBytes(now, loadedFrom.manifest);
  } catch {
    return false; // offline or unreachable: the failure stands as it is
  }
}

/** One reload at a time, shared by the searches that met the rebuild. */
let reloading = null;

/**
 * `handler`, following a rebuild of the site: every file is checked against the manifest it
 * was loaded with, so a search after a redeploy fails on the first part that changed (or is
 * gone) — then, if manifest.json changed on the server, the new index is loaded (cached files
 * it still lists are kept once they verify, the rest dropped) and the search runs again on
 * it. Files of two builds never meet in one engine. Only failures of a file lead to that
 * check: a bad argument costs no request.
 */
function followingRebuilds(handler) {
  return async (args, id) => {
    try {
      return await handler(args, id);
    } catch (e) {
      if (!isFileError(e)) throw e;
      if (!reloading) {
        reloading = indexReplaced()
          .then((replaced) => replaced && load(loadedFrom.args, id).then(() => true))
          .finally(() => { reloading = null; });
      }
      if (!(await reloading)) throw e;
      return handler(args, id);
    }
  };
}

const handlers = {
  openLexical,
  load,
  stats,
  async search({ query, k, probe, mode = 'dense', fusion, lexicalCandidates }) {
    const probeLists = probeArg(probe);
    if (mode === 'lexical') return lexical(query, k, lexicalCandidates);
    const t = performance.now();
    const e = await engineFor(query);
    const chunksMs = performance.now() - t;
    const t0 = performance.now();
    const vector = e.encode(query);
    const t1 = performance.now();
    if (mode === 'hybrid') {
      await lexicalParts(e, query, lexicalCandidates);
      await ensureLists(e, vector, glue.hybridDepth(k), probeLists);
      const t2 = performance.now();
      const side = lexicalSide(e, query, glue.hybridDepth(k), lexicalCandidates);
      const fused = plainHits(e.hybridHits(vector, side.passages, side.scores, k, probeLists, fusion));
      const t3 = performance.now();
      const results = await resultsOf(e, fused);
      return { results, timings: { fetchMs: chunksMs + (t2 - t1) + (performance.now() - t3), encodeMs: t1 - t0, searchMs: t3 - t2 } };
    }
    const { results, partsMs, scoreMs } = await searchVector(e, vector, k, probeLists);
    return { results, timings: { fetchMs: chunksMs + partsMs, encodeMs: t1 - t0, searchMs: scoreMs } };
  },
  async searchVector({ vector, k, probe }) {
    const e = requireEngine();
    return (await searchVector(e, vector, k, probeArg(probe))).results;
  },
  async lexicalSearch({ query, k }) {
    return (await lexical(query, k)).results;
  },
  async rerank({ query, candidates }) {
    const e = await engineFor(query);
    // The id buckets naming the candidates first, then their lists' directories, then
    // their rows.
    await fetchUntilHeld(e, () => e.missingForRerank(candidates), 4);
    return e.rerank(query, candidates);
  },
  async encode({ query }) {
    return (await engineFor(query)).encode(query);
  },
};

for (const type of ['search', 'searchVector', 'lexicalSearch', 'rerank', 'encode']) {
  handlers[type] = followingRebuilds(handlers[type]);
}

serve('dotfind search worker', handlers);
