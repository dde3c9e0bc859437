#!/usr/bin/env node
// The browser at scale (issue 19): for each index, a fresh headless Chromium profile loads it
// from localhost and runs a query set one query at a time; the server counts the bytes of
// every request, so each figure is what a visitor would download. Reported per index: bytes
// before the index is ready, for the first query, and per later (new) query; the worker's
// search time with the parts in memory; renderer memory after a second visit of the same
// queries in a Chromium no DevTools session is attached to; and recall@10 of the
// index's default probe against the exact int8 scan (natively, `dotfind run` with and
// without `--exact`, same vectors and kernel). Also the demo's cold and warm start. Run
// through `./build.sh bench-browser`, which builds the indexes; rewrites the "Browser"
// section of BENCHMARKS.md. Directly:
//
//   node bench/bench_browser.mjs --queries Q.jsonl --base "what the synthetic vectors surround" \
//       NAME=INDEX_DIR [NAME=INDEX_DIR ...]
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../tools/demo/serve.mjs';
import { chromiumArgs, chromiumPath, launchBrowser } from '../tests/browser/support.mjs';
import { cpuKind, machineLine } from './machine.mjs';
import { writeSection } from './sections.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const opt = (name) => {
  const i = argv.indexOf(name);
  if (i < 0 || argv[i + 1] === undefined) throw new Error(`${name} is required: see the header of bench/bench_browser.mjs`);
  return argv.splice(i, 2)[1];
};
const queriesFile = opt('--queries');
const base = opt('--base');
const indexes = argv.map((a) => {
  const [name, dir] = a.split('=');
  if (!fs.existsSync(path.join(dir ?? '', 'manifest.json'))) throw new Error(`${a}: not NAME=INDEX_DIR`);
  return { name, dir: path.resolve(dir) };
});
const queries = fs.readFileSync(queriesFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).text);
const DEMO_QUERIES = [
  'how do I store key value pairs', 'propagate errors with the question mark operator', 'spawn a thread',
  'what is ownership', 'borrowing rules for references', 'define a struct with fields', 'match on an enum',
  'vectors grow at runtime', 'strings are utf-8 encoded', 'write a unit test', 'closures capture their environment',
  'box allocates on the heap', 'channels send values between threads', 'install rust with rustup', 'shadowing variables',
];
const log = (m) => console.error(`[bench-browser] ${m}`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p90 = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.9)];
const dotfind = path.join(root, 'target/release/dotfind');

/** The process ids under `root` (itself included): a browser's renderers are its grandchildren. */
function descendants(root) {
  const children = new Map();
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      // Field 4 of /proc/PID/stat, after the parenthesised name (which may hold spaces).
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(pid));
    } catch {
      // the process ended meanwhile
    }
  }
  const all = [root];
  for (let i = 0; i < all.length; i++) all.push(...(children.get(all[i]) ?? []));
  return all;
}

/**
 * Memory of the renderer processes of the browser `browserPid` (the page and its workers,
 * and the spare renderer Chromium keeps ready), in bytes: resident (RSS, which counts pages
 * shared with the browser process and other renderers in full) and proportional (PSS, each
 * shared page divided among the processes sharing it: what the page adds to the machine).
 */
function rendererMemory(browserPid) {
  let rss = 0;
  let pss = 0;
  for (const pid of descendants(browserPid)) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!cmd.includes('--type=renderer')) continue;
      const r = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (r) rss += Number(r[1]) * 1024;
      const p = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
      if (p) pss += Number(p[1]) * 1024;
    } catch {
      // the process ended meanwhile
    }
  }
  return { rss, pss };
}

/**
 * Renderer memory of a visit to `url` in a Chromium no DevTools session is attached to
 * (started here, not by Playwright): with one attached, the renderer keeps a copy of every
 * response body for the network panel (about 100 MB after the 1M index's queries), which no
 * visitor's browser does. `finished()` says when the visit is over: true, or throws.
 */
async function memoryOfVisit(url, finished) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'dotfind-bench-profile-'));
  // In a process group of its own, so that its helpers end with it (they write the profile).
  const chrome = spawn(chromiumPath, ['--headless', ...chromiumArgs, `--user-data-dir=${profile}`, url], { stdio: 'ignore', detached: true });
  // Settles once the browser is gone, however it went (exit, signal, failure to start).
  let ended = null;
  const gone = new Promise((resolve) => {
    chrome.once('exit', (code, signal) => resolve((ended = `ended (${signal ?? code})`)));
    chrome.once('error', (e) => resolve((ended = `failed: ${e.message}`)));
  });
  try {
    const deadline = Date.now() + 10 * 60 * 1000;
    while (!finished()) {
      if (ended) throw new Error(`${url}: the browser ${ended} before the visit without DevTools finished`);
      if (Date.now() > deadline) throw new Error(`${url}: the visit without DevTools did not finish in 10 minutes`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    // What a tab holds once the visit is over, not the garbage of its last request.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    return rendererMemory(chrome.pid);
  } finally {
    try {
      process.kill(-chrome.pid, 'SIGKILL');
    } catch {
      // the group is gone already
    }
    await gone;
    await fs.promises.rm(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 })
      .catch((e) => log(`could not remove ${profile}: ${e.message}`));
  }
}

/** {@link memoryOfVisit} of a visit that loads index `name` and types `texts`: the page runs
 * it itself (bench.js' `?auto=`) and asks for `signal-done` when it is over. */
function memoryOfSearches(name, texts) {
  fs.writeFileSync(path.join(queryDir, `${name}.json`), JSON.stringify(texts));
  site.traffic.reset();
  return memoryOfVisit(`${site.url}bench/bench.html?auto=/idx/${name}/&queries=/bench-queries/${name}.json`, () => {
    const signal = site.traffic.requests.find((r) => r.path.startsWith('/bench/signal-'));
    if (signal && signal.path !== '/bench/signal-done') throw new Error(`${name}: the visit without DevTools failed: ${decodeURIComponent(signal.path)}`);
    return signal !== undefined;
  });
}

/** Recall@10 of the default probe against the exact scan, natively over `texts`. */
function nativeRecall(dir, texts) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dotfind-recall-'));
  try {
    const q = path.join(tmp, 'q.jsonl');
    fs.writeFileSync(q, texts.map((text, i) => JSON.stringify({ _id: `q${i}`, text })).join('\n'));
    const run = (extra, out) => {
      execFileSync(dotfind, ['run', '--index', dir, '--queries', q, '-k', '10', '--out', out, ...extra], { stdio: 'pipe' });
      const top = {};
      for (const line of fs.readFileSync(out, 'utf8').split('\n').filter(Boolean)) {
        const [qid, , doc] = line.split(' ');
        (top[qid] ??= new Set()).add(doc);
      }
      return top;
    };
    const exact = run(['--exact'], path.join(tmp, 'exact.trec'));
    const probed = run([], path.join(tmp, 'probed.trec'));
    const per = Object.keys(exact).map((qid) => [...exact[qid]].filter((d) => probed[qid]?.has(d)).length / exact[qid].size);
    return per.reduce((a, b) => a + b, 0) / per.length;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

const mounts = Object.fromEntries(indexes.map(({ name, dir }) => [`/idx/${name}`, dir]));
const queryDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dotfind-bench-queries-'));
const site = await startServer({ root: path.join(root, 'target/demo-site'), mounts: { '/bench': path.join(root, 'bench/pages/browser'), '/bench-queries': queryDir, ...mounts } });
const browser = await launchBrowser();

async function openBench(context) {
  const page = await context.newPage();
  await page.goto(`${site.url}bench/bench.html`);
  await page.waitForFunction(() => document.getElementById('out').textContent === 'ready');
  return page;
}

// Cold (empty profile) and warm (Cache API) start of the demo, to its first result.
const starts = { cold: [], warm: [] };
for (let i = 0; i < 3; i++) {
  const context = await browser.newContext();
  for (const kind of ['cold', 'warm']) {
    const page = await openBench(context);
    const r = await page.evaluate(async (q) => {
      const t0 = performance.now();
      await window.bench.load('/dotfind-index/');
      await window.bench.search(q);
      return performance.now() - t0;
    }, DEMO_QUERIES[0]);
    starts[kind].push(r);
    await page.close();
  }
  await context.close();
}

// The same browser on a blank page: what any tab costs before a page runs anything.
const started = Date.now();
const blank = await memoryOfVisit('about:blank', () => Date.now() - started > 3000);

const results = [];
for (const { name, dir } of indexes) {
  const texts = name === 'demo' ? DEMO_QUERIES : queries;
  log(`${name}: ${texts.length} queries`);
  const context = await browser.newContext();
  const page = await openBench(context);
  site.traffic.reset();
  // Index files (not the model copy, not the page or package) of the requests since a reset.
  const indexBody = () => site.traffic.requests
    .filter((r) => r.path.startsWith(`/idx/${name}/`) && !r.path.startsWith(`/idx/${name}/model/`))
    .reduce((n, r) => n + r.bodyBytes, 0);
  const info = await page.evaluate((u) => window.bench.load(u), `/idx/${name}/`);
  const loadBytes = site.traffic.wireBytes();
  const loadIndexBytes = indexBody();
  const perQuery = [];
  for (const text of texts) {
    site.traffic.reset();
    const r = await page.evaluate((q) => window.bench.search(q), text).catch((e) => {
      throw new Error(`${name}: query ${JSON.stringify(text)}: ${e.message}`);
    });
    perQuery.push({ ...r, bytes: site.traffic.wireBytes(), indexBytes: indexBody(), requests: site.traffic.requests.length });
  }
  // Again, every part now in memory: the search itself.
  const warm = [];
  for (const text of texts) warm.push(await page.evaluate((q) => window.bench.search(q), text));
  const { listBytes, wasmBytes } = await page.evaluate(() => window.bench.stats());
  await context.close();
  const { rss, pss } = await memoryOfSearches(name, texts);
  const recall = info.layout.lists > 1 ? nativeRecall(dir, texts) : 1;
  results.push({ name, info, loadBytes, loadIndexBytes, perQuery, warm, rss, pss, listBytes, wasmBytes, recall });
}
const chromium = browser.version();
await browser.close();
site.server.close();
fs.rmSync(queryDir, { recursive: true, force: true });

const mb = (b) => `${(b / 1e6).toFixed(2)} MB`;
const fmt = (x) => x.toFixed(1);
const lines = [
  `## Browser at scale: bytes per query, search time, memory, recall (headless Chromium, localhost) — ${cpuKind()} CPUs`,
  '',
  `Command: \`./build.sh bench-browser\` — headless Chromium ${chromium}, one fresh profile per index, served by \`tools/demo/serve.mjs\`; bytes counted by the server on every connection (headers included). Synthetic indexes: vectors drawn around ${base} (each a real passage vector plus Gaussian noise of half its norm; records carry the source passage's text), written by the indexer's code (\`bench/synthetic_index.rs\`) with its default layout. Queries: ${path.basename(path.dirname(queriesFile))}/${path.basename(queriesFile)} (${queries.length}) for synthetic indexes, ${DEMO_QUERIES.length} Rust questions for the demo; each typed once in order (bytes per new query), then once more (search time: the worker's probing, scoring and results, fetching excluded). A query of an index of several lists fetches, of each list it probes, the directory and the passages' codes (one HTTP range), then the rows of the best \`rescore\` candidates by their codes (ranges of single rows or short runs), and scores those exactly; of the fragments holding the results, their directories, then those records (ranges again). Vector lists held in memory are capped at the package's default \`maxVectorBytes\` (128 MiB). Memory: a second visit of the same index and queries in a Chromium started without Playwright, since a DevTools session keeps a copy of every response body in the renderer; PSS of all its renderer processes (the page with its worker, and those Chromium starts with every tab), 2 s after the last query; a blank page measures ${mb(blank.pss)} (${mb(blank.rss)}) this way. Recall@10: the default probe's top 10 against the exact int8 scan, natively (\`dotfind run\` vs \`dotfind run --exact\`). ${machineLine()}.`,
  '',
  `Demo start to first result (wasm build "${results[0]?.info.wasmBuild}"): cold ${fmt(median(starts.cold))} ms (${starts.cold.map(fmt).join(', ')}), warm (Cache API) ${fmt(median(starts.warm))} ms (${starts.warm.map(fmt).join(', ')}).`,
  '',
  '| index | passages | lists / probe / fragments | loaded (ready) | first query | index bytes before the first result | later queries: median / max (requests, median) | fetch median | search median / p90 (in memory) | wasm memory (vector lists held) | renderer processes PSS (RSS), no DevTools | recall@10 vs exact |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ...results.map(({ name, info, loadBytes, loadIndexBytes, perQuery, warm, rss, pss, listBytes, wasmBytes, recall }) => {
    const later = perQuery.slice(1).map((q) => q.bytes);
    const requests = perQuery.slice(1).map((q) => q.requests);
    const search = warm.map((w) => w.timings.searchMs);
    const shape = info.layout.code_bytes ? ` (codes ${info.layout.code_bytes} B, rescore ${info.layout.rescore})` : '';
    return `| ${name} | ${info.passageCount} | ${info.layout.lists} / ${info.layout.probe}${shape} / ${info.layout.fragments} | ${mb(loadBytes)} | ${mb(perQuery[0].bytes)} | ${mb(loadIndexBytes + perQuery[0].indexBytes)} | ${mb(median(later))} / ${mb(Math.max(...later))} (${median(requests)}) | ${fmt(median(perQuery.map((q) => q.timings.fetchMs)))} ms | ${fmt(median(search))} / ${fmt(p90(search))} ms | ${mb(wasmBytes)} (${mb(listBytes)}) | ${mb(pss)} (${mb(rss)}) | ${recall.toFixed(3)} |`;
  }),
  '',
  'Goals (issue 19): 1M × 384 — ≤ 1 MB per query after the first (≤ 2 MB for the first), search ≤ 30 ms, recall@10 ≥ 0.95, page memory ≤ 300 MB; a 50k-passage index ≤ 1 MB of index bytes before the first result (the model\'s files excluded, every other file of the index counted). "loaded" and "first query" count every byte, the model and its token-embedding chunks included.',
];
const body = lines.join('\n');
console.log(body);
// One section per kind of CPU: search time and memory differ between them.
writeSection(`browser-${cpuKind()}`, body);
