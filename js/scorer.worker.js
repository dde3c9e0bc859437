// dotfind's scoring helper (the entry point search.worker.js starts): a worker that holds
// the vectors of part of an index and returns that part's exact top-k for each query
// vector. A large scan is bound by one core's memory bandwidth, so splitting it across cores
// cuts the search's wall time. The search worker hands helpers the compiled wasm module and
// the verified vector shards, and merges their answers.
import { DotfindError } from './errors.js';
import { serve } from './messages.js';
import { attachRuntime } from './runtime.js';

let scorer = null;

const handlers = {
  async init({ build, module, dims, shards }) {
    const { VectorScorer } = await attachRuntime(build, module);
    scorer = new VectorScorer(dims);
    for (const { path, start, bytes } of shards) scorer.addShard(path, start, bytes);
    return null;
  },
  search({ vector, k, start, end }) {
    if (!scorer) throw new DotfindError('dotfind: scorer not initialised');
    const t0 = performance.now();
    const part = scorer.searchRows(vector, k, start, end);
    const passages = part.passages;
    const scores = part.scores;
    part.free();
    return { passages, scores, ms: performance.now() - t0 };
  },
};

// Search answers move their two arrays to the loading worker instead of copying them.
serve('dotfind scorer', handlers, (result) => (result ? [result.passages.buffer, result.scores.buffer] : []));
