// The wasm encoder in a real headless Chromium, fetching real bundles from a real HTTP
// server on localhost: parity with PyTorch and the Python tokenizer, and JS `Error`s for
// bad bundles. Needs DOTFIND_MODEL_DIR (./build.sh test sets it) and www/pkg (./build.sh wasm).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { launchBrowser, repoRoot, modelDir, readJson, cosine, int8Floor } from './support.mjs';
import { startServer } from '../../tools/serve.mjs';

const MODEL = modelDir();
let server, baseUrl, browser, page, scratch;

function sha256(bytes) {
  return crypto.createHash('sha256').update(bytes).digest('hex');
}

/**
 * A copy of the int8 bundle (compiled: it loads model.graph) with one file replaced and its
 * checksum updated (sha256 only, as descriptors recorded before xxh3-128: checked by sha256).
 */
function badBundle(name, { file, bytes, edit = () => {}, keepChecksum = false, remove = false }) {
  const dir = path.join(scratch, name);
  fs.mkdirSync(dir);
  for (const f of ['dotfind-model.json', 'model.onnx', 'model.graph', 'tokenizer.json']) {
    fs.copyFileSync(path.join(MODEL, 'int8', f), path.join(dir, f));
  }
  const manifestPath = path.join(dir, 'dotfind-model.json');
  const manifest = readJson(manifestPath);
  if (remove) fs.rmSync(path.join(dir, file));
  else if (bytes) {
    fs.writeFileSync(path.join(dir, file), bytes);
    if (!keepChecksum) manifest.files[file] = { sha256: sha256(bytes), bytes: bytes.length };
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
  badBundle('missing', { file: 'tokenizer.json', remove: true });
  badBundle('tampered', { file: 'model.graph', bytes: tampered, keepChecksum: true });
  badBundle('dims', { edit: (m) => (m.hidden_size = 768) });
  badBundle('text-model', { file: 'model.graph', bytes: Buffer.from('this is a README, not a model\n') });
  badBundle('onnx-as-compiled', { file: 'model.graph', bytes: fs.readFileSync(path.join(MODEL, 'int8', 'model.onnx')) });
  badBundle('missing-compiled', { file: 'model.graph', remove: true });
  // A bundle never compiled: its descriptor names only model.onnx.
  badBundle('uncompiled', { file: 'model.graph', remove: true, edit: (m) => delete m.files['model.graph'] });
  badBundle('empty-tokenizer', { file: 'tokenizer.json', bytes: Buffer.alloc(0) });
  // Descriptors written before dotfind recorded xxh3-128: checked by sha256.
  const sha256Only = (m) => Object.values(m.files).forEach((entry) => delete entry.xxh3_128);
  badBundle('sha256-only', { edit: sha256Only });
  badBundle('tampered-sha256-only', { file: 'model.graph', bytes: tampered, keepChecksum: true, edit: sha256Only });

  ({ server, url: baseUrl } = await startServer({
    root: repoRoot,
    mounts: { '/model-f32': path.join(MODEL, 'f32'), '/model-int8': path.join(MODEL, 'int8'), '/model-int8-ffn-f32': path.join(MODEL, 'int8-ffn-f32'), '/bad': scratch },
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
    const [f32, int8, mixed] = [
      await on().evaluate(([b, t]) => window.harness.encodeAll(b, t), ['/model-f32/', texts]),
      await on().evaluate(([b, t]) => window.harness.encodeAll(b, t), ['/model-int8/', texts]),
      await on().evaluate(([b, t]) => window.harness.encodeAll(b, t), ['/model-int8-ffn-f32/', texts]),
    ];
    reference.items.forEach((item, i) => {
      const c32 = cosine(f32[i], item.mean);
      assert.ok(c32 >= 0.9999, `${label}: wasm f32 cos ${c32} for ${JSON.stringify(item.query.slice(0, 40))}`);
      const c8 = cosine(int8[i], item.mean);
      assert.ok(c8 >= int8Floor(item), `${label}: wasm int8 cos ${c8} for ${JSON.stringify(item.query.slice(0, 40))}`);
      // The shipped query model (feed-forward MatMuls in f32).
      const cm = cosine(mixed[i], item.mean);
      assert.ok(cm >= 0.995, `${label}: wasm int8-ffn-f32 cos ${cm} for ${JSON.stringify(item.query.slice(0, 40))}`);
    });
  };
}

test('wasm embeddings equal the PyTorch reference (f32, int8 and int8-ffn-f32)', async () => {
  // Chromium has relaxed SIMD, so the default is the fast build; the plain build is below.
  assert.equal(await page.evaluate(() => window.harness.build), 'relaxed');
  await checkParity(readJson(path.join(MODEL, 'reference.json')), 'own reference')();
});

test('the plain-SIMD build (browsers without relaxed SIMD) matches the reference too', async () => {
  const plain = await harnessPage('simd');
  try {
    assert.equal(await plain.evaluate(() => window.harness.build), 'simd');
    await checkParity(readJson(path.join(MODEL, 'reference.json')), 'plain SIMD build', () => plain)();
  } finally {
    await plain.close();
  }
});

test('int8: the plain build\'s i16 matmul kernel agrees with both relaxed-build kernels', async (t) => {
  // Integer accumulation is exact in every kernel (src/int8_linear.rs, whose unit tests check
  // each layout against the integer definition); only the builds' f32 arithmetic (fused
  // multiply-add in the relaxed build) differs, which can move an activation by one
  // quantization step now and then: for the 64-token query the plain build, the relaxed
  // build and native tract all differ pairwise by about 2e-4 in cosine. A wrong sum, zero
  // point, offset, plane or column would cost far more. The int8 bundle's 7-bit weights run
  // the relaxed build's one-plane offset kernel, int8-ffn-f32's 8-bit ones its split
  // two-plane kernel. (Natively, every kernel gives tract's bits: tests/encoder.rs.)
  const plain = await harnessPage('simd');
  try {
    const texts = readJson(path.join(MODEL, 'reference.json')).items.map((i) => i.query);
    for (const bundle of ['/model-int8/', '/model-int8-ffn-f32/']) {
      const relaxed = await page.evaluate(([b, q]) => window.harness.encodeAll(b, q), [bundle, texts]);
      const own = await plain.evaluate(([b, q]) => window.harness.encodeAll(b, q), [bundle, texts]);
      const cosines = texts.map((_, i) => cosine(relaxed[i], own[i]));
      t.diagnostic(`${bundle}: min cos ${Math.min(...cosines)}, mean ${cosines.reduce((a, b) => a + b, 0) / cosines.length}`);
      cosines.forEach((c, i) => assert.ok(c >= 0.9995, `${bundle}: cos ${c} for ${JSON.stringify(texts[i].slice(0, 40))}`));
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
      return e instanceof Error ? e.message : String(e);
    }
  });
  assert.equal(message, 'dotfind: unknown wasm build "fast" (use "auto", "relaxed" or "simd")');
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
  const cases = readJson(path.join(MODEL, 'reference.json')).tokenization.filter((c) => c.kind === 'query');
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
  const model = fs.readFileSync(path.join(MODEL, 'int8', 'model.graph'));
  const tampered = fs.readFileSync(path.join(scratch, 'tampered', 'model.graph'));

  assert.deepEqual(await err('/bad/missing/'), {
    isError: true,
    message: `model bundle ${base}missing/: missing file tokenizer.json (HTTP 404)`,
  });
  // The descriptor records xxh3-128 (`dotfind compile` does): checked in wasm. The exact digests
  // are checked natively (tests/encoder.rs); here the message's form and the recorded one.
  const recorded = readJson(path.join(MODEL, 'int8', 'dotfind-model.json')).files['model.graph'];
  const xxh3Mismatch = new RegExp(`^model\\.graph: xxh3-128 mismatch: manifest says ${recorded.xxh3_128}, file has (?!${recorded.xxh3_128})[0-9a-f]{32}$`);
  assert.match((await err('/bad/tampered/')).message, xxh3Mismatch);
  // Without xxh3-128 recorded, by sha256 (WebCrypto).
  assert.deepEqual(await err('/bad/tampered-sha256-only/'), {
    isError: true,
    message: `model.graph: sha256 mismatch: manifest says ${sha256(model)}, file has ${sha256(tampered)}`,
  });
  assert.equal(await err('/bad/sha256-only/'), null);
  assert.deepEqual(await err('/bad/dims/'), {
    isError: true,
    message: 'model mismatch: model.graph outputs vectors of 384 dimensions, dotfind-model.json says hidden_size 768',
  });
  for (const bundle of ['text-model', 'onnx-as-compiled']) {
    assert.deepEqual(await err(`/bad/${bundle}/`), {
      isError: true,
      message: 'model.graph: not a valid compiled model: not a dotfind compiled graph (`dotfind compile` writes this file)',
    });
  }
  assert.deepEqual(await err('/bad/missing-compiled/'), {
    isError: true,
    message: `model bundle ${base}missing-compiled/: missing file model.graph (HTTP 404)`,
  });
  assert.deepEqual(await err('/bad/empty-tokenizer/'), { isError: true, message: 'tokenizer.json: empty file' });
});

test('an uncompiled bundle (model.onnx only) is refused with the fix in the message', async () => {
  // The browser build carries no ONNX parser: bundles are compiled to model.graph first.
  assert.deepEqual(await page.evaluate((b) => window.harness.loadError(b), '/bad/uncompiled/'), {
    isError: true,
    message: 'model.onnx: the browser loads compiled bundles only: run `dotfind compile --model BUNDLE`, which adds model.graph to the bundle',
  });
});

test('without WebCrypto digests the wasm core hashes the bundle itself', async () => {
  const model = fs.readFileSync(path.join(MODEL, 'int8', 'model.graph'));
  const tampered = fs.readFileSync(path.join(scratch, 'tampered', 'model.graph'));
  const check = (bundle) => page.evaluate((b) => window.harness.withoutWebCrypto(b), bundle);
  const both = { isError: true, message: 'QueryEncoder: pass both model_sha256 and tokenizer_sha256, or neither' };
  assert.deepEqual(await check('/model-int8/'), { plain: null, oneDigest: both });
  const { plain, oneDigest } = await check('/bad/tampered/');
  assert.deepEqual(oneDigest, both);
  assert.equal(plain.isError, true);
  assert.match(plain.message, /^model\.graph: xxh3-128 mismatch: manifest says [0-9a-f]{32}, file has [0-9a-f]{32}$/);
  // A descriptor recording sha256 only: hashed by the wasm core's sha256.
  assert.deepEqual(await check('/bad/sha256-only/'), { plain: null, oneDigest: both });
  assert.deepEqual(await check('/bad/tampered-sha256-only/'), {
    plain: { isError: true, message: `model.graph: sha256 mismatch: manifest says ${sha256(model)}, file has ${sha256(tampered)}` },
    oneDigest: both,
  });
});

test('bad queries reject with Errors', async () => {
  const err = (q) => page.evaluate(([b, t]) => window.harness.encodeError(b, t), ['/model-int8/', q]);
  assert.deepEqual(await err(''), { isError: true, message: 'invalid input: query is empty' });
  assert.deepEqual(await err('word '.repeat(20000)), {
    isError: true,
    message: 'invalid input: query is 100000 bytes, the limit is 65536',
  });
  assert.equal(await err('word '.repeat(10000)), null, 'long queries are truncated, not refused');
});

test('the scoring helper rejects damaged shards and bad query vectors with Errors', async () => {
  assert.deepEqual(await page.evaluate(() => window.harness.scorerErrors()), {
    truncated: { isError: true, message: 'data corruption in vectors-000.bin: 3 bytes, shorter than the 16-byte header' },
    wrongDims: { isError: true, message: 'model mismatch: query vector has 3 dimensions, the index has 4' },
    nan: { isError: true, message: 'invalid input: query vector component 0 is NaN' },
    empty: null, // no shards yet: an empty part, not an error
  });
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
