// The three search modes through the npm package in headless Chromium — the model's ranking,
// BM25's, and both fused — each ranking exactly as `dotfind search --mode …` does natively on
// the same index (the demo corpus cut into lists, parts fetched on demand).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { LISTS_INDEX as INDEX, openLoadedListsIndex, repoRoot } from './support.mjs';

const QUERIES = ['how do I store key value pairs', 'HashMap entry or_insert', 'what is ownership'];
let page, close;

before(async () => {
  ({ page, close } = await openLoadedListsIndex());
});

after(() => close?.());

/** `dotfind search --json` natively: the ids, best first. */
function nativeIds(query, mode, extra = []) {
  const out = execFileSync(path.join(repoRoot, 'target/release/dotfind'), ['search', '--index', INDEX, '-k', '5', '--json', '--mode', mode, ...extra, query], { encoding: 'utf8' });
  return JSON.parse(out).map((h) => h.id);
}

function browserIds(query, options) {
  return page.evaluate(async ({ query, options }) => (await window.engine.search(query, { k: 5, ...options })).map((h) => h.id), { query, options });
}

for (const mode of ['dense', 'lexical', 'hybrid']) {
  test(`mode ${mode} ranks as dotfind search --mode ${mode} does`, async () => {
    for (const q of QUERIES) assert.deepEqual(await browserIds(q, { mode }), nativeIds(q, mode), q);
  });
}

test('hybrid takes either fusion, and the fused ranking differs from both sides', async () => {
  const q = QUERIES[1];
  assert.deepEqual(await browserIds(q, { mode: 'hybrid', fusion: 'rrf' }), nativeIds(q, 'hybrid', ['--fusion', 'rrf']));
  const rankings = await Promise.all(['dense', 'lexical', 'hybrid'].map((mode) => browserIds(q, { mode })));
  assert.equal(new Set(rankings.map(String)).size, 3, `three different rankings: ${JSON.stringify(rankings)}`);
});

test('an unknown mode or fusion is a named error', async () => {
  const error = (options) => page.evaluate(
    (options) => window.engine.search('x', options).then(() => 'searched', (e) => `${e.name}: ${e.message}`),
    options,
  );
  assert.equal(await error({ mode: 'semantic' }), 'DotfindError: dotfind: mode must be one of dense, lexical, hybrid, not "semantic"');
  assert.equal(await error({ mode: 'hybrid', fusion: 'max' }), 'DotfindError: dotfind: unknown fusion "max" (expected rrf, or convex:W with W from 0 to 1)');
});
