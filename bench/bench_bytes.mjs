#!/usr/bin/env node
// Bytes on the wire before the first semantic result (issue 18): the demo site's cold visit
// in a fresh headless Chromium, counted by the server on every connection (page, workers
// and service worker alike, headers included), then each later query; beside it
// onnxruntime-web loading the same model in the same harness (its wasm, glue, model.onnx,
// tokenizer.json) up to its first query vector. Prints one report and rewrites the "Bytes"
// section of BENCHMARKS.md. Run through `./build.sh bench-bytes`, which builds what it needs;
// directly:
//
//   node bench/bench_bytes.mjs --site target/demo-site --onnx MODEL_DIR/int8 [--label NAME]
//       [--section bytes]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../tools/demo/serve.mjs';
import { launchBrowser, readJson } from '../tests/browser/support.mjs';
import { machineLine } from './machine.mjs';
import { writeSection } from './sections.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const opts = { site: path.join(root, 'target/demo-site'), onnx: null, label: null, section: 'bytes' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const key = argv[i].replace(/^--/, '');
  if (!(key in opts) || argv[i + 1] === undefined) throw new Error(`bad option ${argv[i]}: see the header of bench/bench_bytes.mjs`);
  opts[key] = argv[i + 1];
}
if (!fs.existsSync(path.join(opts.site, 'dotfind-index/manifest.json'))) throw new Error(`--site ${opts.site}: no dotfind-index/manifest.json (./build.sh site builds the demo)`);
if (!opts.onnx || !fs.existsSync(path.join(opts.onnx, 'model.onnx'))) throw new Error('--onnx must be a bundle folder with model.onnx (./build.sh model-onnx prints the model folder)');
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

const demoQuery = async (page, query) => {
  await page.fill('#q', query);
  await page.waitForFunction(
    (q) => document.getElementById('results').dataset.query === q && document.querySelectorAll('#results li').length > 0,
    query,
    { timeout: 120_000 },
  );
};

// --- dotfind: the demo site, a cold visit, then each later query.
const site = await startServer({ root: opts.site });
let browser = await launchBrowser();
const chromiumVersion = browser.version();
let page = await (await browser.newContext()).newPage();
site.traffic.reset();
log('dotfind demo: cold visit');
await page.goto(site.url);
await page.waitForSelector('#q:not([disabled])', { timeout: 300_000 });
await demoQuery(page, QUERIES[0]);
const dotfindFirst = summarize(site.traffic);
await page.waitForTimeout(2000); // what the service worker still fetches after the first result
const dotfindVisit = summarize(site.traffic);
const later = [];
for (const query of QUERIES.slice(1)) {
  site.traffic.reset();
  await demoQuery(page, query);
  later.push({ query, ...summarize(site.traffic) });
}
const acceptEncoding = await page.evaluate(async () => (await fetch('/index.html', { method: 'HEAD' })).headers.get('content-encoding'));
await browser.close();
site.server.close();

// --- onnxruntime-web: the same model's ONNX, to its first query vector.
const ortDir = path.join(root, 'node_modules/onnxruntime-web');
const ort = await startServer({ root: path.join(root, 'bench/pages/bytes'), mounts: { '/vendor/ort': ortDir, '/model': opts.onnx } });
browser = await launchBrowser();
page = await (await browser.newContext()).newPage();
ort.traffic.reset();
log('onnxruntime-web: cold load to a first query vector');
await page.goto(`${ort.url}ort.html?q=${encodeURIComponent(QUERIES[0])}`);
await page.waitForFunction(() => document.getElementById('out').textContent !== 'loading', null, { timeout: 300_000 });
const ortOut = await page.textContent('#out');
if (!ortOut.startsWith('vector')) throw new Error(`onnxruntime-web page: ${ortOut}`);
const ortFirst = summarize(ort.traffic);
const ortVersion = readJson(path.join(ortDir, 'package.json')).version;
await browser.close();
ort.server.close();

// --- Report.
const mb = (b) => `${(b / 1e6).toFixed(2)} MB`;
const kb = (b) => `${(b / 1e3).toFixed(1)} KB`;
const modelId = readJson(path.join(opts.site, 'dotfind-index/manifest.json')).model.model_id;
const ortModel = readJson(path.join(opts.onnx, 'dotfind-model.json'));
const laterWire = later.map((l) => l.wire).sort((a, b) => a - b);
const kinds = ['page', 'dotfind JavaScript', 'runtime JavaScript', 'wasm', 'query model', 'index'];
const kindCell = (s, k) => (s.byKind[k] ? `${mb(s.byKind[k].bodyBytes)} (${s.byKind[k].requests})` : '—');
const check = (ok) => (ok ? 'pass' : '**fail**');
const label = opts.label ?? modelId;
const lines = [
  `## Bytes on the wire before the first result: ${label}`,
  '',
  `Command: \`./build.sh ${opts.section === 'bytes' ? 'bench-bytes' : opts.section}\` — headless Chromium ${chromiumVersion}, a fresh profile per visit, served by \`tools/demo/serve.mjs\` (compression as static hosts apply it: ${acceptEncoding ?? 'none'} negotiated for text, JSON, JavaScript and wasm; application/octet-stream as is). Bytes counted by the server on every connection (page, workers, service worker; headers included). ${machineLine()}.`,
  '',
  `| what | on the wire | ${kinds.join(' | ')} |`,
  `|---|---|${kinds.map(() => '---').join('|')}|`,
  `| dotfind demo (${modelId}), cold visit until the first result of "${QUERIES[0]}" | **${mb(dotfindFirst.wire)}** | ${kinds.map((k) => kindCell(dotfindFirst, k)).join(' | ')} |`,
  `| … the whole first visit (2 s later: what the service worker fetched after it) | ${mb(dotfindVisit.wire)} | ${kinds.map((k) => kindCell(dotfindVisit, k)).join(' | ')} |`,
  `| onnxruntime-web ${ortVersion}, cold load until the first query vector (model.onnx of \`${path.basename(opts.onnx)}\`: ${ortModel.quantization}) | **${mb(ortFirst.wire)}** | ${kinds.map((k) => kindCell(ortFirst, k)).join(' | ')} |`,
  '',
  `Cells: response bodies as sent (compressed where negotiated) and request count. dotfind ÷ onnxruntime-web before the first result: **${(dotfindFirst.wire / ortFirst.wire).toFixed(2)}×** — and dotfind's figure includes the index and the page, onnxruntime-web's neither. Later queries (${later.length}, each typed into the same page): ${laterWire.map(kb).join(', ')} on the wire.`,
  '',
  '| goal (issue 18) | measured | target | |',
  '|---|---|---|---|',
  `| first visit, before the first semantic result | ${mb(dotfindFirst.wire)} | ≤ 8 MB | ${check(dotfindFirst.wire <= 8e6)} |`,
  `| every later query | max ${kb(laterWire.at(-1))} | ≤ 200 KB | ${check(laterWire.at(-1) <= 200e3)} |`,
  '',
  'Requests of the cold visit, in order (path, encoding, body bytes):',
  '',
  ...dotfindVisit.requests.map((r) => `- \`${r.path}\` ${r.status === 200 ? '' : `${r.status} `}${r.encoding ?? 'identity'} ${kb(r.bodyBytes)}`),
];
const body = lines.join('\n');
console.log(body);
writeSection(opts.section, body);
log(`wrote the ${opts.section} section of BENCHMARKS.md`);
