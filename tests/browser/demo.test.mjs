// The demo page (www/) as a user meets it: it loads the model, ranks sentences as you
// type, and shows errors as text. Serves www/ with the prepared int8 bundle at /model/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { launchBrowser, repoRoot, modelDir } from './support.mjs';
import { startServer } from '../../tools/serve.mjs';

let server, url, browser, page;
const errors = [];

before(async () => {
  ({ server, url } = await startServer({
    root: path.join(repoRoot, 'www'),
    mounts: { '/model': path.join(modelDir(), 'int8') },
  }));
  browser = await launchBrowser();
  page = await browser.newPage();
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForSelector('#q:not([disabled])', { timeout: 60_000 });
});

after(async () => {
  await browser?.close();
  server?.close();
});

async function topResult(query) {
  await page.fill('#q', query);
  await page.waitForFunction((q) => document.getElementById('q').value === q && document.querySelectorAll('#results li').length > 0, query);
  await page.waitForTimeout(300); // the debounce may still re-render once
  return page.$$eval('#results li', (lis) => lis.map((li) => li.textContent));
}

test('the page reports the loaded model', async () => {
  const status = await page.textContent('#status');
  assert.match(status, /^Model sentence-transformers\/all-MiniLM-L6-v2 .*\(int8-dynamic-per-channel, mean pooling, 384 dims\) loaded in \d+ ms\.$/);
});

test('typed queries rank the matching sentence first', async () => {
  assert.match((await topResult('how do vaccines protect us'))[0], /Vaccines train the immune system/);
  assert.match((await topResult('which city is the French capital'))[0], /Paris is the capital/);
  assert.match((await topResult('tallest peak in the world'))[0], /Mount Everest/);
  assert.match(await page.textContent('#timing'), /^encoded \d+ tokens in [\d.]+ ms$/);
  fs.mkdirSync(path.join(repoRoot, 'target/screenshots'), { recursive: true });
  await page.screenshot({ path: path.join(repoRoot, 'target/screenshots/demo.png'), fullPage: true });
});

test('a query with nothing searchable shows the error as text', async () => {
  const items = await topResult('\u0001\u0002 ');
  assert.deepEqual(items, ['invalid input: query has no searchable text']);
});

test('no console errors', () => {
  assert.deepEqual(errors, []);
});
