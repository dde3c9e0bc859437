/** Download progress of one index file (bytes), reported while `Dotfind.load` runs. */
export interface LoadProgress {
  /** Path of the file within the index, e.g. "parts.bin". */
  file: string;
  /** Bytes of all index files loaded so far, and their total. */
  loaded: number;
  total: number;
  /** Bytes of this file loaded so far, and its size. */
  fileLoaded: number;
  fileTotal: number;
  /** True when the file came from the Cache API instead of the network. */
  fromCache: boolean;
}

export interface LoadOptions {
  onProgress?: (progress: LoadProgress) => void;
  /** Keep verified files and the wasm in the Cache API, so later visits load nothing but
   * manifest.json and work offline (default true). */
  cache?: boolean;
  /** Where search.worker.js is served, if not next to dotfind.js. */
  workerUrl?: string | URL;
  /**
   * Which wasm build runs: "relaxed" (relaxed SIMD: about 2× faster query encoding),
   * "simd" (any browser with wasm SIMD), or "auto" (default: relaxed where supported).
   */
  wasm?: 'auto' | 'relaxed' | 'simd';
  /**
   * Most bytes of vector lists held in memory (default 128 MiB; null: no limit). Beyond it the
   * lists probed longest ago are dropped, and fetched again (from the Cache API) when a query
   * needs them: a long session on a large index keeps a bounded footprint.
   */
  maxVectorBytes?: number | null;
  /**
   * Milliseconds a download may go without a byte before it is abandoned as stalled (default
   * 30000). Failures that may pass (no connection, HTTP 5xx, a body cut short, a stall) are
   * tried once more before the call rejects.
   */
  stallTimeoutMs?: number;
}

/**
 * How many vector lists a search scans: "default" (the depth the indexer chose for the
 * index's size), a number of lists, or "exact" (every list: the whole index, fetched).
 */
export type Probe = 'default' | 'exact' | number;

export interface SearchHit {
  id: string;
  /** Page URL plus #anchor of the passage's heading (static sites), or the corpus url field. */
  url: string;
  title: string;
  heading: string;
  /** The passage text, cut to about 240 characters. Plain text: render it as text, not HTML. */
  snippet: string;
  /** Similarity to the query under the model's similarity (dot or cosine). */
  score: number;
}

export interface SearchResults extends Array<SearchHit> {
  /**
   * Milliseconds spent fetching what the query needed (token-embedding chunks, vector lists,
   * passage fragments; 0 when cached in memory), encoding the query, and searching (probing,
   * scoring, top-k, results).
   */
  timings: { fetchMs: number; encodeMs: number; searchMs: number };
}

export interface Reranked {
  /** The known candidates, best first. */
  results: { id: string; score: number }[];
  /** Candidate ids the index does not contain, in input order. */
  unknown: string[];
}

export interface IndexInfo {
  passageCount: number;
  dims: number;
  modelId: string;
  /** The index's manifest.json. */
  manifest: Record<string, unknown>;
  /** The wasm build that was loaded. */
  wasmBuild: 'relaxed' | 'simd';
  /** How the index is cut: vector lists, lists a search probes by default, passage fragments, id and term buckets. */
  layout: { lists: number; probe: number; fragments: number; id_buckets: number; term_buckets: number };
}

/**
 * What every promise of the package rejects with: the message names the file, URL or input at
 * fault (e.g. `vectors/00003.bin: xxh3-128 mismatch: …`, `dotfind: https://…/manifest.json: HTTP
 * 404 Not Found`).
 */
export declare class DotfindError extends Error {
  name: 'DotfindError';
  /** The file or URL at fault, when one is. */
  file?: string;
  /** The HTTP status of a failed request. */
  status?: number;
}

export declare class Dotfind {
  /** Fetches, verifies (sizes and checksums) and caches the index at `indexUrl`, in a Web Worker. */
  static load(indexUrl: string | URL, options?: LoadOptions): Promise<Dotfind>;
  /**
   * Resolves as soon as lexical search answers (a small wasm module and the part table, no
   * model: a few hundred KB); the model loads behind it. `search(q, { mode: 'lexical' })`
   * works at once; other calls wait for `ready` by themselves.
   */
  static open(indexUrl: string | URL, options?: LoadOptions): Promise<Dotfind>;
  /** Resolves to the full `info` once the model is loaded (at once after `load`). */
  readonly ready: Promise<IndexInfo>;
  /** After `open` and before `ready`: `passageCount` and `manifest` only. */
  readonly info: IndexInfo;
  /**
   * Top-k passages: by the model's similarity among the vector lists `probe` selects
   * (`mode: 'dense'`, the default), by BM25 (`'lexical'`, no model involved), or both
   * rankings fused (`'hybrid'`; `fusion`: `'convex:W'`, W the dense side's weight, default
   * `'convex:0.7'`, or `'rrf'`). Lexical and hybrid fetch the index's term buckets of the
   * query's words.
   */
  search(query: string, options?: { k?: number; probe?: Probe; mode?: 'dense' | 'lexical' | 'hybrid'; fusion?: string }): Promise<SearchResults>;
  /** Top-k passages for a vector of your own (as long as the model's). */
  searchVector(vector: ArrayLike<number>, options?: { k?: number; probe?: Probe }): Promise<SearchHit[]>;
  /**
   * BM25 top-k over the passages' text: a built-in lexical first stage (no model involved).
   */
  lexicalSearch(query: string, options?: { k?: number }): Promise<SearchHit[]>;
  /** Orders candidate ids (e.g. a lexical engine's top 100) by the BERT_Dot score. */
  rerank(query: string, candidates: Iterable<string>): Promise<Reranked>;
  /** The query vector. */
  encode(query: string): Promise<Float32Array>;
  /** Memory the engine holds, in bytes: the vector lists, and the whole wasm memory (model included). */
  stats(): Promise<{ listBytes: number; wasmBytes: number }>;
  terminate(): void;
}

export default Dotfind;
