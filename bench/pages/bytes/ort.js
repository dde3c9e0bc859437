// onnxruntime-web's cold path to a first query vector, for bench/bench_bytes.mjs: its wasm
// build and glue, the model's ONNX and the tokenizer definition a visitor's page would need
// (looked up here word by word: a tokenizer library's own code is not counted, in its favour).
const out = document.getElementById('out');
try {
  const ort = await import('/vendor/ort/dist/ort.wasm.min.mjs');
  Object.assign(ort.env.wasm, { numThreads: 1, proxy: false, wasmPaths: '/vendor/ort/dist/' });
  const fetchOk = async (url) => {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response;
  };
  const [model, tokenizer] = await Promise.all([
    fetchOk('/model/model.onnx').then((r) => r.arrayBuffer()),
    fetchOk('/model/tokenizer.json').then((r) => r.json()),
  ]);
  const session = await ort.InferenceSession.create(new Uint8Array(model), { executionProviders: ['wasm'] });
  const vocab = tokenizer.model.vocab;
  const words = new URLSearchParams(location.search).get('q').toLowerCase().split(/\W+/).filter(Boolean);
  const ids = [vocab['[CLS]'], ...words.map((w) => vocab[w] ?? vocab['[UNK]']), vocab['[SEP]']].map(BigInt);
  const tensor = (values) => new ort.Tensor('int64', BigInt64Array.from(values), [1, values.length]);
  const feeds = { input_ids: tensor(ids), attention_mask: tensor(ids.map(() => 1n)) };
  if (session.inputNames.includes('token_type_ids')) feeds.token_type_ids = tensor(ids.map(() => 0n));
  const result = await session.run(feeds);
  out.textContent = `vector ${result[session.outputNames[0]].dims.join('×')}`;
} catch (e) {
  out.textContent = `error: ${e.message}`;
}
