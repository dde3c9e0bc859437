// The one way dotfind fetches: every request of the package goes through here, so HTTP and
// network failures read the same everywhere (DotfindError naming the URL), and the Cache API
// is used the same way by the index and the runtime.
import { DotfindError } from './errors.js';

/** A response that is OK, or a DotfindError naming `url` (network failure or HTTP status). */
export async function fetchOk(url, init) {
  let response;
  try {
    response = await fetch(url, init);
  } catch (e) {
    throw new DotfindError(`dotfind: cannot fetch ${url}: ${e.message}`, { file: String(url), cause: e });
  }
  if (!response.ok) {
    const text = response.statusText ? ` ${response.statusText}` : '';
    throw new DotfindError(`dotfind: ${url}: HTTP ${response.status}${text}`, { file: String(url), status: response.status });
  }
  return response;
}

/** The body of `url` as bytes, each chunk's size reported to `onChunk` as it arrives. */
export async function fetchBytes(url, { init, onChunk = () => {} } = {}) {
  return readBody(await fetchOk(url, init), url, onChunk);
}

/** Reads a response body to bytes, reporting each chunk; a body cut short is named. */
export async function readBody(response, url, onChunk = () => {}) {
  const chunks = [];
  let size = 0;
  try {
    if (!response.body) {
      const whole = new Uint8Array(await response.arrayBuffer());
      onChunk(whole.length);
      return whole;
    }
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
      onChunk(value.length);
    }
  } catch (e) {
    throw new DotfindError(`dotfind: ${url}: connection lost after ${size} bytes: ${e.message}`, { file: String(url), cause: e });
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** The Cache API cache `name`, or null where caching is off or unavailable (opaque origins,
 * insecure contexts): caching is an optimisation, never a failure. */
export async function openCache(name, enabled = true) {
  if (!enabled || typeof caches === 'undefined') return null;
  try {
    return await caches.open(name);
  } catch {
    return null;
  }
}
