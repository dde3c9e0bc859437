// The demo site (target/demo-site, built by ./build.sh test) as a visitor meets it, in
// headless Chromium against a real static server: search as you type, progress while
// loading, keyword results before the model (upgraded in place), hybrid and re-ranking modes,
// offline reload, and a tampered shard surfacing in the page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launchBrowser, repoRoot, fileEntry } from './support.mjs';
import { startServer } from '../../tools/demo/serve.mjs';

const SITE = path.join(repoRoot, 'target/demo-site');
let server, url, browser, context, page;
const consoleErrors = [];
/** Every request of the first visit (page, workers and service worker), until it was ready. */
const firstVisit = [];

before(async () => {
  if (!fs.existsSync(path.join(SITE, 'dotfind-index/manifest.json'))) {
    throw new Error('target/demo-site is not built: run the tests through ./build.sh test');
  }
  ({ server, url } = await startServer({ root: SITE }));
  browser = await launchBrowser();
  context = await browser.newContext();
  // A byte range of a file counts as its own download.
  context.on('request', (r) => firstVisit.push(r.headers().range ? `${r.url()}#${r.headers().range}` : r.url()));
  page = await context.newPage();
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  await page.goto(url);
  await page.waitForSelector('#loading.done', { timeout: 120_000 });
  context.removeAllListeners('request');
});

after(async () => {
  await browser?.close();
  server?.close();
});

/** The results the page shows for `query`, once it shows them (in the mode checked now). */
async function results(query) {
  await page.fill('#q', query);
  await page.waitForFunction(
    (q) => {
      const list = document.getElementById('results');
      const mode = document.querySelector('input[name=mode]:checked').value;
      return list.dataset.query === q && list.dataset.searchMode === mode && /results$/.test(document.getElementById('timing').textContent);
    },
    query,
    { timeout: 30_000 },
  );
  return page.$$eval('#results li', (lis) =>
    lis.map((li) => ({ href: li.querySelector('a')?.getAttribute('href'), title: li.querySelector('a')?.textContent, snippet: li.querySelector('.snippet')?.textContent })),
  );
}

test('loading shows progress and then the index size', async () => {
  assert.ok(Number(await page.getAttribute('body', 'data-progress-events')) > 0, 'progress events were seen');
  assert.match(await page.textContent('#status'), /^Ready: \d+ passages, model sentence-transformers\/all-MiniLM-L6-v2 .*, loaded in \d+ ms\.$/);
});

test('typed questions find the right chapter and section', async () => {
  await page.check('input[value=dense]');
  const expectations = [
    ['how do I store key value pairs', /^book\/ch08-03-hash-maps\.html#/],
    ['propagate errors with the question mark operator', /^book\/ch09-02-recoverable-errors-with-result\.html#/],
    ['run code at the same time on several threads', /^book\/ch16-01-threads\.html#/],
    ['who owns a value and when is it dropped', /^book\/ch04-01-what-is-ownership\.html#/],
    ['send messages between threads with channels', /^book\/ch16-02-message-passing\.html#/],
  ];
  for (const [query, href] of expectations) {
    const hits = await results(query);
    assert.equal(hits.length, 10, query);
    assert.match(hits[0].href.replace(/^\//, ''), href, `${query}: got ${hits[0].href}`);
    assert.ok(hits[0].snippet.length > 20);
  }
  assert.match(await page.textContent('#timing'), /^encode [\d.]+ ms · search [\d.]+ ms · 10 results$/);
  fs.mkdirSync(path.join(repoRoot, 'target/screenshots'), { recursive: true });
  await page.screenshot({ path: path.join(repoRoot, 'target/screenshots/demo-results.png'), fullPage: true });
});

test('result links open the passage in the site', async () => {
  const [first] = await results('how do I store key value pairs');
  const response = await page.request.get(new URL(first.href, url).href);
  assert.equal(response.status(), 200);
  assert.match(await response.text(), /HashMap/);
});

test('re-ranking mode re-scores the BM25 top 100 with the model', async () => {
  await page.check('input[value=rerank]');
  const hits = await results('store key value pairs');
  assert.equal(hits.length, 10);
  assert.match(hits[0].href, /ch08-03-hash-maps\.html/);
  assert.match(await page.textContent('#timing'), /^BM25 top \d+ re-ranked by BERT_Dot in [\d.]+ ms · 10 results$/);
  await page.check('input[value=dense]');
});

test('hybrid mode fuses the model\'s ranking with BM25\'s, and the list says which it shows', async () => {
  await page.check('input[value=hybrid]');
  const hits = await results('HashMap entry or_insert');
  assert.equal(hits.length, 10);
  assert.match(hits[0].href, /ch08-03-hash-maps\.html/);
  assert.equal(await page.getAttribute('#results', 'data-mode'), 'hybrid');
  await page.check('input[value=dense]');
  await results('HashMap entry or_insert');
  assert.equal(await page.getAttribute('#results', 'data-mode'), 'semantic');
});

test('keyword results come before the model, and are upgraded in place once it is in — not under the pointer', async () => {
  // The model's graph is held back by the server until the test lets it go: meanwhile the
  // page answers from the lexical module (BM25), with the model still on its way.
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  // The model and the full module are held back: what the first keyword result needs is
  // exactly what the server sends before it.
  const holdBack = (p) => /\/model\.graph|\/pkg(-relaxed)?\/dotfind_bg\.wasm$/.test(p);
  const slow = await startServer({ root: SITE, fault: (p) => (holdBack(p) ? { hold: held } : undefined) });
  const fresh = await browser.newContext();
  try {
    const p = await fresh.newPage();
    // A linked search (?q=): it runs as soon as keyword search is ready.
    await p.goto(`${slow.url}?q=${encodeURIComponent('HashMap entry or_insert')}`);
    await p.waitForFunction(() => document.getElementById('results').dataset.query === 'HashMap entry or_insert', null, { timeout: 30_000 });
    const firstResultMs = Number(await p.getAttribute('body', 'data-first-result-ms'));
    assert.match(await p.textContent('#status'), /^Keyword search ready/);
    assert.equal(await p.isChecked('input[value=hybrid]'), true, 'hybrid is the default ranking');
    assert.equal(await p.getAttribute('#results', 'data-mode'), 'lexical');
    assert.match(await p.textContent('#timing'), /^BM25 in [\d.]+ ms \(model loading\) · 10 results$/);
    assert.match(await p.getAttribute('#results li:first-child a', 'href'), /ch08-03-hash-maps\.html/);
    // Everything fetched so far (page, scripts, the lexical module, part table, term
    // buckets, fragments): well under a megabyte, and no model byte.
    const bytes = slow.traffic.wireBytes();
    assert.ok(bytes < 1_000_000, `${bytes} bytes on the wire before the first keyword result`);
    assert.ok(!slow.traffic.requests.some((r) => /model\.graph|pkg(-relaxed)?\/dotfind_bg\.wasm/.test(r.path)), 'no model or full module served yet');
    console.log(`first keyword result: ${firstResultMs} ms after navigation, ${bytes} bytes on the wire`);
    assert.ok(firstResultMs > 0);

    // The pointer rests on the list when the model arrives: the list stays as it is...
    const firstItem = await p.$('#results li:first-child');
    await p.hover('#results li:nth-child(2)');
    release();
    await p.waitForSelector('#loading.done', { timeout: 120_000 });
    await p.waitForTimeout(500);
    assert.equal(await p.getAttribute('#results', 'data-mode'), 'lexical', 'no change under the pointer');
    assert.equal(await firstItem.evaluate((li) => li.isConnected), true);
    // ...and is upgraded, same query, once the pointer leaves it.
    await p.mouse.move(5, 5);
    await p.waitForFunction(() => document.getElementById('results').dataset.mode === 'hybrid', null, { timeout: 30_000 });
    assert.equal(await p.getAttribute('#results', 'data-query'), 'HashMap entry or_insert');
    assert.equal(await p.$$eval('#results li', (lis) => lis.length), 10);
    assert.match(await p.textContent('#timing'), /^encode [\d.]+ ms · search [\d.]+ ms · 10 results$/);
  } finally {
    release();
    await fresh.close();
    slow.server.close();
  }
});

test('snippets are text, never HTML', async () => {
  // The book's code samples contain markup-like text (e.g. HashMap<String, i32>): it must
  // arrive as text nodes, with no element created from corpus content.
  await results('HashMap<String, i32> insert');
  const elementsInSnippets = await page.$$eval('#results .snippet *', (els) => els.length);
  assert.equal(elementsInSnippets, 0);
});

/**
 * Loads the demo index once per `Dotfind.load` options object (uncached, in a fresh browser
 * context) and runs `queries` on each: [{wasmBuild, passageCount, hits}], hits as [id, score]
 * pairs.
 */
async function searchWith(configs, queries, k) {
  const fresh = await browser.newContext();
  try {
    const p = await fresh.newPage();
    await p.goto(url);
    return await p.evaluate(async ([configs, queries, k]) => {
      const { Dotfind } = await import('/dotfind/dotfind.js');
      const out = [];
      for (const options of configs) {
        const engine = await Dotfind.load('/dotfind-index/', { ...options, cache: false });
        const { wasmBuild, passageCount } = engine.info;
        const hits = [];
        for (const q of queries) hits.push((await engine.search(q, { k })).map((h) => [h.id, h.score]));
        engine.terminate();
        out.push({ wasmBuild, passageCount, hits });
      }
      return out;
    }, [configs, queries, k]);
  } finally {
    await fresh.close();
  }
}

test('both wasm builds rank the same passages (relaxed SIMD and plain SIMD)', async () => {
  const queries = ['how do I store key value pairs', 'spawn a thread', 'what is ownership', 'write a unit test'];
  const [relaxed, simd] = await searchWith([{ wasm: 'relaxed' }, { wasm: 'simd' }], queries, 5);
  assert.equal(relaxed.wasmBuild, 'relaxed');
  assert.equal(simd.wasmBuild, 'simd');
  relaxed.hits.forEach((hits, q) => {
    const plain = simd.hits[q];
    assert.deepEqual(hits.map(([id]) => id), plain.map(([id]) => id), `query ${q}: same passages in the same order`);
    // Same integer scoring; only the encoder's float rounding (fused multiply-add) differs,
    // which per-token activation scales carry further than a per-tensor one: the query
    // bundle's vectors differ between the builds by up to 5e-4 in cosine (encoder tests).
    hits.forEach(([, score], i) => assert.ok(Math.abs(score - plain[i][1]) < 3e-3, `query ${q}: ${score} vs ${plain[i][1]}`));
  });
});

test('an index in lists fetches only the parts each query needs; its exact search is the one-list index\'s', async () => {
  // target/demo-site/dotfind-index-lists: the demo corpus with --lists 16 --probe 4 --fragment-kib 8.
  const fresh = await browser.newContext();
  const parts = [];
  fresh.on('request', (r) => {
    const m = new URL(r.url()).pathname.match(/^\/dotfind-index-lists\/((vectors\/\d+|passages\/\d+|ids\/\d+|terms\/\d+)\.bin)$/);
    const range = r.headers().range;
    if (m) parts.push(range ? `${m[1]}#${range}` : m[1]);
  });
  try {
    const p = await fresh.newPage();
    await p.goto(url);
    const layout = await p.evaluate(async () => {
      const { Dotfind } = await import('/dotfind/dotfind.js');
      window.lists = await Dotfind.load('/dotfind-index-lists/', { cache: false });
      window.whole = await Dotfind.load('/dotfind-index/', { cache: false });
      return window.lists.info.layout;
    });
    assert.deepEqual([layout.lists, layout.probe], [16, 4]);
    assert.ok(layout.fragments > 20, `${layout.fragments} fragments`);
    // The load fetches the model, the part table and the centroids: no list, no fragment.
    assert.deepEqual(parts, []);
    const queries = ['how do I store key value pairs', 'spawn a thread', 'what is ownership', 'error handling with Result', 'iterators and closures'];
    let overlap = 0;
    for (const q of queries) {
      const before = parts.length;
      const probed = await p.evaluate((q) => window.lists.search(q, { k: 5 }).then((hits) => hits.map((h) => [h.id, h.score])), q);
      const fetched = parts.slice(before);
      assert.equal(new Set(fetched).size, fetched.length, `no part fetched twice: ${fetched}`);
      // Of the lists: the probed ones' directories and codes, then the candidates' rows, all
      // by byte range.
      const lists = fetched.filter((f) => f.startsWith('vectors/'));
      assert.ok(lists.every((f) => f.includes('#bytes=')), `whole lists fetched for "${q}": ${fetched}`);
      assert.ok(lists.filter((f) => f.includes('#bytes=0-')).length <= 4, `lists probed for "${q}": ${fetched}`);
      // Of the fragments: directories, then the hits' records, by byte range.
      const fragments = fetched.filter((f) => f.startsWith('passages/'));
      assert.ok(fragments.every((f) => f.includes('#bytes=')), `whole fragments fetched for "${q}": ${fetched}`);
      assert.ok(new Set(fragments.map((f) => f.split('#')[0])).size <= 5, `fragments fetched for "${q}": ${fetched}`);
      const [exact, one] = await p.evaluate((q) => Promise.all([
        window.lists.search(q, { k: 5, probe: 'exact' }),
        window.whole.search(q, { k: 5 }),
      ]).then((all) => all.map((hits) => hits.map((h) => [h.id, h.score]))), q);
      // The same vectors scored by the same kernel: identical, whatever order the passages are stored in.
      assert.deepEqual(exact, one, q);
      overlap += probed.filter(([id]) => one.some(([other]) => other === id)).length / 5;
      probed.forEach(([id, score]) => {
        const same = one.find(([other]) => other === id);
        if (same) assert.equal(score, same[1]);
      });
    }
    assert.ok(overlap / queries.length >= 0.8, `top-5 overlap of the probed search with the exact one: ${overlap / queries.length}`);
    // A keyword search reads its words' term buckets and its hits' fragments, no list; it
    // ranks as the one-list index does.
    const layoutTerms = await p.evaluate(() => window.lists.info.layout.term_buckets);
    assert.ok(layoutTerms > 10, `${layoutTerms} term buckets`);
    for (const q of ['HashMap entry', 'thread spawn move closure']) {
      const before = parts.length;
      const [lexical, whole] = await p.evaluate((q) => Promise.all([
        window.lists.search(q, { k: 5, mode: 'lexical' }),
        window.whole.search(q, { k: 5, mode: 'lexical' }),
      ]).then((all) => all.map((hits) => hits.map((h) => [h.id, h.score]))), q);
      assert.deepEqual(lexical, whole, q);
      const fetched = parts.slice(before);
      assert.ok(fetched.every((f) => /^(terms|passages)\//.test(f)), `"${q}" fetched ${fetched}`);
      assert.ok(fetched.filter((f) => f.startsWith('terms/')).length <= q.split(' ').length, `"${q}" fetched ${fetched}`);
    }
    // Re-ranking candidates by id reads the id directory and their lists, no passage text.
    const before = parts.length;
    const candidates = await p.evaluate(() => window.whole.search('what is ownership', { k: 20 }).then((hits) => hits.map((h) => h.id)));
    const [ranked, direct] = await p.evaluate((ids) => Promise.all([
      window.lists.rerank('what is ownership', [...ids, 'no-such-passage']),
      window.whole.rerank('what is ownership', [...ids, 'no-such-passage']),
    ]), candidates);
    assert.deepEqual(ranked, direct);
    assert.deepEqual(ranked.unknown, ['no-such-passage']);
    const reread = parts.slice(before);
    assert.ok(reread.some((f) => f.startsWith('ids/')), `id buckets fetched: ${reread}`);
    assert.ok(!reread.some((f) => f.startsWith('passages/')), `no fragment fetched to re-rank: ${reread}`);
    const message = await p.evaluate(() => window.lists.search('x', { probe: 0 }).then(() => 'searched', (e) => `${e.name}: ${e.message}`));
    assert.equal(message, 'DotfindError: dotfind: probe must be "default", "exact" or a positive integer, not 0');
    const budget = await p.evaluate(() => import('/dotfind/dotfind.js').then(({ Dotfind }) => Dotfind.load('/dotfind-index-lists/', { maxVectorBytes: -1, cache: false }))
      .then(() => 'loaded', (e) => `${e.name}: ${e.message}`));
    assert.equal(budget, 'DotfindError: dotfind: maxVectorBytes must be a positive integer below 2^32 or null, not -1');
  } finally {
    await fresh.close();
  }
});

test('a host that ignores Range headers sends whole lists, and searches rank the same', async () => {
  const queries = ['how do I store key value pairs', 'spawn a thread', 'what is ownership'];
  const plain = await startServer({ root: SITE, ranges: false });
  /** The top 5 of each query on `base`'s lists index, and the status of each list response. */
  async function searchOn(base) {
    const context = await browser.newContext();
    const statuses = [];
    context.on('response', (r) => {
      if (/^\/dotfind-index-lists\/vectors\/\d+\.bin$/.test(new URL(r.url()).pathname)) statuses.push(r.status());
    });
    try {
      const p = await context.newPage();
      await p.goto(base);
      const hits = await p.evaluate(async (queries) => {
        const { Dotfind } = await import('/dotfind/dotfind.js');
        const lists = await Dotfind.load('/dotfind-index-lists/', { cache: false });
        const out = [];
        for (const q of queries) out.push((await lists.search(q, { k: 5 })).map((h) => [h.id, h.score]));
        return out;
      }, queries);
      return { hits, statuses };
    } finally {
      await context.close();
    }
  }
  try {
    const ranged = await searchOn(url);
    const whole = await searchOn(plain.url);
    assert.ok(ranged.statuses.length && ranged.statuses.every((s) => s === 206), `ranges: ${ranged.statuses}`);
    assert.ok(whole.statuses.length && whole.statuses.every((s) => s === 200), `whole lists: ${whole.statuses}`);
    // Whole lists serve every later range of theirs: fewer requests, the same ranking.
    assert.ok(whole.statuses.length < ranged.statuses.length, `${whole.statuses.length} vs ${ranged.statuses.length}`);
    assert.deepEqual(whole.hits, ranged.hits);
  } finally {
    plain.server.close();
  }
});

test('no console errors on the happy path', () => {
  assert.deepEqual(consoleErrors, []);
});

test('a first visit downloads the lexical module and one full wasm build, each once, and no index file twice', () => {
  const wasm = firstVisit.filter((u) => u.endsWith('.wasm'));
  assert.equal(wasm.length, 2, `wasm requests: ${wasm}`);
  assert.equal(wasm.filter((u) => u.includes('/pkg-lexical/')).length, 1, `wasm requests: ${wasm}`);
  const index = firstVisit.filter((u) => u.includes('/dotfind-index/'));
  assert.ok(index.length > 3, `index requests: ${index}`);
  assert.equal(new Set(index).size, index.length, `an index file fetched twice: ${index}`);
});

test('reload with the network off still searches', async () => {
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null || navigator.serviceWorker.ready, null, { timeout: 30_000 });
  await page.evaluate(() => navigator.serviceWorker.ready);
  await page.reload(); // now controlled by the service worker
  await page.waitForSelector('#loading.done', { timeout: 120_000 });
  await context.setOffline(true);
  try {
    await page.reload();
    await page.waitForSelector('#loading.done', { timeout: 120_000 });
    await page.check('input[value=dense]'); // the model's ranking: its lists were fetched online
    const hits = await results('how do I store key value pairs');
    assert.match(hits[0].href, /ch08-03-hash-maps\.html/);
    // A query needing parts no earlier query fetched says so, naming the part.
    await page.fill('#q', 'zebras giraffes and elephants on the savanna');
    await page.waitForSelector('#results li.error', { timeout: 30_000 });
    assert.match(
      await page.textContent('#results li.error'),
      /^dotfind: this query needs (token-embeddings|passages|vectors|terms)\/\d+\.bin, which is not cached and could not be fetched \(offline\?\): dotfind: cannot fetch http:\/\/127\.0\.0\.1:\d+\/dotfind-index\/\S+: /,
    );
  } finally {
    await context.setOffline(false);
  }
});

/** Serves a copy of the demo site changed by `change(dir)`, opens it in a fresh browser
 * context (empty caches) and returns what `visit(page)` returns. */
async function onChangedSite(change, visit) {
  const site = fs.mkdtempSync(path.join(os.tmpdir(), 'dotfind-site-'));
  fs.cpSync(SITE, site, { recursive: true });
  await change(site);
  const { server: s2, url: url2 } = await startServer({ root: site });
  const fresh = await browser.newContext();
  try {
    const p = await fresh.newPage();
    await p.goto(url2);
    return await visit(p);
  } finally {
    await fresh.close();
    s2.close();
    fs.rmSync(site, { recursive: true, force: true });
  }
}

/** The page's error status, once loading the demo site changed by `damage(dir)` fails. */
function loadDamagedSite(damage) {
  return onChangedSite(damage, async (p) => {
    await p.waitForSelector('#status.error', { timeout: 120_000 });
    return p.textContent('#status');
  });
}

/** Flips the last byte of `file`; returns the new bytes. */
function flipLastByte(file) {
  const bytes = fs.readFileSync(file);
  bytes[bytes.length - 1] ^= 0xff;
  fs.writeFileSync(file, bytes);
  return bytes;
}

/** Splits the demo model's graph in two parts, as the indexer does for graphs over
 * `--max-file-mib`, then swaps their contents and manifest entries: each part passes its own
 * check, the concatenated graph is not the one the bundle names. */
async function swapGraphParts(site) {
  const root = path.join(site, 'dotfind-index');
  const manifestPath = path.join(root, 'manifest.json');
  const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
  assert.deepEqual(manifest.model.graph_parts, ['model/model.graph'], 'the demo\'s query model is one file');
  const graph = fs.readFileSync(path.join(root, 'model/model.graph'));
  fs.rmSync(path.join(root, 'model/model.graph'));
  delete manifest.files['model/model.graph'];
  const parts = ['model/model.graph.000', 'model/model.graph.001'];
  const halves = [graph.subarray(0, graph.length >> 1), graph.subarray(graph.length >> 1)];
  // Swapped: the first part holds the second half.
  for (const [i, part] of parts.entries()) {
    const bytes = halves[1 - i];
    fs.writeFileSync(path.join(root, part), bytes);
    manifest.files[part] = await fileEntry(bytes);
  }
  manifest.model.graph_parts = parts;
  fs.writeFileSync(manifestPath, JSON.stringify(manifest));
}

test('graph parts that do not add up to the graph the bundle names are a checksum error', async () => {
  const status = await loadDamagedSite(swapGraphParts);
  assert.match(status, /^Keyword search only: semantic search could not load: model\.graph: xxh3-128 mismatch: manifest says [0-9a-f]{32}, file has [0-9a-f]{32}$/);
});

test('a tampered vector list on the server surfaces as a checksum error in the page', async () => {
  const status = await loadDamagedSite((site) => flipLastByte(path.join(site, 'dotfind-index/vectors/00000.bin')));
  // The last byte is a row's: the list's directory (checked against the part table) names it.
  assert.match(status, /^Keyword search only: semantic search could not load: data corruption in vectors\/00000\.bin: row \d+ does not match its checksum$/);
});

test('a damaged part table stops the page before keyword search, with the field left disabled', async () => {
  const status = await onChangedSite((site) => flipLastByte(path.join(site, 'dotfind-index/parts.bin')), async (p) => {
    await p.waitForSelector('#status.error', { timeout: 120_000 });
    assert.equal(await p.isDisabled('#q'), true);
    return p.textContent('#status');
  });
  assert.match(status, /^Could not load the search index: parts\.bin: xxh3-128 mismatch: manifest says [0-9a-f]{32}, file has [0-9a-f]{32}$/);
});
