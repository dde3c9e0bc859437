// dotfind: semantic search in the browser. The heavy work (download, verification, model
// inference, scoring) runs in a Web Worker this module starts; every method returns a
// Promise and rejects with a DotfindError whose message names the file or input at fault.
import { DotfindError, requireText as text } from './errors.js';
import { WorkerClient } from './messages.js';

export { DotfindError };

const MODES = ['dense', 'lexical', 'hybrid'];

/** `k` if it is a positive integer. */
function count(k) {
  if (!Number.isInteger(k) || k < 1) throw new DotfindError(`dotfind: k must be a positive integer, not ${JSON.stringify(k)}`);
  return k;
}

/**
 * An index to search. `await Dotfind.load(url)`: ready for every mode. `await
 * Dotfind.open(url)`: lexical search at once (a small module, no model), the rest once
 * `engine.ready` resolves (dense and hybrid searches wait for it by themselves).
 */
export class Dotfind {
  #client;
  #startWorker;
  #loadArgs;
  /** The restart under way after the worker failed, shared by the calls waiting for it. */
  #restarting = null;
  /** Set by `terminate`: a stopped engine is never restarted. */
  #terminated = false;

  /** Resolves (to `info`) once the model is loaded: every mode then answers. */
  ready;

  constructor(startWorker, loadArgs) {
    this.#startWorker = startWorker;
    this.#loadArgs = loadArgs;
  }

  /** A client of a fresh worker. */
  #newClient() {
    return new WorkerClient(
      this.#startWorker(),
      (event) => new DotfindError(`dotfind: search.worker.js failed: ${event.message ?? 'could not start (check the worker URL and CSP)'}`),
    );
  }

  /** A fresh worker with the index loaded (the Cache API makes a restart quick). */
  async #connect(onProgress) {
    const client = this.#newClient();
    try {
      this.info = await client.call('load', this.#loadArgs, onProgress);
    } catch (e) {
      client.terminate(e);
      throw e;
    }
    this.#client = client;
    this.ready = Promise.resolve(this.info);
  }

  /** A fresh worker answering lexical queries, with the model loading behind (`ready`). */
  async #connectLexicalFirst(onProgress) {
    const client = this.#newClient();
    try {
      this.info = await client.call('openLexical', this.#loadArgs);
    } catch (e) {
      client.terminate(e);
      throw e;
    }
    this.#client = client;
    // Posted after the caller's first queries (a page searching at once, e.g. for ?q=): the
    // worker answers those before it starts on the model's megabytes.
    this.ready = new Promise((resolve) => { setTimeout(resolve); }).then(() => client.call('load', this.#loadArgs, onProgress)).then((info) => {
      this.info = info;
      return info;
    });
    this.ready.catch(() => {}); // reported to whoever awaits it, not as unhandled
  }

  /**
   * A request to the worker. A worker that failed (its calls then rejected with the reason)
   * is replaced by a fresh one before the next request: never left hanging, never reused.
   */
  async #call(type, args, onProgress) {
    if (this.#client.failure && !this.#terminated) {
      this.#restarting ??= this.#connect().finally(() => {
        this.#restarting = null;
      });
      await this.#restarting;
    }
    return this.#client.call(type, args, onProgress);
  }

  /** `#call`, once the model is loaded. */
  async #callReady(type, args) {
    await this.ready;
    return this.#call(type, args);
  }

  /** An engine for `indexUrl` (not connected yet). */
  static #create(indexUrl, { cache = true, workerUrl, wasm = 'auto', maxVectorBytes, stallTimeoutMs }) {
    const base = globalThis.document?.baseURI ?? globalThis.location?.href;
    // The literal `new Worker(new URL('./…', import.meta.url))` form lets bundlers (Vite,
    // webpack) find and emit the worker and its wasm.
    const startWorker = () => (workerUrl
      ? new Worker(new URL(workerUrl, base), { type: 'module' })
      : new Worker(new URL('./search.worker.js', import.meta.url), { type: 'module' }));
    return new Dotfind(startWorker, { indexUrl: new URL(indexUrl, base).href, cache, wasm, maxVectorBytes, stallTimeoutMs });
  }

  /**
   * Fetches, verifies and caches the index at `indexUrl` (a folder with manifest.json;
   * relative URLs resolve against the page) and its model.
   * @param {string} indexUrl
   * @param {{onProgress?: (p: {file: string, loaded: number, total: number, fileLoaded: number, fileTotal: number, fromCache: boolean}) => void, cache?: boolean, workerUrl?: string | URL, wasm?: 'auto' | 'relaxed' | 'simd', maxVectorBytes?: number | null, stallTimeoutMs?: number}} [options]
   */
  static async load(indexUrl, options = {}) {
    const engine = Dotfind.#create(indexUrl, options);
    await engine.#connect(options.onProgress);
    return engine;
  }

  /**
   * Like `load`, but resolves as soon as lexical search can answer: the lexical module (a
   * tenth of the full one) and the part table, no model. The model and the full module load
   * behind it (`onProgress` reports them); `ready` resolves when they are in. Dense and
   * hybrid searches wait for `ready` by themselves. For pages that show BM25's results
   * while the model is on its way, and upgrade them after. Same options as `load`.
   */
  static async open(indexUrl, options = {}) {
    const engine = Dotfind.#create(indexUrl, options);
    await engine.#connectLexicalFirst(options.onProgress);
    return engine;
  }

  /**
   * Top-k passages: [{id, url, title, heading, snippet, score}], with `.timings`. `probe`:
   * how many vector lists to scan — 'default' (the index's depth), a number, or 'exact'.
   * `mode`: 'dense' (the model's ranking), 'lexical' (BM25, no model involved) or 'hybrid'
   * (both fused; `fusion`: 'convex:W', W the dense side's weight, default 'convex:0.7', or 'rrf'). Lexical and
   * hybrid fetch the term buckets of the query's words; lexical answers before `ready`.
   * `lexical`: Pagefind's API (`await import('/pagefind/pagefind.js')`) to rank by Pagefind
   * instead of dotfind's BM25 in those two modes: its results map to passages by URL and
   * anchor (the id directory).
   */
  async search(query, { k = 10, probe = 'default', mode = 'dense', fusion, lexical } = {}) {
    if (!MODES.includes(mode)) throw new DotfindError(`dotfind: mode must be one of ${MODES.join(', ')}, not ${JSON.stringify(mode)}`);
    const args = { query: text(query), k: count(k), probe, mode, fusion };
    if (lexical !== undefined) {
      if (mode === 'dense') throw new DotfindError('dotfind: the lexical option applies to modes lexical and hybrid, not dense');
      // Imported on first use: pages without Pagefind never fetch it.
      const { pagefindRanking } = await import('./pagefind.js');
      args.lexicalCandidates = await pagefindRanking(lexical, query);
    }
    const { results, timings } = mode === 'lexical' ? await this.#call('search', args) : await this.#callReady('search', args);
    results.timings = timings;
    return results;
  }

  /** Top-k passages for a vector of your own (same shape as `search`). */
  async searchVector(vector, { k = 10, probe = 'default' } = {}) {
    return this.#callReady('searchVector', { vector: Float32Array.from(vector), k: count(k), probe });
  }

  /**
   * BM25 top-k over passage text (no model involved): a lexical first stage to re-rank.
   */
  async lexicalSearch(query, { k = 100 } = {}) {
    return this.#call('lexicalSearch', { query: text(query), k: count(k) });
  }

  /**
   * Orders candidate ids (passage ids, document ids or URLs, e.g. a lexical engine's top
   * 100) by BERT_Dot score: {results: [{id, score}], unknown: [ids not in the index]}.
   */
  async rerank(query, candidates) {
    return this.#callReady('rerank', { query: text(query), candidates: Array.from(candidates, String) });
  }

  /** The query's vector, for apps that score on their own. */
  async encode(query) {
    return this.#callReady('encode', { query: text(query) });
  }

  /** Memory the engine holds: `{listBytes, wasmBytes}` (vector lists; the whole wasm memory). */
  async stats() {
    return this.#call('stats', {});
  }

  /** Stops the worker; the engine cannot be used afterwards. */
  terminate() {
    this.#terminated = true;
    this.#client.terminate(new DotfindError('dotfind: engine terminated'));
  }
}

export default Dotfind;
