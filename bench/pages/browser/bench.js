// Driven by bench/bench_browser.mjs through `window.bench`: load an index, run queries one
// at a time (the driver counts the bytes each one fetched), report the package's timings.
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
document.getElementById('out').textContent = 'ready';
