// Driven by bench/bench_browser.mjs. `?index=URL&mode=start` times load + first result;
// `mode=latency` times search over the index with varied queries; `threads=N` forces the
// number of scoring threads (default: the package's 'auto').
import { Dotfind } from '/dotfind/dotfind.js';

const params = new URLSearchParams(location.search);
const out = document.getElementById('out');
const QUERIES = [
  'how do I store key value pairs', 'propagate errors with the question mark operator', 'spawn a thread',
  'what is ownership', 'borrowing rules for references', 'define a struct with fields', 'match on an enum',
  'vectors grow at runtime', 'strings are utf-8 encoded', 'write a unit test', 'closures capture their environment',
  'box allocates on the heap', 'channels send values between threads', 'install rust with rustup', 'shadowing variables',
];
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p90 = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.9)];

try {
  const t0 = performance.now();
  const threads = params.get('threads');
  const engine = await Dotfind.load(params.get('index'), { searchThreads: threads ? Number(threads) : 'auto' });
  const loaded = performance.now();
  if (params.get('mode') === 'start') {
    await engine.search(QUERIES[0], { k: 10 });
    out.textContent = JSON.stringify({ loadMs: loaded - t0, firstResultMs: performance.now() - t0, sinceNavigationMs: performance.now(), wasmBuild: engine.info.wasmBuild });
  } else {
    // One unmeasured round first: Chromium compiles hot wasm functions in background
    // threads for a while after load, competing for the cores (cold start is measured above).
    for (const q of QUERIES) await engine.search(q, { k: 10 });
    const search = [], encode = [];
    for (let r = 0; r < 4; r++) {
      for (const q of QUERIES) {
        const hits = await engine.search(q, { k: 10 });
        search.push(hits.timings.searchMs);
        encode.push(hits.timings.encodeMs);
      }
    }
    out.textContent = JSON.stringify({ passages: engine.info.passageCount, searchMedianMs: median(search), searchP90Ms: p90(search), encodeMedianMs: median(encode), runs: search.length, wasmBuild: engine.info.wasmBuild, threads: engine.info.searchThreads, cores: navigator.hardwareConcurrency });
  }
} catch (e) {
  out.textContent = `error: ${e.message}`;
}
