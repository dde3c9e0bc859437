// A site that already runs Pagefind: the demo site indexed by the real `pagefind` package
// (its own indexer binary and browser search) and by `dotfind index` from the same folder.
// dotfind's JS API takes Pagefind's results as the lexical side — mapped to dotfind's passages
// by URL and anchor — alone before the model is in, fused with the model's ranking after.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launchBrowser, repoRoot } from './support.mjs';
import { startServer } from '../../tools/demo/serve.mjs';

const SITE = path.join(repoRoot, 'target/demo-site');
let site, server, url, browser, page;
// The model's graph is held back until the hybrid test: the first test runs before the model.
let releaseModel;
const modelHeld = new Promise((resolve) => { releaseModel = resolve; });

before(async () => {
  assert.ok(fs.existsSync(path.join(SITE, 'dotfind-index/manifest.json')), 'target/demo-site is not built: run ./build.sh test');
  site = fs.mkdtempSync(path.join(os.tmpdir(), 'dotfind-pagefind-'));
  fs.cpSync(SITE, site, { recursive: true });
  // What a Pagefind site runs after its build: `npx pagefind --site <folder>`.
  execFileSync(path.join(repoRoot, 'node_modules/.bin/pagefind'), ['--site', site], { stdio: 'pipe' });
  ({ server, url } = await startServer({ root: site, fault: (p) => (/\/model\.graph/.test(p) ? { hold: modelHeld } : undefined) }));
  browser = await launchBrowser();
  page = await browser.newPage();
  await page.goto(url);
  await page.evaluate(async () => {
    const { Dotfind } = await import('/dotfind/dotfind.js');
    window.pagefind = await import('/pagefind/pagefind.js');
    window.engine = await Dotfind.open('/dotfind-index/');
  });
});

after(async () => {
  releaseModel();
  await browser?.close();
  server?.close();
  if (site) fs.rmSync(site, { recursive: true, force: true });
});

/** `engine.search(query, options)` in the page, `lexical` set to Pagefind's API when `withPagefind`. */
function search(query, options, withPagefind = true) {
  return page.evaluate(([query, options, withPagefind]) => window.engine
    .search(query, { ...options, ...(withPagefind ? { lexical: window.pagefind } : {}) })
    .then((hits) => hits.map((h) => ({ id: h.id, url: h.url, score: h.score, snippet: h.snippet }))),
  [query, options, withPagefind]);
}

test('before the model, Pagefind\'s ranking comes back as dotfind passages, section by section', async () => {
  const query = 'HashMap entry or_insert';
  const hits = await search(query, { k: 10, mode: 'lexical' });
  assert.ok(hits.length >= 5, `${hits.length} hits`);
  // Pagefind's own best page, and the sections it points at, in dotfind's passages.
  const pagefindTop = await page.evaluate(async (q) => {
    const { results } = await window.pagefind.search(q);
    const data = await results[0].data();
    return { url: data.url, sections: data.sub_results.map((s) => s.url) };
  }, query);
  assert.match(pagefindTop.url, /ch08-03-hash-maps\.html$/);
  assert.ok(hits[0].url.startsWith(pagefindTop.url), `${hits[0].url} is a section of ${pagefindTop.url}`);
  assert.ok(pagefindTop.sections.includes(hits[0].url), `${hits[0].url} is one of Pagefind's sections`);
  assert.ok(hits.every((h) => h.snippet.length > 20));
  for (let i = 1; i < hits.length; i += 1) assert.ok(hits[i - 1].score >= hits[i].score, 'best first');
});

test('once the model is in, hybrid fuses Pagefind\'s ranking with the model\'s', async () => {
  assert.equal(await page.evaluate(() => window.engine.info.dims), undefined, 'the model was not in for the first test');
  releaseModel();
  await page.evaluate(() => window.engine.ready);
  const query = 'how do I store key value pairs';
  const [fused, dense, own] = [
    await search(query, { k: 10, mode: 'hybrid' }),
    await search(query, { k: 10, mode: 'dense' }, false),
    await search(query, { k: 10, mode: 'hybrid' }, false),
  ];
  assert.equal(fused.length, 10);
  assert.match(fused[0].url, /ch08-03-hash-maps\.html#/);
  // Fused: not the model's list alone, nor the same as fusing with dotfind's own BM25.
  assert.notDeepEqual(fused.map((h) => h.id), dense.map((h) => h.id));
  assert.notDeepEqual(fused.map((h) => h.id), own.map((h) => h.id));
  // Every fused passage came from one of the two sides.
  const lexical = await search(query, { k: 100, mode: 'lexical' });
  const denseDeep = await search(query, { k: 100, mode: 'dense' }, false);
  const sides = new Set([...lexical, ...denseDeep].map((h) => h.id));
  assert.ok(fused.every((h) => sides.has(h.id)));
});

test('a lexical option that is not Pagefind\'s API, or with dense mode, is a named error', async () => {
  const messages = await page.evaluate(() => Promise.all([
    window.engine.search('x', { mode: 'hybrid', lexical: {} }),
    window.engine.search('x', { mode: 'dense', lexical: window.pagefind }),
  ].map((p) => p.then(() => 'searched', (e) => `${e.name}: ${e.message}`))));
  assert.deepEqual(messages, [
    'DotfindError: dotfind: lexical must be Pagefind\'s API (the module pagefind/pagefind.js), which has a search function',
    'DotfindError: dotfind: the lexical option applies to modes lexical and hybrid, not dense',
  ]);
});
