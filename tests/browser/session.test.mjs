// Long sessions and load, through the npm package in headless Chromium: 50 searches fired at
// once each get their own results; a worker that fails is reported to the calls it held and
// replaced before the next; 10,000 queries in one page keep memory flat (printed).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { openLoadedListsIndex, openPackagePage } from './support.mjs';

const BOUNDED = { timeout: 300_000 };
/** Words the long session's queries are drawn from: Rust book topics and everyday English. */
const WORDS = `ownership borrow lifetime trait generic closure iterator vector string slice hash map
error panic result option match enum struct module crate package cargo test thread channel mutex
async await future pointer box reference smart macro pattern loop variable function method
memory safety compile runtime debug release build dependency version file read write input output
network server client request response cache store key value pair list sort search find filter
water garden music travel history weather city river mountain coffee kitchen window morning
number letter color animal friend school doctor market winter summer language country`.split(/\s+/);

let served, browser, page, close, stall = false;

before(async () => {
  ({ served, browser, page, close } = await openLoadedListsIndex({
    fault: (p) => (stall && /^\/idx\/(vectors|passages)\/\d{5}\.bin$/.test(p) ? { stallAfter: 0 } : undefined),
  }));
});

after(() => close?.());

/** `n` distinct queries of three words, the same on every run. */
function queries(n) {
  const out = new Set();
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % WORDS.length;
  while (out.size < n) out.add(`${WORDS[next()]} ${WORDS[next()]} ${WORDS[next()]}`);
  return [...out];
}

test('50 searches fired at once each resolve with their own results', BOUNDED, async () => {
  const texts = queries(50);
  const { alone, together } = await page.evaluate(async (texts) => {
    const ids = (hits) => hits.map((h) => h.id);
    const alone = [];
    for (const q of texts) alone.push(ids(await window.engine.search(q, { k: 5 })));
    const together = (await Promise.all(texts.map((q) => window.engine.search(q, { k: 5 })))).map(ids);
    return { alone, together };
  }, texts);
  assert.equal(new Set(alone.map(String)).size > 10, true, 'the queries rank different passages');
  assert.deepEqual(together, alone);
});

test('a worker that fails is reported to the calls it held, and replaced before the next call', BOUNDED, async () => {
  const expected = await page.evaluate(async () => (await window.engine.search('what is ownership', { k: 5 })).map((h) => h.id));
  // A fresh page (empty caches), whose first search is held in flight by a server that
  // stalls on the parts it needs.
  const fresh = await openPackagePage(browser, served.url);
  try {
    await fresh.page.evaluate(async () => {
      window.engine = await window.Dotfind.load('/idx/');
    });
    stall = true;
    await fresh.page.evaluate(() => {
      window.held = window.engine.search('what is ownership', { k: 5 }).then(
        () => 'resolved',
        (e) => `${e.name}: ${e.message}`,
      );
    });
    await new Promise((ok) => setTimeout(ok, 500));
    const worker = fresh.page.workers().find((w) => w.url().endsWith('/search.worker.js'));
    assert.ok(worker, 'the search worker runs');
    await worker.evaluate(() => setTimeout(() => {
      throw new Error('injected failure');
    }));
    assert.equal(await fresh.page.evaluate(() => window.held), 'DotfindError: dotfind: search.worker.js failed: Uncaught Error: injected failure');
    stall = false;
    const again = await fresh.page.evaluate(async () => (await window.engine.search('what is ownership', { k: 5 })).map((h) => h.id));
    assert.deepEqual(again, expected, 'a fresh worker answers');
    const workers = fresh.page.workers().filter((w) => w.url().endsWith('/search.worker.js'));
    assert.equal(workers.length, 1, 'the failed worker was stopped');
  } finally {
    stall = false;
    await fresh.close();
  }
});

/** Resident memory of Chromium's renderer processes, MB (from /proc: no `ps` needed). */
function rendererRssMb() {
  let kb = 0;
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (!fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('--type=renderer')) continue;
      kb += Number(/^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      // the process ended meanwhile
    }
  }
  return kb / 1024;
}

test('10,000 queries in one page: wasm memory and renderer memory stay flat', BOUNDED, async (t) => {
  const texts = queries(10_000);
  const samples = [];
  for (let from = 0; from < texts.length; from += 1000) {
    const stats = await page.evaluate(async (batch) => {
      for (const q of batch) await window.engine.search(q, { k: 10 });
      return window.engine.stats();
    }, texts.slice(from, from + 1000));
    samples.push({ queries: from + 1000, wasmMb: stats.wasmBytes / 2 ** 20, listMb: stats.listBytes / 2 ** 20, rssMb: rendererRssMb() });
  }
  for (const s of samples) t.diagnostic(`after ${s.queries} queries: wasm ${s.wasmMb.toFixed(1)} MB (lists ${s.listMb.toFixed(2)} MB), renderer RSS ${s.rssMb.toFixed(0)} MB`);
  const [first, last] = [samples[0], samples.at(-1)];
  assert.equal(last.wasmMb, first.wasmMb, 'wasm memory does not grow after the first 1,000 queries');
  // RSS moves with the garbage collector's rhythm: compare the medians of each half.
  const median = (xs) => xs.map((x) => x.rssMb).sort((a, b) => a - b)[xs.length >> 1];
  const growth = median(samples.slice(5)) - median(samples.slice(0, 5));
  assert.ok(growth < 64, `renderer RSS grew ${growth.toFixed(0)} MB from the first 5,000 queries to the last`);
});
