// The lexical benchmark's page (bench/bench_lexical.mjs drives it): dotfind's lexical stage
// and Pagefind side by side, each answering the same queries with its top 10.
import { Dotfind } from '/dotfind/dotfind.js';

let engine;
let pagefind;

window.bench = {
  /** dotfind's lexical module and the part table, no model (it is held back by the server). */
  async openLexical(indexUrl) {
    engine = await Dotfind.open(indexUrl, { cache: false, stallTimeoutMs: 3_600_000 });
  },
  /** dotfind with its model, every mode. */
  async load(indexUrl) {
    engine = await Dotfind.load(indexUrl, { cache: false });
    return engine.info.passageCount;
  },
  async lexical(query, k) {
    return (await engine.search(query, { k, mode: 'lexical' })).map((h) => h.id);
  },
  /** Milliseconds `engine.search` takes in `mode` (encoding, probing, scoring, fusing, results). */
  async timed(query, mode) {
    const t0 = performance.now();
    await engine.search(query, { k: 10, mode });
    return performance.now() - t0;
  },
  async pagefindInit(path) {
    pagefind = await import(path);
    await pagefind.init();
  },
  /** Pagefind's top `k` pages' URLs (each page's data fetched, as a results list shows them). */
  async pagefind(query, k) {
    const { results } = await pagefind.search(query);
    const pages = await Promise.all(results.slice(0, k).map((r) => r.data()));
    return pages.map((p) => p.url);
  },
};
document.getElementById('out').textContent = 'ready';
