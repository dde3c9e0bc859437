// Driven by bench/bench_encoders.mjs, one fresh page per measurement:
//   window.runBench({ runtime, precision, queries, ids, passes, warmMs, dotfindBuild, coldOnly })
// runtime: 'dotfind' | 'dotfind-simd' | 'ort-web' | 'transformers.js'; precision: 'f32' | 'int8' | 'int8-ffn-f32' | 'query' (a bundle folder name).
//
// Every runtime gets the same treatment so the figures compare:
//   1. prepare (untimed): import the runtime's JS, fetch its wasm and the model files into
//      memory, pre-import the wasm's JS glue (so the timed part never touches the network);
//   2. cold start (timed): instantiate the wasm + build the encoder/session from those bytes;
//   3. a first pass over the queries, timed apart (a fresh page's first queries, while V8 still
//      runs baseline-compiled wasm; its vectors are the ones parity is computed on), then more
//      passes until `warmMs` have gone by (the same budget for every runtime);
//   4. `passes` timed passes, one query per call (batch 1), single thread.
// dotfind and transformers.js are timed from text (tokenization included); onnxruntime-web
// has no tokenizer, so it is fed dotfind's token ids and its rows exclude tokenization.
// Pooling (the bundle's, `pooling` in dotfind-model.json) and L2 normalization are
// included for all three.

const abs = (p) => new URL(p, location.href).href;

async function bytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

/** Pools one [1, seq, dims] output as the bundle says, then L2-normalizes. */
function poolNormalize(hidden, seq, dims, pooling) {
  const v = new Float32Array(dims);
  if (pooling === 'cls') v.set(hidden.subarray(0, dims));
  else {
    for (let t = 0; t < seq; t++) for (let d = 0; d < dims; d++) v[d] += hidden[t * dims + d];
    for (let d = 0; d < dims; d++) v[d] /= seq; // batch 1, unpadded: every token is attended
  }
  let norm = 0;
  for (const x of v) norm += x * x;
  norm = Math.sqrt(norm) || 1;
  for (let d = 0; d < dims; d++) v[d] /= norm;
  return v;
}

const RUNTIMES = {
  // dotfind's public browser API: the wasm build runtime.js picks for this browser (`build`
  // 'auto', or 'simd' forced), its wasm-bindgen init and QueryEncoder, from bytes, without
  // the worker. A package without runtime.js (one plain-SIMD build in pkg/) gets build null.
  async dotfind(precision, build) {
    if (build) build = (await import('/dotfind/runtime.js')).chooseBuild(build);
    const dir = build === 'relaxed' ? '/dotfind/pkg-relaxed/' : '/dotfind/pkg/';
    const glue = await import(`${dir}dotfind.js`);
    const base = `/model/${precision}/`;
    const { createQueryEncoder } = await import('/dotfind/encoder.js');
    const [wasm, manifest, model, tokenizer] = await Promise.all([
      bytes(`${dir}dotfind_bg.wasm`),
      ...['dotfind-model.json', 'model.graph', 'tokenizer.json'].map((f) => bytes(base + f)),
    ]);
    // A bundle with token embeddings apart (the query bundle): its chunks' checksums, and
    // where to fetch the chunks from (at a query's first use, in the first pass).
    const tokensApart = Boolean(JSON.parse(new TextDecoder().decode(manifest)).token_embeddings);
    const tokenChecksums = tokensApart ? await bytes(`${base}token-embeddings/checksums.bin`) : undefined;
    const chunks = { tokenChecksums, base: new URL(base, location.href), cache: false };
    return {
      version: build ?? 'simd',
      async create() {
        await glue.default({ module_or_path: wasm });
        // The package's own path from bytes: the wasm encoder verifies and builds.
        const encoder = await createQueryEncoder({ glue }, manifest, model, tokenizer, chunks);
        return { encode: (q) => encoder.encode(q), tokenize: (q) => Array.from(encoder.tokenize(q)) };
      },
    };
  },

  // onnxruntime-web (the project's pinned devDependency), CPU-only wasm build, 1 thread, no
  // proxy worker; wasmBinary hands it the prefetched wasm bytes.
  async 'ort-web'(precision) {
    const ort = await import('/vendor/ort/dist/ort.wasm.min.mjs');
    const paths = { mjs: abs('/vendor/ort/dist/ort-wasm-simd-threaded.mjs'), wasm: abs('/vendor/ort/dist/ort-wasm-simd-threaded.wasm') };
    await import(paths.mjs);
    const base = `/model/${precision}/`;
    const [wasm, model, manifest] = await Promise.all([bytes(paths.wasm), bytes(base + 'model.onnx'), bytes(base + 'dotfind-model.json')]);
    const { pooling, hidden_size: dims } = JSON.parse(new TextDecoder().decode(manifest));
    Object.assign(ort.env.wasm, { numThreads: 1, proxy: false, wasmPaths: paths, wasmBinary: wasm.buffer });
    return {
      version: ort.env.versions.web,
      async create() {
        const session = await ort.InferenceSession.create(model, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
        return {
          async encode(_q, ids) {
            const shape = [1, ids.length];
            const out = await session.run({
              input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), shape),
              attention_mask: new ort.Tensor('int64', new BigInt64Array(ids.length).fill(1n), shape),
            });
            const hidden = out.last_hidden_state;
            const v = poolNormalize(hidden.data, ids.length, dims, pooling);
            hidden.dispose();
            return v;
          },
        };
      },
    };
  },

  // transformers.js with local files only. Its file loader goes through env.customCache,
  // which here answers from memory, so pipeline() start-up excludes the network like the
  // others; misses (files it wanted that were not prefetched) are reported.
  async 'transformers.js'(precision) {
    const { env, pipeline } = await import('/vendor/transformers/dist/transformers.web.min.js');
    const modelId = 'dotfind/all-minilm-l6-v2';
    const dist = '/vendor/tjs-ort/dist/';
    // What transformers.js loads by default (from a CDN), served locally instead.
    const paths = { mjs: abs(`${dist}ort-wasm-simd-threaded.asyncify.mjs`), wasm: abs(`${dist}ort-wasm-simd-threaded.asyncify.wasm`) };
    // transformers.js either imports the glue by URL (pre-imported here) or reads it through
    // its cache and imports a blob URL of it (served from memory): no network either way.
    await import(paths.mjs);
    const files = ['config.json', 'tokenizer.json', 'tokenizer_config.json', precision === 'int8' ? 'onnx/model_quantized.onnx' : 'onnx/model.onnx'];
    const memory = new Map();
    await Promise.all([paths.wasm, paths.mjs, ...files.map((f) => `/tjs-models/${modelId}/${f}`)].map(async (url) => memory.set(new URL(url, location.href).pathname, await bytes(url))));
    const { pooling } = JSON.parse(new TextDecoder().decode(await bytes(`/model/${precision}/dotfind-model.json`)));
    const misses = [];
    Object.assign(env, {
      allowRemoteModels: false,
      allowLocalModels: true,
      localModelPath: '/tjs-models/',
      useBrowserCache: false,
      useCustomCache: true,
      customCache: {
        async match(key) {
          const path = new URL(String(key), location.href).pathname;
          const body = memory.get(path);
          if (!body) {
            misses.push(path);
            return undefined;
          }
          return new Response(body, { headers: { 'content-length': String(body.byteLength) } });
        },
        async put() {},
      },
    });
    Object.assign(env.backends.onnx.wasm, { numThreads: 1, proxy: false, wasmPaths: paths });
    return {
      version: env.backends.onnx.versions?.web ?? null,
      misses,
      async create() {
        const extractor = await pipeline('feature-extraction', modelId, { device: 'wasm', dtype: precision === 'int8' ? 'q8' : 'fp32' });
        return { encode: async (q) => (await extractor(q, { pooling, normalize: true })).data };
      },
    };
  },
};

RUNTIMES['dotfind-simd'] = (precision) => RUNTIMES.dotfind(precision, 'simd');

window.runBench = async ({ runtime, precision, queries, ids, passes, warmMs, dotfindBuild, coldOnly }) => {
  const prepared = await RUNTIMES[runtime](precision, dotfindBuild);
  const t0 = performance.now();
  const encoder = await prepared.create();
  const coldStartMs = performance.now() - t0;
  if (coldOnly) return { coldStartMs };
  // First pass: what a fresh page's first queries cost (V8 runs wasm baseline-compiled first and
  // optimizes hot functions later), and the vectors parity is computed on.
  const vectors = [];
  const firstMs = [];
  const warmStart = performance.now();
  for (let i = 0; i < queries.length; i++) {
    const t = performance.now();
    vectors.push(Array.from(await encoder.encode(queries[i], ids?.[i])));
    firstMs.push(performance.now() - t);
  }
  // Warm-up: whole passes until warmMs have gone by since the first query, the same wall-clock
  // budget for every runtime, so the timed passes measure optimized code.
  while (performance.now() - warmStart < warmMs) {
    for (let i = 0; i < queries.length; i++) await encoder.encode(queries[i], ids?.[i]);
  }
  const timesMs = [];
  for (let p = 0; p < passes; p++) {
    for (let i = 0; i < queries.length; i++) {
      const t = performance.now();
      await encoder.encode(queries[i], ids?.[i]);
      timesMs.push(performance.now() - t);
    }
  }
  return {
    coldStartMs,
    firstMs,
    timesMs,
    vectors,
    version: prepared.version,
    misses: prepared.misses ?? [],
    ids: encoder.tokenize ? queries.map(encoder.tokenize) : null,
  };
};
document.getElementById('out').textContent = 'ready';
