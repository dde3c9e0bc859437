// Exposes the wasm encoder to the browser tests through `window.harness`.
import { loadQueryEncoder, initWasm } from '/dist/npm/encoder.js';

// `?wasm=simd|relaxed` picks the build under test (default: what the browser would pick).
const wasm = new URLSearchParams(location.search).get('wasm') ?? 'auto';

const encoders = new Map();
async function encoder(bundle) {
  if (!encoders.has(bundle)) encoders.set(bundle, await loadQueryEncoder(bundle, { wasm }));
  return encoders.get(bundle);
}

function asError(e) {
  return { isError: e instanceof Error, name: e?.name, message: String(e?.message ?? e) };
}

window.harness = {
  async encodeAll(bundle, texts) {
    const e = await encoder(bundle);
    const out = [];
    for (const t of texts) out.push(Array.from(await e.encode(t)));
    return out;
  },
  async tokenizeAll(bundle, texts) {
    const e = await encoder(bundle);
    return texts.map((t) => {
      try {
        return Array.from(e.tokenize(t));
      } catch (err) {
        return asError(err);
      }
    });
  },
  async encodeError(bundle, text) {
    try {
      await (await encoder(bundle)).encode(text);
      return null;
    } catch (err) {
      return asError(err);
    }
  },
  async loadError(bundle) {
    try {
      await loadQueryEncoder(bundle, { wasm });
      return null;
    } catch (err) {
      return asError(err);
    }
  },
  async info(bundle) {
    const e = await encoder(bundle);
    return { dims: e.dims, manifest: e.manifest };
  },
};
const { build } = await initWasm(wasm);
window.harness.build = build;
document.getElementById('status').textContent = 'ready';
