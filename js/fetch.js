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
    if (init?.signal?.aborted) throw e; // a stall: fetchOnce names it
    const error = new DotfindError(`dotfind: cannot fetch ${url}: ${e.message}`, { file: String(url), cause: e });
    error.unreachable = true; // no answer at all: offline, or the host is down
    throw error;
  }
  if (!response.ok) {
    const text = response.statusText ? ` ${response.statusText}` : '';
    throw new DotfindError(`dotfind: ${url}: HTTP ${response.status}${text}`, { file: String(url), status: response.status });
  }
  return response;
}

/**
 * How long a download may go without a byte before it counts as stalled (a server that
 * accepted the request and then went quiet would otherwise hang a search forever), and how
 * many times a transient failure (no connection, HTTP 5xx, a body cut short, a stall) is
 * tried again. 404s and other 4xx are not retried: the file is not there.
 */
const fetchPolicy = { stallMs: 30_000, retries: 1, retryDelayMs: 300 };

/** `fetchPolicy` changed for this realm (the worker takes the page's options at load). */
export function setFetchPolicy({ stallMs } = {}) {
  if (stallMs === undefined) return;
  if (!(Number.isInteger(stallMs) && stallMs > 0)) throw new DotfindError(`dotfind: stallTimeoutMs must be a positive integer, not ${JSON.stringify(stallMs)}`);
  fetchPolicy.stallMs = stallMs;
}

/** Whether a failed download may succeed if tried again. */
function transient(e) {
  return e instanceof DotfindError && (e.status === undefined || e.status >= 500);
}

/**
 * The body of `url` as bytes, each chunk's size reported to `onChunk` as it arrives (a
 * failed attempt's bytes are taken back, as negative sizes, before the retry), and the
 * response, before its body, to `onResponse` (a range request learns whether it got a range).
 */
export async function fetchBytes(url, { init, onChunk = () => {}, onResponse = () => {} } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    let reported = 0;
    try {
      return await fetchOnce(url, init, (n) => {
        reported += n;
        onChunk(n);
      }, onResponse);
    } catch (e) {
      if (reported) onChunk(-reported);
      if (attempt >= fetchPolicy.retries || !transient(e) || globalThis.navigator?.onLine === false) throw e;
      await new Promise((ok) => setTimeout(ok, fetchPolicy.retryDelayMs));
    }
  }
}

/** One download of `url`, aborted when `fetchPolicy.stallMs` pass without a byte. */
async function fetchOnce(url, init, onChunk, onResponse) {
  const controller = new AbortController();
  let size = 0;
  let stalled = false;
  let timer;
  const watch = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      stalled = true;
      controller.abort();
    }, fetchPolicy.stallMs);
  };
  const stallError = () => new DotfindError(
    `dotfind: ${url}: the server sent nothing for ${fetchPolicy.stallMs / 1000} s (stalled after ${size} bytes)`,
    { file: String(url) },
  );
  watch();
  try {
    const response = await fetchOk(url, { ...init, signal: controller.signal });
    onResponse(response);
    watch();
    return await readBody(response, url, (n) => {
      size += n;
      watch();
      onChunk(n);
    });
  } catch (e) {
    throw stalled ? stallError() : e;
  } finally {
    clearTimeout(timer);
  }
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

/** Keeps verified bytes in `cache`, if it will take them: a full quota (or any other refusal)
 * only costs an offline visit, never the search that fetched them. */
export async function cachePut(cache, url, bytes) {
  try {
    await cache?.put(url, new Response(bytes));
  } catch {
    // nothing to do: see above
  }
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
