// Shared pieces of the browser tests: the Chromium launch the environment requires, the
// prepared model's location and small numeric helpers mirrored from tests/common.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { xxhash128 } from 'hash-wasm';
import { startServer } from '../../tools/demo/serve.mjs';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The Chromium binary and the flags this environment runs it with (headless added by the launcher). */
export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const chromiumArgs = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ...(process.env.EXTRA_CHROMIUM_ARGS ? process.env.EXTRA_CHROMIUM_ARGS.split(' ') : []),
];

/** Headless Debian Chromium; playwright-core gives each launch a fresh profile dir. */
export function launchBrowser() {
  return chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumArgs });
}

export function modelDir() {
  const dir = process.env.DOTFIND_MODEL_DIR;
  if (!dir || !fs.existsSync(path.join(dir, 'int8', 'dotfind-model.json'))) {
    throw new Error('DOTFIND_MODEL_DIR must point at a prepared model: run the tests through ./build.sh test');
  }
  return dir;
}

export const readJson = (p) => JSON.parse(fs.readFileSync(p, 'utf8'));

export function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

/** Same rule as tests/common/mod.rs: mostly-[UNK] queries may reach 0.98, others 0.985. */
export function int8Floor(item) {
  const words = item.tokens.filter((t) => t !== '[CLS]' && t !== '[SEP]');
  const unknown = words.filter((t) => t === '[UNK]').length;
  return unknown * 2 >= words.length ? 0.98 : 0.985;
}

/** A file entry as dotfind records it: size and xxh3-128 (lower-case hex). */
export async function fileEntry(bytes) {
  return { bytes: bytes.length, xxh3_128: await xxhash128(bytes) };
}

/**
 * A page that imports the npm package (dist/npm, at /dotfind/) under the strict policy
 * `default-src 'self'; script-src 'self' 'wasm-unsafe-eval'` and exposes `window.Dotfind`,
 * served by a real server with `mounts` (URL prefix → folder) and `fault` (see startServer).
 * Resolves to `{url, server, traffic, site, close}`.
 */
export async function startPackageSite({ mounts = {}, fault } = {}) {
  const site = fs.mkdtempSync(path.join(os.tmpdir(), 'dotfind-pkg-site-'));
  fs.writeFileSync(path.join(site, 'index.html'), `<!doctype html>
<html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'self'; script-src 'self' 'wasm-unsafe-eval'">
<title>dotfind package page</title><script type="module" src="main.js"></script></head>
<body><p id="out">loading</p></body></html>`);
  fs.writeFileSync(path.join(site, 'main.js'), "import { Dotfind } from '/dotfind/dotfind.js';\nwindow.Dotfind = Dotfind;\ndocument.getElementById('out').textContent = 'ready';\n");
  fs.writeFileSync(path.join(site, 'favicon.ico'), '');
  const { server, url, traffic } = await startServer({ root: site, mounts: { '/dotfind': path.join(repoRoot, 'dist/npm'), ...mounts }, fault });
  return {
    url, server, traffic, site,
    close() {
      server.closeAllConnections();
      server.close();
      fs.rmSync(site, { recursive: true, force: true });
    },
  };
}

/** A fresh browser context (empty caches) on a package page at `url`, ready to load. */
export async function openPackagePage(browser, url) {
  const context = await browser.newContext();
  const errors = [];
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(() => document.getElementById('out').textContent === 'ready');
  return { context, page, errors, close: () => context.close() };
}

/** The demo corpus cut into lists (built by ./build.sh test): parts fetched on demand. */
export const LISTS_INDEX = path.join(repoRoot, 'target/demo-index-lists');

/**
 * A browser on a package page with LISTS_INDEX (at /idx/) loaded as `window.engine`, served
 * with `fault` (see startServer). Resolves to `{served, browser, page, close}`; `close()`
 * ends all three.
 */
export async function openLoadedListsIndex({ fault } = {}) {
  if (!fs.existsSync(path.join(LISTS_INDEX, 'manifest.json'))) throw new Error('target/demo-index-lists missing: run ./build.sh test');
  const served = await startPackageSite({ mounts: { '/idx': LISTS_INDEX }, fault });
  const browser = await launchBrowser();
  const { page, close } = await openPackagePage(browser, served.url);
  await page.evaluate(async () => {
    window.engine = await window.Dotfind.load('/idx/');
  });
  return {
    served, browser, page,
    async close() {
      await close();
      await browser.close();
      served.close();
    },
  };
}
