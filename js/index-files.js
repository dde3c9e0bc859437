// Fetching an index into the wasm core's IndexLoader: manifest.json first (network first,
// the cached copy when offline: it names the current files), then every file it lists, from
// the Cache API or the network (streamed, with progress, several at a time). The core
// verifies each file's size and checksum as it arrives, before it is cached, so a damaged
// download never reaches the cache; a cached copy that fails the check is dropped and
// fetched again. Token-embedding chunks, which the manifest does not list (a query fetches
// the few it needs), go the same way, checked against the model's checksums file.
import { DotfindError } from './errors.js';
import { fetchBytes, openCache } from './fetch.js';

const CACHE_NAME = 'dotfind-index-v1';
const PARALLEL_FETCHES = 4;

/** The Cache API cache index files are kept in, or null (see openCache). */
export function openIndexCache(enabled) {
  return openCache(CACHE_NAME, enabled);
}

/** The bytes of manifest.json of the index at `base` (a URL ending in '/'). */
export async function fetchManifest(base, cache) {
  const url = new URL('manifest.json', base).href;
  try {
    const bytes = await fetchBytes(url, { init: { cache: 'no-cache' } });
    await cache?.put(url, new Response(bytes));
    return bytes;
  } catch (e) {
    const cached = await cache?.match(url);
    if (!cached) throw e;
    return new Uint8Array(await cached.arrayBuffer());
  }
}

/**
 * Gets one verified file: from the Cache API if a copy there passes `add` (a copy that
 * fails it is dropped), else from the network (then cached once `add` accepted it).
 * `add(bytes)` verifies and keeps the bytes, throwing on a size or checksum mismatch.
 * Returns whether the bytes came from the cache.
 */
async function getVerified(url, cache, add, onChunk) {
  const cached = await cache?.match(url);
  if (cached) {
    try {
      add(new Uint8Array(await cached.arrayBuffer()));
      return true;
    } catch {
      await cache.delete(url); // stale or damaged copy: fetch it again
    }
  }
  const bytes = await fetchBytes(url, { init: { cache: 'no-cache' }, onChunk });
  add(bytes);
  await cache?.put(url, new Response(bytes));
  return false;
}

/**
 * Adds every file `loader` lists (fetched or cached) to it. `keep(path, bytes)` sees each
 * file once verified; `onProgress` gets {file, loaded, total, fileLoaded, fileTotal, fromCache}.
 */
export async function fetchFiles(loader, base, cache, { keep = () => {}, onProgress = () => {} } = {}) {
  const files = loader.fileList();
  const total = files.reduce((s, f) => s + f.bytes, 0);
  let loaded = 0;

  async function getFile(file) {
    let fileLoaded = 0;
    const add = (bytes) => {
      loader.addFile(file.path, bytes); // throws on a size or checksum mismatch
      keep(file.path, bytes);
    };
    const onChunk = (n) => {
      fileLoaded += n;
      loaded += n;
      onProgress({ file: file.path, loaded, total, fileLoaded, fileTotal: file.bytes, fromCache: false });
    };
    if (await getVerified(new URL(file.path, base).href, cache, add, onChunk)) {
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
 * Fetches (or takes from the cache) the token-embedding chunk files `paths` (relative to
 * `base`) and adds each to `target` (a SearchEngine or QueryEncoder, which verifies it
 * against the model's checksums): what a query needs before it can be encoded.
 */
export async function fetchTokenChunks(target, paths, base, cache) {
  let inFlight = chunksInFlight.get(target);
  if (!inFlight) chunksInFlight.set(target, (inFlight = new Map()));
  try {
    await Promise.all(paths.map((path) => {
      const url = new URL(path, base).href;
      // Queries typed in quick succession need the same chunks: one download each.
      if (!inFlight.has(url)) {
        const got = getVerified(url, cache, (bytes) => target.addTokenChunk(path, bytes));
        inFlight.set(url, got.finally(() => inFlight.delete(url)));
      }
      return inFlight.get(url);
    }));
  } catch (e) {
    throw DotfindError.from(e); // the wasm core's checks throw plain Errors
  }
}

/** Token-embedding chunk downloads under way, per model (each verifies its own) and URL. */
const chunksInFlight = new WeakMap();
