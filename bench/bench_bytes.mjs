#!/usr/bin/env node
// Bytes on the wire before the first semantic result (issue 18): the demo site's cold visit
// in a fresh headless Chromium, counted by the server on every connection (page, workers
// and service worker alike, headers included), then each later query; beside it
// onnxruntime-web loading the same model in the same harness (its wasm, glue, model.onnx,
// tokenizer.json) up to its first query vector. Prints one report and rewrites the "Bytes"
// section of BENCHMARKS.md. The same for the reference model's shape (DistilBERT-base, random
// weights: `./build.sh reference-shape`) when --reference-site and --reference-onnx are given.
// Run through `./build.sh bench-bytes`, which builds what it needs; directly:
//
//   node bench/bench_bytes.mjs --site target/demo-site --onnx MODEL_DIR/int8 [--label NAME]
//       [--reference-site target/reference-shape/site --reference-onnx ONNX_DIR/int8]
//       [--section bytes]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../tools/demo/serve.mjs';
import { launchBrowser, readJson } from '../tests/browser/support.mjs';
import { machineLine } from './machine.mjs';
import { writeSection } from './sections.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const opts = { site: path.join(root, 'target/demo-site'), onnx: null, label: null, section: 'bytes', 'reference-site': null, 'reference-onnx': null };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const key = argv[i].replace(/^--/, '');
  if (!(key in opts) || argv[i + 1] === undefined) throw new Error(`bad option ${argv[i]}: see the header of bench/bench_bytes.mjs`);
  opts[key] = argv[i + 1];
}
if (!fs.existsSync(path.join(opts.site, 'dotfind-index/manifest.json'))) throw new Error(`--site ${opts.site}: no dotfind-index/manifest.json (./build.sh site builds the demo)`);
for (const key of ['onnx', 'reference-onnx']) {
  if (key === 'reference-onnx' && !opts['reference-site']) continue;
  if (!opts[key] || !fs.existsSync(path.join(opts[key], 'model.onnx'))) throw new Error(`--${key} must be a bundle folder with model.onnx (./build.sh model-onnx prints the model folder)`);
}
if (opts['reference-site'] && !fs.existsSync(path.join(opts['reference-site'], 'dotfind-index/manifest.json'))) throw new Error(`--reference-site ${opts['reference-site']}: no dotfind-index/manifest.json (./build.sh reference-shape builds it)`);
const log = (m) => console.error(`[bench-bytes] ${m}`);

// Queries a visitor of the demo (Rust Book excerpts) types; the first one is the cold visit's.
const QUERIES = [
  'how do I store key value pairs',
  'propagate errors with the question mark operator',
  'run code at the same time on several threads',
  'who owns a value and when is it dropped',
  'send messages between threads with channels',
  'borrow checker rejects two mutable references',
  'iterate over a vector and change each element',
  'generic function that works with any type implementing a trait',
  'smart pointer with reference counting for shared ownership',
  'pattern matching on enum variants with match',
];

/** What a request is, for the per-kind table. */
function kind(p) {
  if (p.endsWith('.wasm')) return 'wasm';
  if (p.startsWith('/dotfind-index/model/')) return 'query model';
  if (p.startsWith('/dotfind-index/')) return 'index';
  if (p.startsWith('/dotfind/')) return 'dotfind JavaScript';
  if (p.startsWith('/vendor/')) return 'runtime JavaScript';
  if (p.startsWith('/model/')) return 'query model';
  return 'page';
}

function summarize(traffic) {
  const byKind = {};
  for (const r of traffic.requests) {
    const k = (byKind[kind(r.path)] ??= { requests: 0, bodyBytes: 0 });
    k.requests += 1;
    k.bodyBytes += r.bodyBytes;
  }
  return { wire: traffic.wireBytes(), requests: [...traffic.requests], byKind };
}

// Waits for the model's ranking of `query`: the keyword results the demo shows while the
// model loads are not a semantic result, and counting at them would stop mid-download.
const demoQuery = async (page, query) => {
  await page.fill('#q', query);
  await page.waitForFunction(
    (q) => {
      const list = document.getElementById('results');
      return list.dataset.query === q && list.dataset.mode !== 'lexical' && list.querySelectorAll('li').length > 0;
    },
    query,
    { timeout: 120_000 },
  );
};

/** A cold visit of a demo site until its first result, what followed it, then each later query. */
async function dotfindVisit(siteDir, queries) {
  const site = await startServer({ root: siteDir });
  const browser = await launchBrowser();
  try {
    const page = await (await browser.newContext()).newPage();
    site.traffic.reset();
    log(`dotfind, ${siteDir}: cold visit`);
    await page.goto(site.url);
    await page.waitForSelector('#q:not([disabled])', { timeout: 300_000 });
    await demoQuery(page, queries[0]);
    const first = summarize(site.traffic);
    await page.waitForTimeout(2000); // what the service worker still fetches after the first result
    const visit = summarize(site.traffic);
    const later = [];
    for (const query of queries.slice(1)) {
      site.traffic.reset();
      await demoQuery(page, query);
      later.push({ query, ...summarize(site.traffic) });
    }
    const acceptEncoding = await page.evaluate(async () => (await fetch('/index.html', { method: 'HEAD' })).headers.get('content-encoding'));
    const modelId = readJson(path.join(siteDir, 'dotfind-index/manifest.json')).model.model_id;
    return { first, visit, later, acceptEncoding, chromiumVersion: browser.version(), modelId };
  } finally {
    await browser.close();
    site.server.close();
  }
}

/** onnxruntime-web loading `onnxDir`'s model.onnx in the same harness, to its first query vector. */
async function ortVisit(onnxDir, query) {
  const ortDir = path.join(root, 'node_modules/onnxruntime-web');
  const ort = await startServer({ root: path.join(root, 'bench/pages/bytes'), mounts: { '/vendor/ort': ortDir, '/model': onnxDir } });
  const browser = await launchBrowser();
  try {
    const page = await (await browser.newContext()).newPage();
    ort.traffic.reset();
    log(`onnxruntime-web, ${onnxDir}: cold load to a first query vector`);
    await page.goto(`${ort.url}ort.html?q=${encodeURIComponent(query)}`);
    await page.waitForFunction(() => document.getElementById('out').textContent !== 'loading', null, { timeout: 300_000 });
    const out = await page.textContent('#out');
    if (!out.startsWith('vector')) throw new Error(`onnxruntime-web page: ${out}`);
    const model = readJson(path.join(onnxDir, 'dotfind-model.json'));
    return { first: summarize(ort.traffic), version: readJson(path.join(ortDir, 'package.json')).version, quantization: model.quantization, vector: out };
  } finally {
    await browser.close();
    ort.server.close();
  }
}

const demo = await dotfindVisit(opts.site, QUERIES);
const ortRun = await ortVisit(opts.onnx, QUERIES[0]);
const reference = opts['reference-site']
  ? { dotfind: await dotfindVisit(opts['reference-site'], QUERIES.slice(0, 1)), ort: await ortVisit(opts['reference-onnx'], QUERIES[0]) }
  : null;

// --- Report.
const mb = (b) => `${(b / 1e6).toFixed(2)} MB`;
const kb = (b) => `${(b / 1e3).toFixed(1)} KB`;
const laterWire = demo.later.map((l) => l.wire).sort((a, b) => a - b);
const kinds = ['page', 'dotfind JavaScript', 'runtime JavaScript', 'wasm', 'query model', 'index'];
const kindCells = (s) => kinds.map((k) => (s.byKind[k] ? `${mb(s.byKind[k].bodyBytes)} (${s.byKind[k].requests})` : '—')).join(' | ');
const check = (ok) => (ok ? 'pass' : '**fail**');
const ortRow = (run, onnxDir) => `| onnxruntime-web ${run.version}, cold load until the first query vector (model.onnx of \`${path.basename(onnxDir)}\`: ${run.quantization}) | **${mb(run.first.wire)}** | ${kindCells(run.first)} |`;
const tableHead = [`| what | on the wire | ${kinds.join(' | ')} |`, `|---|---|${kinds.map(() => '---').join('|')}|`];
const demoRatio = demo.first.wire / ortRun.first.wire;
const referenceRatio = reference && reference.dotfind.first.wire / reference.ort.first.wire;
const lines = [
  `## Bytes on the wire before the first result: ${opts.label ?? demo.modelId}`,
  '',
  `Command: \`./build.sh ${opts.section === 'bytes' ? 'bench-bytes' : opts.section}\` — headless Chromium ${demo.chromiumVersion}, a fresh profile per visit, served by \`tools/demo/serve.mjs\` (compression as static hosts apply it: ${demo.acceptEncoding ?? 'none'} negotiated for text, JSON, JavaScript and wasm; application/octet-stream as is). Bytes counted by the server on every connection (page, workers, service worker; headers included). ${machineLine()}.`,
  '',
  ...tableHead,
  `| dotfind demo (${demo.modelId}), cold visit until the first result of "${QUERIES[0]}" | **${mb(demo.first.wire)}** | ${kindCells(demo.first)} |`,
  `| … the whole first visit (2 s later: what the service worker fetched after it) | ${mb(demo.visit.wire)} | ${kindCells(demo.visit)} |`,
  ortRow(ortRun, opts.onnx),
  '',
  `Cells: response bodies as sent (compressed where negotiated) and request count. dotfind ÷ onnxruntime-web before the first result: **${demoRatio.toFixed(2)}×** — and dotfind's figure includes the index and the page, onnxruntime-web's neither. Later queries (${demo.later.length}, each typed into the same page): ${laterWire.map(kb).join(', ')} on the wire.`,
  '',
  ...(reference ? [
    `The reference model's shape (DistilBERT-base's config: 768 dimensions, 6 layers, CLS, dot; random weights, \`./build.sh reference-shape\`): the same demo site indexed with it, and onnxruntime-web loading the int8 ONNX of the same checkpoint.`,
    '',
    ...tableHead,
    `| dotfind demo (${reference.dotfind.modelId}), cold visit until the first result | **${mb(reference.dotfind.first.wire)}** | ${kindCells(reference.dotfind.first)} |`,
    ortRow(reference.ort, opts['reference-onnx']),
    '',
    `dotfind ÷ onnxruntime-web before the first result: **${referenceRatio.toFixed(2)}×**.`,
    '',
  ] : []),
  '| goal (issue 18) | measured | target | |',
  '|---|---|---|---|',
  `| first visit, before the first semantic result | ${mb(demo.first.wire)} | ≤ 8 MB | ${check(demo.first.wire <= 8e6)} |`,
  `| every later query | max ${kb(laterWire.at(-1))} | ≤ 200 KB | ${check(laterWire.at(-1) <= 200e3)} |`,
  ...(reference ? [`| the reference model's shape, first visit ÷ onnxruntime-web's | ${referenceRatio.toFixed(2)}× | ≤ 0.35× | ${check(referenceRatio <= 0.35)} |`] : []),
  '',
  'Requests of the cold visit, in order (path, encoding, body bytes):',
  '',
  ...demo.visit.requests.map((r) => `- \`${r.path}\` ${r.status === 200 ? '' : `${r.status} `}${r.encoding ?? 'identity'} ${kb(r.bodyBytes)}`),
];
const body = lines.join('\n');
console.log(body);
writeSection(opts.section, body);
log(`wrote the ${opts.section} section of BENCHMARKS.md`);
