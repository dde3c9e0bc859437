// Fetching an index into the wasm core's IndexLoader: manifest.json first (network first,
// the cached copy when offline: it names the current files), then every file it lists, from
// the Cache API or the network (streamed, with progress, several at a time). The core
// verifies each file's size and checksum as it arrives, before it is cached, so a damaged
// download never reaches the cache; a cached copy that fails the check is dropped and
// fetched again.
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
 * Adds every file `loader` lists (fetched or cached) to it. `keep(path, bytes)` sees each
 * file once verified; `onProgress` gets {file, loaded, total, fileLoaded, fileTotal, fromCache}.
 */
export async function fetchFiles(loader, base, cache, { keep = () => {}, onProgress = () => {} } = {}) {
  const files = loader.fileList();
  const total = files.reduce((s, f) => s + f.bytes, 0);
  let loaded = 0;
  const add = (file, bytes) => {
    loader.addFile(file.path, bytes); // throws on a size or checksum mismatch
    keep(file.path, bytes);
  };

  async function fromCache(file, url) {
    const cached = await cache?.match(url);
    if (!cached) return false;
    try {
      add(file, new Uint8Array(await cached.arrayBuffer()));
    } catch {
      await cache.delete(url); // stale or damaged copy: fetch it again
      return false;
    }
    loaded += file.bytes;
    onProgress({ file: file.path, loaded, total, fileLoaded: file.bytes, fileTotal: file.bytes, fromCache: true });
    return true;
  }

  async function getFile(file) {
    const url = new URL(file.path, base).href;
    if (await fromCache(file, url)) return;
    let fileLoaded = 0;
    const bytes = await fetchBytes(url, {
      init: { cache: 'no-cache' },
      onChunk(n) {
        fileLoaded += n;
        loaded += n;
        onProgress({ file: file.path, loaded, total, fileLoaded, fileTotal: file.bytes, fromCache: false });
      },
    });
    add(file, bytes);
    await cache?.put(url, new Response(bytes));
  }

  // Largest first, so the long downloads start at once.
  const queue = [...files].sort((a, b) => b.bytes - a.bytes);
  await Promise.all(
    Array.from({ length: PARALLEL_FETCHES }, async () => {
      while (queue.length) await getFile(queue.shift());
    }),
  );
}
