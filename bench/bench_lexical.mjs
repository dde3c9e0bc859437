#!/usr/bin/env node
// The lexical stage (issue 20): dotfind's own chunked BM25 (term buckets, the lexical wasm
// module) against Pagefind (the real `pagefind` package: its indexer and its browser search),
// side by side in one headless Chromium, served from localhost by tools/demo/serve.mjs, which
// counts every byte on the wire. Measures:
//   1. a cold visit's first keyword result on the demo site (?q=, fresh profile each run):
//      dotfind's demo page (model and full module held back by the server, so what is counted
//      is what the first result needs) and a Pagefind page on the same site;
//   2. per collection of ../shared/data: nDCG@10 of each engine's top 10 (as its browser search
//      returns them; `dotfind eval`), and bytes per query;
//   3. hybrid vs dense query latency with the model loaded, on a 50k-passage index.
// Run through `./build.sh bench-lexical`; rewrites the "lexical" section of BENCHMARKS.md.
//
//   node bench/bench_lexical.mjs --indexes DIR --shared ../shared/data --synthetic INDEX --synthetic-queries Q.jsonl
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as pagefindIndexer from 'pagefind';
import { startServer } from '../tools/demo/serve.mjs';
import { launchBrowser } from '../tests/browser/support.mjs';
import { machineLine } from './machine.mjs';
import { writeSection } from './sections.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const opt = (name) => {
  const i = argv.indexOf(name);
  if (i < 0 || argv[i + 1] === undefined) throw new Error(`${name} is required: see the header of bench/bench_lexical.mjs`);
  return argv[i + 1];
};
const indexesDir = path.resolve(opt('--indexes'));
const shared = path.resolve(opt('--shared'));
const synthetic = path.resolve(opt('--synthetic'));
const syntheticQueries = path.resolve(opt('--synthetic-queries'));
const work = path.join(root, 'target/bench-lexical');
const dotfind = path.join(root, 'target/release/dotfind');
const log = (m) => console.error(`[bench-lexical] ${m}`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const kb = (b) => `${(b / 1e3).toFixed(1)} KB`;
const readJsonl = (f) => fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
// What the server holds back so that only the lexical stage's bytes are counted: the model
// and dotfind's full module (a visit fetches them after its first keyword results).
const heavy = (p) => /\/dotfind-index\/model\/|\/pkg(-relaxed)?\//.test(p);
const never = new Promise(() => {});
const holdHeavy = (p) => (heavy(p) ? { hold: never } : undefined);

fs.mkdirSync(work, { recursive: true });
const browser = await launchBrowser();

/** A Pagefind index of `records` ({url, title, content}) in `out` (Pagefind's Node API). */
async function writePagefind(records, out) {
  const { index, errors } = await pagefindIndexer.createIndex({});
  if (errors.length) throw new Error(`pagefind: ${errors.join('; ')}`);
  for (const r of records) {
    const added = await index.addCustomRecord({ url: r.url, content: r.content, language: 'en', meta: { title: r.title || r.url } });
    if (added.errors.length) throw new Error(`pagefind: ${added.errors.join('; ')}`);
  }
  const written = await index.writeFiles({ outputPath: out });
  if (written.errors.length) throw new Error(`pagefind: ${written.errors.join('; ')}`);
}

// 1. A cold visit's first keyword result, demo site.
log('demo: first keyword result, dotfind vs Pagefind');
const demoSite = path.join(work, 'demo-site');
fs.rmSync(demoSite, { recursive: true, force: true });
fs.cpSync(path.join(root, 'target/demo-site'), demoSite, { recursive: true });
execFileSync(path.join(root, 'node_modules/.bin/pagefind'), ['--site', demoSite], { stdio: 'pipe' });
const demo = await startServer({ root: demoSite, mounts: { '/bench': path.join(root, 'bench/pages/lexical') }, fault: holdHeavy });
const FIRST_QUERIES = ['HashMap entry or_insert', 'spawn a thread', 'ownership rules', 'unit tests', 'closures capture'];
const first = { dotfind: [], pagefind: [] };
for (const q of FIRST_QUERIES) {
  for (const [engine, page] of [['dotfind', '/'], ['pagefind', '/bench/pagefind-first.html']]) {
    const context = await browser.newContext();
    const p = await context.newPage();
    demo.traffic.reset();
    await p.goto(`${demo.url}${page.slice(1)}?q=${encodeURIComponent(q)}`);
    await p.waitForFunction((query) => document.getElementById('results').dataset.query === query, q, { timeout: 60_000 });
    const ms = Number(await p.getAttribute('body', 'data-first-result-ms'));
    first[engine].push({ ms, bytes: demo.traffic.wireBytes(), requests: demo.traffic.requests.length });
    await context.close();
  }
}
demo.server.close();

// 2. The shared collections: quality and bytes per query.
async function collection(dir) {
  const name = path.basename(dir);
  const index = path.join(indexesDir, name);
  if (!fs.existsSync(path.join(index, 'manifest.json'))) throw new Error(`${index}: no dotfind index (./build.sh bench-lexical builds them)`);
  const site = path.join(work, name);
  const docs = readJsonl(path.join(dir, 'corpus.jsonl'));
  const url = (id) => `/doc/${encodeURIComponent(id)}`;
  if (!fs.existsSync(path.join(site, 'pagefind/pagefind-entry.json'))) {
    log(`${name}: Pagefind index of ${docs.length} documents`);
    await writePagefind(docs.filter((d) => `${d.title ?? ''} ${d.text ?? ''}`.trim()).map((d) => ({ url: url(d._id), title: d.title ?? '', content: `${d.title ?? ''}\n${d.text ?? ''}` })), path.join(site, 'pagefind'));
  }
  const server = await startServer({
    root: site,
    mounts: { '/bench': path.join(root, 'bench/pages/lexical'), '/dotfind': path.join(root, 'dist/npm'), '/dotfind-index': index },
    fault: holdHeavy,
  });
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${server.url}bench/bench.html`);
  await page.waitForFunction(() => document.getElementById('out').textContent === 'ready');
  server.traffic.reset();
  await page.evaluate(() => window.bench.openLexical('/dotfind-index/'));
  const openBytes = { dotfind: server.traffic.wireBytes() };
  server.traffic.reset();
  await page.evaluate(() => window.bench.pagefindInit('/pagefind/pagefind.js'));
  openBytes.pagefind = server.traffic.wireBytes();
  const queries = readJsonl(path.join(dir, 'queries.jsonl'));
  const runs = { dotfind: [], pagefind: [] };
  const bytes = { dotfind: [], pagefind: [] };
  for (const q of queries) {
    server.traffic.reset();
    const ids = await page.evaluate((text) => window.bench.lexical(text, 10), q.text);
    bytes.dotfind.push(server.traffic.wireBytes());
    ids.forEach((id, i) => runs.dotfind.push(`${q._id} Q0 ${id} ${i + 1} ${10 - i} dotfind`));
    server.traffic.reset();
    const urls = await page.evaluate((text) => window.bench.pagefind(text, 10), q.text);
    bytes.pagefind.push(server.traffic.wireBytes());
    urls.forEach((u, i) => runs.pagefind.push(`${q._id} Q0 ${decodeURIComponent(u.replace(/^\/doc\//, ''))} ${i + 1} ${10 - i} pagefind`));
  }
  await context.close();
  server.server.close();
  const level = name.includes('trec-dl') ? 2 : 1;
  const ndcg = {};
  const answered = {};
  for (const engine of ['dotfind', 'pagefind']) {
    const run = path.join(work, `${name}-${engine}.run`);
    fs.writeFileSync(run, `${runs[engine].join('\n')}\n`);
    const m = JSON.parse(execFileSync(dotfind, ['eval', '--qrels', path.join(dir, 'qrels.tsv'), '--run', run, '--rel-level', String(level), '--complete', '--json'], { encoding: 'utf8' }));
    ndcg[engine] = m['ndcg@10'];
    answered[engine] = new Set(runs[engine].map((l) => l.split(' ')[0])).size;
  }
  log(`${name}: nDCG@10 dotfind ${ndcg.dotfind.toFixed(4)}, Pagefind ${ndcg.pagefind.toFixed(4)}`);
  return { name, docs: docs.length, queries: queries.length, ndcg, answered, bytes, openBytes };
}
const collections = [];
if (fs.existsSync(shared)) {
  for (const dir of fs.readdirSync(shared).sort().map((d) => path.join(shared, d))) {
    if (fs.existsSync(path.join(dir, 'qrels.tsv'))) collections.push(await collection(dir));
  }
} else {
  log(`${shared} is absent: no collection measured (the quality and bytes-per-query table needs ../shared/data)`);
}

// 3. Hybrid vs dense latency, model loaded, 50k passages.
log(`hybrid vs dense latency: ${synthetic}`);
const syn = await startServer({ root: path.join(root, 'bench/pages/lexical'), mounts: { '/bench': path.join(root, 'bench/pages/lexical'), '/dotfind': path.join(root, 'dist/npm'), '/dotfind-index': synthetic } });
const synContext = await browser.newContext();
const synPage = await synContext.newPage();
await synPage.goto(`${syn.url}bench/bench.html`);
await synPage.waitForFunction(() => document.getElementById('out').textContent === 'ready');
const synPassages = await synPage.evaluate(() => window.bench.load('/dotfind-index/'));
const synTexts = readJsonl(syntheticQueries).map((q) => q.text);
// Once in each mode to fetch the parts, then timed with the parts in memory, modes alternating.
for (const t of synTexts) for (const mode of ['dense', 'hybrid']) await synPage.evaluate(([q, m]) => window.bench.timed(q, m), [t, mode]);
const latency = { dense: [], hybrid: [] };
for (const t of synTexts) for (const mode of ['dense', 'hybrid']) latency[mode].push(await synPage.evaluate(([q, m]) => window.bench.timed(q, m), [t, mode]));
await synContext.close();
syn.server.close();
const chromium = browser.version();
await browser.close();

const ratio = (a, b) => `${(a / b).toFixed(2)}×`;
const fm = (xs, key) => median(xs.map((x) => x[key]));
const lines = [
  '## Lexical stage: dotfind\'s term buckets vs Pagefind (headless Chromium, localhost)',
  '',
  `Command: \`./build.sh bench-lexical\` — headless Chromium ${chromium}, \`pagefind\` ${JSON.parse(fs.readFileSync(path.join(root, 'node_modules/pagefind/package.json'), 'utf8')).version} (npm), served by \`tools/demo/serve.mjs\`, which counts every byte on the wire (headers included). ${machineLine()}.`,
  '',
  `**A cold visit's first keyword result** (demo site, 346 passages; ${FIRST_QUERIES.length} linked searches \`?q=…\`, each in a fresh profile; medians, each run in brackets). dotfind: the demo page, answering from the lexical module and the index's term buckets while the server holds back the model and the full module (what the first result needs, nothing else, is counted). Pagefind: a page on the same site searching with Pagefind's JS API and showing its top 10 pages (their data fetched). Milliseconds from navigation to the results on screen.`,
  '',
  '| engine | bytes on the wire | requests | ms after navigation |',
  '|---|---|---|---|',
  ...['dotfind', 'pagefind'].map((e) => `| ${e === 'dotfind' ? 'dotfind (lexical module)' : 'Pagefind'} | ${kb(fm(first[e], 'bytes'))} (${first[e].map((r) => kb(r.bytes)).join(', ')}) | ${fm(first[e], 'requests')} | ${fm(first[e], 'ms')} (${first[e].map((r) => r.ms).join(', ')}) |`),
  `| dotfind ÷ Pagefind | ${ratio(fm(first.dotfind, 'bytes'), fm(first.pagefind, 'bytes'))} | | ${ratio(fm(first.dotfind, 'ms'), fm(first.pagefind, 'ms'))} |`,
  '',
  'Goal (issue 20): the first lexical result of a cold visit ≤ 1 MB on the wire and ≤ 500 ms after navigation.',
  '',
];
if (collections.length) {
  lines.push(
    `**Quality and bytes per query** on the collections of ../shared/data: each engine's top 10 as its browser search returns them, scored by \`dotfind eval --complete\` (nDCG@10, a judged query an engine returns nothing for counting 0; TREC-DL'19 relevance ≥ 2), queries in the collection's order, one page each. dotfind: BM25 (k1 0.9, b 0.4, no stemming) from the index's term buckets (the index \`./build.sh bench-hybrid\` builds: default layout). Pagefind: every document added with \`addCustomRecord\` (title + text, language en: Pagefind stems English). "open": what each fetches before its first query (dotfind: lexical module, manifest, part table; Pagefind: its script and entry file — its wasm and metadata come with the first query); "first query": what the first query then fetched; "later queries": bytes each later query fetched (dotfind: the term buckets and fragments of its 10 hits not fetched before; Pagefind: index chunks and the 10 pages' data not fetched before), mean / max; "all": every byte of the session.`,
    '',
    '| collection | documents / queries | queries answered: dotfind / Pagefind | nDCG@10 dotfind / Pagefind | open: dotfind / Pagefind | first query: dotfind / Pagefind | later queries dotfind: mean / max | later queries Pagefind: mean / max | all: dotfind / Pagefind |',
    '|---|---|---|---|---|---|---|---|---|',
    ...collections.map((c) => {
      const [d, p] = [c.bytes.dotfind, c.bytes.pagefind];
      const all = (open, xs) => open + xs.reduce((a, b) => a + b, 0);
      return `| ${c.name} | ${c.docs} / ${c.queries} | ${c.answered.dotfind} / ${c.answered.pagefind} | ${c.ndcg.dotfind.toFixed(4)} / ${c.ndcg.pagefind.toFixed(4)} | ${kb(c.openBytes.dotfind)} / ${kb(c.openBytes.pagefind)} | ${kb(d[0])} / ${kb(p[0])} | ${kb(mean(d.slice(1)))} / ${kb(Math.max(...d.slice(1)))} | ${kb(mean(p.slice(1)))} / ${kb(Math.max(...p.slice(1)))} | ${kb(all(c.openBytes.dotfind, d))} / ${kb(all(c.openBytes.pagefind, p))} |`;
    }),
    '',
  );
} else {
  lines.push('Quality and bytes per query: not measured (../shared/data absent).', '');
}
lines.push(
  `**Hybrid vs dense query latency**, model loaded: ${synPassages} passages (\`${path.basename(synthetic)}\`, synthetic: vectors around real ones, records with real passage text, default layout), ${synTexts.length} queries, each searched once per mode to fetch its parts, then timed per mode, modes alternating: \`engine.search\` from call to results (encoding, probing, scoring; hybrid adds BM25 and the fusion). Median dense ${median(latency.dense).toFixed(1)} ms, hybrid ${median(latency.hybrid).toFixed(1)} ms: **${ratio(median(latency.hybrid), median(latency.dense))}** (goal ≤ 1.5×).`,
);
const body = lines.join('\n');
console.log(body);
writeSection('lexical', body);
