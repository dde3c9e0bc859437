// The npm package as users get it: `npm pack` of dist/npm, installed into a fresh Vite app
// and copied next to a plain HTML page, each searching the demo index in headless Chromium.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launchBrowser, repoRoot } from './support.mjs';
import { startServer } from '../../tools/demo/serve.mjs';

const INDEX = path.join(repoRoot, 'target/demo-index');
let work, tarball, browser;

const PAGE_HTML = `<!doctype html>
<html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; img-src 'self' data:">
<link rel="icon" href="data:,"><title>dotfind package test</title>
<script type="module" src="MAIN"></script></head>
<body><p id="out">loading</p></body></html>`;

const MAIN_JS = (specifier) => `import { Dotfind } from '${specifier}';
const out = document.getElementById('out');
try {
  // Keyword search first (the lexical module), then every mode once the model is ready.
  const engine = await Dotfind.open('/dotfind-index/');
  const keyword = await engine.search('HashMap', { k: 3, mode: 'lexical' });
  await engine.ready;
  const hits = await engine.search('how do I store key value pairs', { k: 3 });
  const ranked = await engine.rerank('how do I store key value pairs', hits.map((h) => h.id).reverse());
  const vector = await engine.encode('how do I store key value pairs');
  const again = await engine.searchVector(vector, { k: 3 });
  const notText = await engine.search({ text: 'x' }).then(() => 'searched', (e) => e.name + ': ' + e.message);
  const badK = await engine.search('x', { k: 0 }).then(() => 'searched', (e) => e.message);
  out.textContent = JSON.stringify({ keyword: keyword.length, url: hits[0].url, n: hits.length, reranked: ranked.results[0].id === hits[0].id, dims: vector.length, isF32: vector instanceof Float32Array, sameByVector: again.map((h) => h.id).join() === hits.map((h) => h.id).join(), notText, badK });
} catch (e) {
  out.textContent = 'error: ' + e.message;
}
`;

before(async () => {
  assert.ok(fs.existsSync(path.join(INDEX, 'manifest.json')), 'target/demo-index missing: run ./build.sh test');
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'dotfind-npm-'));
  const packed = execFileSync('npm', ['pack', path.join(repoRoot, 'dist/npm'), '--pack-destination', work, '--json'], { encoding: 'utf8' });
  tarball = path.join(work, JSON.parse(packed)[0].filename);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

async function searchPage(root) {
  const { server, url } = await startServer({ root, mounts: { '/dotfind-index': INDEX } });
  const page = await browser.newPage();
  const errors = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(String(e)));
  try {
    await page.goto(url);
    await page.waitForFunction(() => document.getElementById('out').textContent !== 'loading', null, { timeout: 120_000 });
    const text = await page.textContent('#out');
    assert.ok(!text.startsWith('error'), text);
    assert.deepEqual(errors, []);
    return JSON.parse(text);
  } finally {
    await page.close();
    server.close();
  }
}

const EXPECTED = {
  keyword: 3, n: 3, reranked: true, dims: 384, isF32: true, sameByVector: true,
  notText: 'DotfindError: dotfind: the query must be a string, not object',
  badK: 'dotfind: k must be a positive integer, not 0',
};

test('the tarball holds the documented files', () => {
  const list = execFileSync('tar', ['tzf', tarball], { encoding: 'utf8' }).split('\n').filter(Boolean).sort();
  assert.deepEqual(list, [
    'package/README.md', 'package/builds.js', 'package/dotfind.d.ts', 'package/dotfind.js', 'package/encoder.js', 'package/errors.js', 'package/fetch.js',
    'package/index-files.js', 'package/messages.js', 'package/package.json', 'package/pagefind.js',
    'package/pkg-lexical/dotfind.d.ts', 'package/pkg-lexical/dotfind.js', 'package/pkg-lexical/dotfind_bg.wasm',
    'package/pkg-relaxed/dotfind.d.ts', 'package/pkg-relaxed/dotfind.js', 'package/pkg-relaxed/dotfind_bg.wasm',
    'package/pkg/dotfind.d.ts', 'package/pkg/dotfind.js', 'package/pkg/dotfind_bg.wasm',
    'package/runtime.js', 'package/search.worker.js',
  ]);});

test('a plain <script type="module"> page searches with the unpacked package', async () => {
  const site = path.join(work, 'plain');
  fs.mkdirSync(site);
  execFileSync('tar', ['xzf', tarball, '-C', site]);
  fs.renameSync(path.join(site, 'package'), path.join(site, 'dotfind'));
  fs.writeFileSync(path.join(site, 'index.html'), PAGE_HTML.replace('MAIN', 'main.js'));
  fs.writeFileSync(path.join(site, 'main.js'), MAIN_JS('./dotfind/dotfind.js'));
  const result = await searchPage(site);
  assert.match(result.url, /^\/book\/ch08-03-hash-maps\.html#/);
  assert.deepEqual({ ...result, url: undefined }, { ...EXPECTED, url: undefined });
});

test('a package built without the relaxed SIMD build (./build.sh demo on a fresh machine) runs the plain one', async () => {
  const site = path.join(work, 'plain-only');
  fs.mkdirSync(site);
  execFileSync('tar', ['xzf', tarball, '-C', site]);
  const pkg = path.join(site, 'package');
  fs.rmSync(path.join(pkg, 'pkg-relaxed'), { recursive: true });
  fs.writeFileSync(path.join(pkg, 'builds.js'), "export const FULL_BUILDS = ['simd'];\n");
  fs.renameSync(pkg, path.join(site, 'dotfind'));
  fs.writeFileSync(path.join(site, 'index.html'), PAGE_HTML.replace('MAIN', 'main.js'));
  fs.writeFileSync(path.join(site, 'main.js'), `import { Dotfind } from './dotfind/dotfind.js';
const out = document.getElementById('out');
const engine = await Dotfind.load('/dotfind-index/');
const hits = await engine.search('how do I store key value pairs', { k: 3 });
const forced = await Dotfind.load('/dotfind-index/', { wasm: 'relaxed' }).then(() => 'loaded', (e) => e.message);
out.textContent = JSON.stringify({ wasmBuild: engine.info.wasmBuild, url: hits[0].url, forced });
`);
  const result = await searchPage(site);
  assert.equal(result.wasmBuild, 'simd');
  assert.match(result.url, /^\/book\/ch08-03-hash-maps\.html#/);
  assert.equal(result.forced, 'dotfind: this copy of the package was built without the relaxed SIMD build; use wasm: "simd" or "auto"');
});

test('a fresh Vite app installs the tarball, builds and searches', async () => {
  const app = path.join(work, 'vite-app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  execFileSync('npm', ['install', tarball, '--no-audit', '--no-fund', '--loglevel=error'], { cwd: app });
  fs.writeFileSync(path.join(app, 'index.html'), PAGE_HTML.replace('MAIN', '/main.js'));
  fs.writeFileSync(path.join(app, 'main.js'), MAIN_JS('dotfind'));
  fs.writeFileSync(
    path.join(app, 'vite.config.js'),
    "export default { optimizeDeps: { exclude: ['dotfind'] }, worker: { format: 'es' }, logLevel: 'warn' };\n",
  );
  execFileSync(process.execPath, [path.join(repoRoot, 'node_modules/vite/bin/vite.js'), 'build'], { cwd: app, stdio: 'pipe' });
  const emitted = fs.readdirSync(path.join(app, 'dist/assets'));
  assert.ok(emitted.some((f) => f.endsWith('.wasm')), `wasm emitted: ${emitted}`);
  assert.ok(emitted.some((f) => f.startsWith('search.worker')), `worker emitted: ${emitted}`);
  const result = await searchPage(path.join(app, 'dist'));
  assert.match(result.url, /^\/book\/ch08-03-hash-maps\.html#/);
  assert.deepEqual({ ...result, url: undefined }, { ...EXPECTED, url: undefined });
});

