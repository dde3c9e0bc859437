// Driven by bench/bench_browser.mjs through `window.bench`: load an index, run queries one
// at a time (the driver counts the bytes each one fetched), report the package's timings.
//
// With `?auto=INDEX_URL&queries=QUERIES_URL` the page runs on its own instead: it loads the
// index, types every query of the JSON list, then asks for `signal-done` (which the driver
// sees in the server's log). That is how the driver measures memory in a browser no
// DevTools session is attached to: Playwright's, which the timed pass needs, makes the
// renderer keep copies of every response body (DevTools' network buffers, up to ~100 MB)
// that no visitor's browser holds.
import { Dotfind } from '/dotfind/dotfind.js';

let engine = null;

window.bench = {
  /** Loads the index at `url`; returns {loadMs, layout, passageCount, wasmBuild}. */
  async load(url) {
    const t0 = performance.now();
    engine = await Dotfind.load(url);
    const { layout, passageCount, wasmBuild } = engine.info;
    return { loadMs: performance.now() - t0, layout, passageCount, wasmBuild };
  },
  /** What the engine holds in memory. */
  stats() {
    return engine.stats();
  },
  /** One search: {ms (wall, in the page), timings (the worker's), ids}. */
  async search(query, k = 10) {
    const t0 = performance.now();
    const hits = await engine.search(query, { k });
    return { ms: performance.now() - t0, timings: hits.timings, ids: hits.map((h) => h.id) };
  },
};

const params = new URLSearchParams(location.search);
if (params.has('auto')) {
  const signal = (what) => fetch(`/bench/signal-${what}`).catch(() => {});
  try {
    await window.bench.load(params.get('auto'));
    const queries = await (await fetch(params.get('queries'))).json();
    for (const q of queries) await window.bench.search(q);
    await signal('done');
  } catch (e) {
    await signal(`failed-${encodeURIComponent(e.message)}`);
  }
}
document.getElementById('out').textContent = 'ready';
