// The wasm encoder in a real headless Chromium, fetching real bundles from a real HTTP
// server on localhost: parity with PyTorch (tests/fixtures/reference) and the Python
// tokenizer, and JS `Error`s for bad bundles. Needs DOTFIND_MODEL_DIR (./build.sh test sets
// it) and dist/npm (./build.sh wasm).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launchBrowser, repoRoot, modelDir, readJson, cosine, int8Floor, fileEntry } from './support.mjs';
import { startServer } from '../../tools/demo/serve.mjs';

const MODEL = modelDir();
// PyTorch's reference for the default model (made by tools/model/make_fixtures.py).
const REFERENCE = path.join(repoRoot, 'tests/fixtures/reference/minilm-l6-v2.json');
let server, baseUrl, browser, page, scratch;
// bert-base-uncased ids of "paris" and "tokyo": their chunks are damaged and removed in a
// copy of the query bundle (the test checks the ids against the tokenizer first).
const [TOKEN_DAMAGED, TOKEN_MISSING] = [3000, 5522];

/**
 * A copy of the int8 bundle with one file replaced (its checksum recorded too, unless
 * `keepChecksum`) or removed, and the descriptor edited by `edit`.
 */
async function badBundle(name, { file, bytes, edit = () => {}, keepChecksum = false, remove = false }) {
  const dir = path.join(scratch, name);
  fs.mkdirSync(dir);
  for (const f of ['dotfind-model.json', 'model.graph', 'tokenizer.json']) {
    fs.copyFileSync(path.join(MODEL, 'int8', f), path.join(dir, f));
  }
  const manifestPath = path.join(dir, 'dotfind-model.json');
  const manifest = readJson(manifestPath);
  if (remove) fs.rmSync(path.join(dir, file));
  else if (bytes) {
    fs.writeFileSync(path.join(dir, file), bytes);
    if (!keepChecksum) manifest.files[file] = await fileEntry(bytes);
  }
  edit(manifest);
  fs.writeFileSync(manifestPath, JSON.stringify(manifest));
  return manifest;
}

before(async () => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'dotfind-bad-'));
  const model = fs.readFileSync(path.join(MODEL, 'int8', 'model.graph'));
  const tampered = Buffer.from(model);
  tampered[tampered.length >> 1] ^= 0x55;
  await badBundle('missing', { file: 'tokenizer.json', remove: true });
  await badBundle('tampered', { file: 'model.graph', bytes: tampered, keepChecksum: true });
  await badBundle('dims', { edit: (m) => (m.hidden_size = 768) });
  await badBundle('text-model', { file: 'model.graph', bytes: Buffer.from('this is a README, not a model\n') });
  await badBundle('onnx-as-compiled', { file: 'model.graph', bytes: fs.readFileSync(path.join(repoRoot, 'tests/fixtures/tiny-onnx/int8/model.onnx')) });
  await badBundle('missing-compiled', { file: 'model.graph', remove: true });
  // A descriptor that records no model.graph (a bundle never compiled, with a stray graph).
  await badBundle('uncompiled', { edit: (m) => delete m.files['model.graph'] });
  await badBundle('empty-tokenizer', { file: 'tokenizer.json', bytes: Buffer.alloc(0) });
  // The query bundle with the token-embedding chunk of one token damaged, and another's gone.
  const query = path.join(scratch, 'query');
  fs.cpSync(path.join(MODEL, 'query'), query, { recursive: true });
  const rowsPerChunk = readJson(path.join(query, 'dotfind-model.json')).token_embeddings.rows_per_chunk;
  const chunkOf = (id) => `token-embeddings/${String(Math.floor(id / rowsPerChunk)).padStart(5, '0')}.bin`;
  const damaged = path.join(query, chunkOf(TOKEN_DAMAGED));
  const bytes = fs.readFileSync(damaged);
  bytes[7] ^= 0x10;
  fs.writeFileSync(damaged, bytes);
  fs.rmSync(path.join(query, chunkOf(TOKEN_MISSING)));

  ({ server, url: baseUrl } = await startServer({
    root: repoRoot,
    mounts: { '/model-f32': path.join(MODEL, 'f32'), '/model-int8': path.join(MODEL, 'int8'), '/model-query': path.join(MODEL, 'query'), '/bad': scratch },
  }));
  browser = await launchBrowser();
  page = await harnessPage();
});

after(async () => {
  await browser?.close();
  server?.close();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

async function harnessPage(wasm) {
  const p = await browser.newPage();
  await p.goto(`${baseUrl}tests/browser/harness.html${wasm ? `?wasm=${wasm}` : ''}`);
  await p.waitForFunction(() => document.getElementById('status').textContent === 'ready');
  return p;
}

function checkParity(reference, label, on = () => page) {
  return async () => {
    const texts = reference.items.map((i) => i.query);
    const [f32, int8, query] = [
      await on().evaluate(([b, t]) => window.harness.encodeAll(b, t), ['/model-f32/', texts]),
      await on().evaluate(([b, t]) => window.harness.encodeAll(b, t), ['/model-int8/', texts]),
      await on().evaluate(([b, t]) => window.harness.encodeAll(b, t), ['/model-query/', texts]),
    ];
    reference.items.forEach((item, i) => {
      const c32 = cosine(f32[i], item.mean);
      assert.ok(c32 >= 0.9999, `${label}: wasm f32 cos ${c32} for ${JSON.stringify(item.query.slice(0, 40))}`);
      const c8 = cosine(int8[i], item.mean);
      assert.ok(c8 >= int8Floor(item), `${label}: wasm int8 cos ${c8} for ${JSON.stringify(item.query.slice(0, 40))}`);
      // The shipped query model (compact weights, token rows fetched, per-token int8): the
      // floor tests/parity.rs holds natively.
      const cq = cosine(query[i], item.mean);
      assert.ok(cq >= 0.99, `${label}: wasm query bundle cos ${cq} for ${JSON.stringify(item.query.slice(0, 40))}`);
    });
  };
}

test('wasm embeddings equal the PyTorch reference (f32, int8 and the query bundle)', async () => {
  // Chromium has relaxed SIMD, so the default is the fast build; the plain build is below.
  assert.equal(await page.evaluate(() => window.harness.build), 'relaxed');
  await checkParity(readJson(REFERENCE), 'own reference')();
});

test('the plain-SIMD build (browsers without relaxed SIMD) matches the reference too', async () => {
  const plain = await harnessPage('simd');
  try {
    assert.equal(await plain.evaluate(() => window.harness.build), 'simd');
    await checkParity(readJson(REFERENCE), 'plain SIMD build', () => plain)();
  } finally {
    await plain.close();
  }
});

test('int8: the plain build\'s i16 matmul kernel agrees with both relaxed-build kernels', async (t) => {
  // Integer accumulation is exact in every kernel (src/kernels/int8_matmul, whose unit tests check
  // each layout against the integer definition); only the builds' f32 arithmetic (fused
  // multiply-add in the relaxed build) differs, which can move an activation by one
  // quantization step now and then: for the 64-token query the plain build, the relaxed
  // build and native tract all differ pairwise by about 2e-4 in cosine. A wrong sum, zero
  // point, offset, plane or column would cost far more. The int8 bundle's 7-bit weights run
  // the relaxed build's one-plane offset kernel, as the query bundle's per-token layers do. (Natively, every kernel gives tract's bits: tests/plans.rs.)
  const plain = await harnessPage('simd');
  try {
    const texts = readJson(REFERENCE).items.map((i) => i.query);
    for (const bundle of ['/model-int8/', '/model-query/']) {
      const relaxed = await page.evaluate(([b, q]) => window.harness.encodeAll(b, q), [bundle, texts]);
      const own = await plain.evaluate(([b, q]) => window.harness.encodeAll(b, q), [bundle, texts]);
      const cosines = texts.map((_, i) => cosine(relaxed[i], own[i]));
      t.diagnostic(`${bundle}: min cos ${Math.min(...cosines)}, mean ${cosines.reduce((a, b) => a + b, 0) / cosines.length}`);
      // Per-token activation scales multiply once more per token, so the builds' f32
      // rounding moves an activation across a quantization step a little more often there.
      const floor = bundle === '/model-query/' ? 0.999 : 0.9995;
      cosines.forEach((c, i) => assert.ok(c >= floor, `${bundle}: cos ${c} for ${JSON.stringify(texts[i].slice(0, 40))}`));
    }
  } finally {
    await plain.close();
  }
});

test('an unknown wasm build choice is an Error naming the choices', async () => {
  const message = await page.evaluate(async () => {
    const { chooseBuild } = await import('/dist/npm/runtime.js');
    try {
      chooseBuild('fast');
      return null;
    } catch (e) {
      return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    }
  });
  assert.equal(message, 'DotfindError: dotfind: unknown wasm build "fast" (use "auto", "relaxed" or "simd")');
});

test('wasm embeddings equal the independent shared reference', async (t) => {
  const shared = path.join(repoRoot, '../shared/models/minilm-l6-distilbert/reference.json');
  if (!fs.existsSync(shared)) {
    t.diagnostic('../shared absent: covered by the own reference');
    return;
  }
  await checkParity(readJson(shared), 'shared reference')();
});

test('wasm token ids equal the Python tokenizers package on hard strings', async () => {
  const cases = readJson(REFERENCE).tokenization.filter((c) => c.kind === 'query');
  const got = await page.evaluate(([b, t]) => window.harness.tokenizeAll(b, t), ['/model-int8/', cases.map((c) => c.text)]);
  cases.forEach((c, i) => {
    if (c.input_ids.length <= 2) {
      // Nothing searchable left after normalization: the encoder refuses it, by name.
      assert.equal(got[i].isError, true, `expected an Error for ${JSON.stringify(c.text)}`);
      assert.match(got[i].message, /^invalid input: query (is empty|has no searchable text)$/);
    } else {
      assert.deepEqual(got[i], c.input_ids, `tokens of ${JSON.stringify(c.text.slice(0, 40))}`);
    }
  });
});

test('bad bundles reject with Errors that name the file and problem', async () => {
  const err = (bundle) => page.evaluate((b) => window.harness.loadError(b), bundle);
  const base = new URL('/bad/', baseUrl).href;
  const missing = (bundle, file) => ({ isError: true, name: 'DotfindError', message: `dotfind: ${base}${bundle}/${file}: HTTP 404 Not Found` });
  assert.deepEqual(await err('/bad/missing/'), missing('missing', 'tokenizer.json'));
  // Checked in wasm by the xxh3-128 the descriptor records. The exact digests are checked
  // natively (src/checksum.rs); here the message's form and the recorded one.
  const recorded = readJson(path.join(MODEL, 'int8', 'dotfind-model.json')).files['model.graph'];
  const xxh3Mismatch = new RegExp(`^model\\.graph: xxh3-128 mismatch: manifest says ${recorded.xxh3_128}, file has (?!${recorded.xxh3_128})[0-9a-f]{32}$`);
  const tampered = await err('/bad/tampered/');
  assert.equal(tampered.name, 'DotfindError');
  assert.match(tampered.message, xxh3Mismatch);
  assert.deepEqual(await err('/bad/dims/'), {
    isError: true,
    name: 'DotfindError',
    message: 'model mismatch: model.graph outputs vectors of 384 dimensions, dotfind-model.json says hidden_size 768',
  });
  for (const bundle of ['text-model', 'onnx-as-compiled']) {
    assert.deepEqual(await err(`/bad/${bundle}/`), {
      isError: true,
      name: 'DotfindError',
      message: 'model.graph: not a valid compiled model: not a dotfind compiled graph (`dotfind compile` writes this file)',
    });
  }
  assert.deepEqual(await err('/bad/missing-compiled/'), missing('missing-compiled', 'model.graph'));
  assert.deepEqual(await err('/bad/empty-tokenizer/'), { isError: true, name: 'DotfindError', message: 'tokenizer.json: empty file' });
});

test('an uncompiled bundle is refused with the fix in the message', async () => {
  assert.deepEqual(await page.evaluate((b) => window.harness.loadError(b), '/bad/uncompiled/'), {
    isError: true,
    name: 'DotfindError',
    message: 'dotfind-model.json: no checksum recorded for model.graph: the bundle is not compiled (`dotfind compile` adds it)',
  });
});

test('bad queries reject with Errors', async () => {
  const err = (q) => page.evaluate(([b, t]) => window.harness.encodeError(b, t), ['/model-int8/', q]);
  assert.deepEqual(await err(''), { isError: true, name: 'DotfindError', message: 'invalid input: query is empty' });
  assert.deepEqual(await err('word '.repeat(20000)), {
    isError: true,
    name: 'DotfindError',
    message: 'invalid input: query is 100000 bytes, the limit is 65536',
  });
  assert.equal(await err('word '.repeat(10000)), null, 'long queries are truncated, not refused');
  // Not a string: named in JS (wasm would read an object as garbage).
  assert.deepEqual(await err({ text: 'x' }), { isError: true, name: 'DotfindError', message: 'dotfind: the query must be a string, not object' });
  assert.deepEqual(await err(null), { isError: true, name: 'DotfindError', message: 'dotfind: the query must be a string, not null' });
});

test('token-embedding chunks: fetched as a query needs them; a damaged or missing one is an Error naming it', async () => {
  const ids = await page.evaluate(([b, t]) => window.harness.tokenizeAll(b, t), ['/model-query/', ['paris', 'tokyo']]);
  assert.deepEqual(ids.map((i) => i[1]), [TOKEN_DAMAGED, TOKEN_MISSING], 'token ids the bad bundle was made for');
  const err = (q) => page.evaluate(([b, t]) => window.harness.encodeError(b, t), ['/bad/query/', q]);
  const damaged = await err('paris');
  assert.equal(damaged.name, 'DotfindError');
  assert.match(damaged.message, /^token-embeddings\/00093\.bin: xxh3-128 mismatch: manifest says [0-9a-f]{32}, file has [0-9a-f]{32}$/);
  assert.deepEqual(await err('tokyo'), {
    isError: true,
    name: 'DotfindError',
    message: `dotfind: ${new URL('/bad/query/token-embeddings/00172.bin', baseUrl).href}: HTTP 404 Not Found`,
  });
  // Texts whose chunks are intact still encode, equal to the intact bundle's vectors.
  const [good] = await page.evaluate(([b, t]) => window.harness.encodeAll(b, t), ['/model-query/', ['london']]);
  const [same] = await page.evaluate(([b, t]) => window.harness.encodeAll(b, t), ['/bad/query/', ['london']]);
  assert.deepEqual(same, good);
});

test('no console errors on the happy path', async () => {
  // A fresh page that only loads and encodes: the error-path tests above log 404s on purpose.
  const fresh = await browser.newPage();
  const errors = [];
  fresh.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  fresh.on('pageerror', (e) => errors.push(String(e)));
  await fresh.goto(`${baseUrl}tests/browser/harness.html`);
  await fresh.waitForFunction(() => document.getElementById('status').textContent === 'ready');
  const [v] = await fresh.evaluate(() => window.harness.encodeAll('/model-int8/', ['what is the capital of france']));
  assert.equal(v.length, 384);
  assert.deepEqual(errors, []);
  await fresh.close();
});
