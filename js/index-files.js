// Fetching an index into the wasm core: manifest.json first (network first, the cached copy
// when offline: it names the current files), then the files it lists, from the Cache API or
// the network (streamed, with progress, several at a time). The core verifies each file's
// size and checksum as it arrives, before it is cached, so a damaged download never reaches
// the cache; a cached copy that fails the check is dropped and fetched again. Files a query
// needs — vector lists, passage fragments, token-embedding chunks, which the manifest does
// not list — go the same way when a search step names them, checked against the part table
// or the model's checksums file.
import { DotfindError } from './errors.js';
import { cachePut, fetchBytes, openCache } from './fetch.js';

const CACHE_NAME = 'dotfind-index-v1';
const PARALLEL_FETCHES = 4;

/** The Cache API cache index files are kept in, or null (see openCache). */
export function openIndexCache(enabled) {
  return openCache(CACHE_NAME, enabled);
}

/**
 * manifest.json of the index at `base` (a URL ending in '/'): `{bytes, changed}`, where
 * `changed` says a different manifest was cached before (the site was rebuilt since).
 */
export async function fetchManifest(base, cache) {
  const url = new URL('manifest.json', base).href;
  const before = await cache?.match(url).then((r) => r?.arrayBuffer());
  let bytes;
  try {
    bytes = await fetchBytes(url, { init: { cache: 'no-cache' } });
  } catch (e) {
    if (!before) throw e;
    return { bytes: new Uint8Array(before), changed: false }; // offline: the cached index
  }
  const changed = before !== undefined && !sameBytes(new Uint8Array(before), bytes);
  await cachePut(cache, url, bytes);
  return { bytes, changed };
}

/** Whether two byte arrays hold the same bytes. */
export function sameBytes(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Drops every cached file of the index at `base` but manifest.json and `keep` (paths the
 * new manifest lists): after a rebuild, parts of the old one would only ever fail their
 * checks, and would fill the cache.
 */
export async function dropStale(cache, base, keep) {
  if (!cache) return;
  const kept = new Set(['manifest.json', ...keep].map((p) => new URL(p, base).href));
  for (const request of await cache.keys()) {
    if (request.url.startsWith(base.href) && !kept.has(request.url)) await cache.delete(request);
  }
}

/**
 * Hands the first cached copy of `copies` ([key, add] pairs, tried in order) to its `add`:
 * whether one was accepted. A copy `add` rejects is stale or damaged, and is dropped so that
 * it is fetched again.
 */
async function addFromCache(cache, copies) {
  for (const [key, addCopy] of copies) {
    const copy = await cache?.match(key);
    if (!copy) continue;
    try {
      addCopy(new Uint8Array(await copy.arrayBuffer()));
      return true;
    } catch {
      await cache.delete(key);
    }
  }
  return false;
}

/**
 * Gets one verified file: from the Cache API if a copy there passes `add` (a copy that
 * fails it is dropped), else from the network (then cached once `add` accepted it).
 * `add(bytes)` verifies and keeps the bytes, throwing on a size or checksum mismatch.
 * Returns whether the bytes came from the cache.
 */
async function getVerified(url, cache, add, onChunk) {
  if (await addFromCache(cache, [[url, add]])) return true;
  const bytes = await fetchBytes(url, { init: { cache: 'no-cache' }, onChunk });
  add(bytes);
  await cachePut(cache, url, bytes);
  return false;
}

/**
 * As `getVerified`, for bytes `range` ('first-last') of the file at `url`, asked for with a
 * `Range` header: kept in the cache under `url?bytes=range` (the Cache API keeps no partial
 * responses). A cached copy of the whole file serves any range, and a host that ignores
 * `Range` sends the whole file: `addWhole(bytes)` takes it then.
 */
async function getVerifiedRange(url, range, cache, add, addWhole) {
  const key = `${url}?bytes=${range}`;
  if (await addFromCache(cache, [[key, add], [url, addWhole]])) return true;
  let partial = false;
  const bytes = await fetchBytes(url, {
    // Past the HTTP cache: revalidating a cached range (a 304) came back from Chromium as an
    // empty 206; the Cache API above keeps what was verified.
    init: { cache: 'no-store', headers: { Range: `bytes=${range}` } },
    onResponse: (response) => { partial = response.status === 206; },
  });
  (partial ? add : addWhole)(bytes);
  await cachePut(cache, partial ? key : url, bytes);
  return false;
}

/** `path#bytes=first-last` (a range of a file a search step names) as [path, 'first-last'];
 * [path, null] for a whole file. */
function splitRange(path) {
  const at = path.indexOf('#bytes=');
  return at < 0 ? [path, null] : [path.slice(0, at), path.slice(at + '#bytes='.length)];
}

/**
 * Gets every file of `files` ([{path, bytes}], paths relative to `base`), fetched or cached,
 * handing each to `add(path, bytes)`, which verifies and keeps it (throwing on a size or
 * checksum mismatch). `onProgress` gets {file, loaded, total, fileLoaded, fileTotal, fromCache}.
 */
export async function fetchFiles(files, add, base, cache, { onProgress = () => {} } = {}) {
  const total = files.reduce((s, f) => s + f.bytes, 0);
  let loaded = 0;

  async function getFile(file) {
    let fileLoaded = 0;
    const onChunk = (n) => {
      fileLoaded += n;
      loaded += n;
      onProgress({ file: file.path, loaded, total, fileLoaded, fileTotal: file.bytes, fromCache: false });
    };
    const url = new URL(file.path, base).href;
    if (await getVerified(url, cache, (bytes) => add(file.path, bytes), onChunk)) {
      loaded += file.bytes;
      onProgress({ file: file.path, loaded, total, fileLoaded: file.bytes, fileTotal: file.bytes, fromCache: true });
    }
  }

  // Largest first, so the long downloads start at once.
  const queue = [...files].sort((a, b) => b.bytes - a.bytes);
  await Promise.all(
    Array.from({ length: PARALLEL_FETCHES }, async () => {
      while (queue.length) await getFile(queue.shift());
    }),
  );
}

/**
 * Fetches (or takes from the cache) the files `paths` (relative to `base`) a search step of
 * `owner` (a SearchEngine or QueryEncoder) named, and hands each to `add(path, bytes)`, which
 * verifies it: what the step needs before it can run. Steps of one owner needing the same
 * file (queries typed in quick succession) share one download.
 */
export async function fetchOnDemand(owner, paths, base, cache, add) {
  let inFlight = onDemandInFlight.get(owner);
  if (!inFlight) onDemandInFlight.set(owner, (inFlight = new Map()));
  try {
    await Promise.all(paths.map((path) => {
      const [file, range] = splitRange(path);
      const url = new URL(file, base).href;
      const key = range ? `${url}#bytes=${range}` : url;
      if (!inFlight.has(key)) {
        const got = range
          ? getVerifiedRange(url, range, cache, (bytes) => add(path, bytes), (bytes) => add(file, bytes))
          : getVerified(url, cache, (bytes) => add(path, bytes));
        inFlight.set(key, got.finally(() => inFlight.delete(key)));
      }
      return inFlight.get(key);
    }));
  } catch (e) {
    // No answer at all (offline, host down) for a file no earlier query fetched: say so,
    // since "Failed to fetch" alone reads like a broken site.
    if (e instanceof DotfindError && e.unreachable) {
      throw fileError(new DotfindError(`dotfind: this query needs ${new URL(e.file).pathname.split('/').slice(-2).join('/')}, which is not cached and could not be fetched (offline?): ${e.message}`, { file: e.file, cause: e }));
    }
    throw fileError(DotfindError.from(e)); // the wasm core's checks throw plain Errors
  }
}

/** Errors of getting an index file on demand (fetching or verifying it): the failures a
 * rebuild of the site can cause, after which the worker asks the server whether
 * manifest.json changed. Other failures (a bad argument, a query the model refuses) cost no
 * request. */
const fileErrors = new WeakSet();
export const isFileError = (e) => fileErrors.has(e);
function fileError(e) {
  fileErrors.add(e);
  return e;
}

/** The token-embedding chunk files `paths` a query needs, added to `target` (see fetchOnDemand). */
export function fetchTokenChunks(target, paths, base, cache) {
  return fetchOnDemand(target, paths, base, cache, (path, bytes) => target.addTokenChunk(path, bytes));
}

/** The vector lists (whole, or byte ranges of them) and passage fragments `paths` a search
 * step needs, added to `engine`. */
export function fetchParts(engine, paths, base, cache) {
  return fetchOnDemand(engine, paths, base, cache, (path, bytes) => engine.addPart(path, bytes));
}

/** Downloads under way, per owner (each verifies its own) and URL. */
const onDemandInFlight = new WeakMap();
