// A dotfind scoring helper: a second worker that holds the vectors of part of an index and
// returns that part's exact top-k for each query vector. A 100k-passage scan is bound by
// one core's memory bandwidth, so splitting it across cores cuts the search's wall time.
// The loading worker (dotfind-worker.js) starts helpers, hands them the compiled wasm
// module and the verified vector shards, and merges their answers.
import { attachRuntime } from './runtime.js';

let scorer = null;

const handlers = {
  async init({ build, module, dims, shards }) {
    const { VectorScorer } = await attachRuntime(build, module);
    scorer = new VectorScorer(dims);
    for (const { path, start, bytes } of shards) scorer.addShard(path, start, bytes);
    return { transfer: [] };
  },
  search({ vector, k, start, end }) {
    if (!scorer) throw new Error('dotfind scorer: not initialised');
    const t0 = performance.now();
    const part = scorer.searchRows(vector, k, start, end);
    const passages = part.passages;
    const scores = part.scores;
    part.free();
    return { passages, scores, ms: performance.now() - t0, transfer: [passages.buffer, scores.buffer] };
  },
};

self.onmessage = async ({ data }) => {
  const { id, type, args } = data;
  try {
    const handler = handlers[type];
    if (!handler) throw new Error(`dotfind scorer: unknown request ${type}`);
    const { transfer, ...result } = await handler(args);
    self.postMessage({ id, ok: true, result }, transfer);
  } catch (e) {
    self.postMessage({ id, ok: false, error: String(e?.message ?? e) });
  }
};
