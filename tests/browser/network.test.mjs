// A network that fails, met through the npm package (dist/npm) in headless Chromium: a real
// static server (tools/demo/serve.mjs) answering with 404 and 500, resetting a connection
// halfway, sending a truncated or damaged file, stalling, or going away mid-load, and a Cache
// API with no quota. Each failure is a named error or a bounded retry, never a hang or a
// wrong result, and nothing damaged is left in the cache: the next try recovers by itself.
// The page runs under the strict policy `default-src 'self'; script-src 'self'
// 'wasm-unsafe-eval'`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launchBrowser, openPackagePage, repoRoot, startPackageSite } from './support.mjs';

const INDEX = path.join(repoRoot, 'target/demo-index-lists');
/** The same corpus and model as one list: another build of the index, for redeploys. */
const REBUILT = path.join(repoRoot, 'target/demo-index');
const QUERY = 'how do I store key value pairs';
const LIST = /^\/idx\/vectors\/\d{5}\.bin$/;
const GRAPH = '/idx/model/model.graph';
let served, swap, url, traffic, browser, expected;
/** What the server does wrong now: (urlPath) => a fault (see startServer) or undefined. */
let fault = () => undefined;

before(async () => {
  if (!fs.existsSync(path.join(INDEX, 'manifest.json'))) throw new Error('target/demo-index-lists missing: run ./build.sh test');
  swap = fs.mkdtempSync(path.join(os.tmpdir(), 'dotfind-swap-'));
  fs.rmSync(swap, { recursive: true });
  served = await startPackageSite({ mounts: { '/idx': INDEX, '/swap': swap }, fault: (p) => fault(p) });
  ({ url, traffic } = served);
  browser = await launchBrowser();
  const { page, close } = await visit();
  expected = await search(page);
  await close();
  assert.equal(expected.length, 5);
});

after(async () => {
  await browser?.close();
  served?.close();
});

/** A fresh browser context (empty caches) on the test page, ready to load. */
const visit = () => openPackagePage(browser, url);

/** Loads the index in the page (once per page) and searches; the result ids, or the error. */
function search(page, { stallTimeoutMs, probe = 'exact', index = '/idx/', query = QUERY } = {}) {
  return page.evaluate(async ({ query, stallTimeoutMs, probe, index }) => {
    try {
      window.engine ??= await window.Dotfind.load(index, { stallTimeoutMs });
      const hits = await window.engine.search(query, { k: 5, probe });
      return hits.map((h) => h.id);
    } catch (e) {
      window.engine = undefined;
      return { name: e.name, message: e.message };
    }
  }, { query, stallTimeoutMs, probe, index });
}

/** Every file in the page's Cache API equals the server's copy (sha-256 of both); returns
 * their URL paths. */
async function assertCacheClean(page, { indexDir = INDEX, prefix = '/idx/' } = {}) {
  const cached = await page.evaluate(async () => {
    const out = {};
    for (const name of await caches.keys()) {
      const cache = await caches.open(name);
      for (const request of await cache.keys()) {
        const bytes = await (await cache.match(request)).arrayBuffer();
        const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
        const { pathname, search } = new URL(request.url);
        out[pathname + search] = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
      }
    }
    return out;
  });
  for (const [key, sha] of Object.entries(cached)) {
    // A byte range of a list is cached as `path?bytes=first-last`.
    const [urlPath, range] = key.split('?bytes=');
    const file = urlPath.startsWith(prefix) ? path.join(indexDir, urlPath.slice(prefix.length)) : path.join(repoRoot, 'dist/npm', urlPath.slice(9));
    assert.ok(fs.existsSync(file), `cached ${key}, which the server no longer has`);
    let bytes = fs.readFileSync(file);
    if (range) {
      const [first, last] = range.split('-').map(Number);
      bytes = bytes.subarray(first, last + 1);
    }
    assert.equal(sha, crypto.createHash('sha256').update(bytes).digest('hex'), `cached ${key}`);
  }
  return Object.keys(cached);
}

/** Runs `failing` with `bad` as the server's fault, then the same search with the fault
 * gone, in the same page: it must find the expected passages from a clean cache. */
async function failThenRecover(bad, check, options = {}) {
  const { page, errors, close } = await visit();
  try {
    fault = bad;
    traffic.reset();
    const failed = await search(page, options);
    check(failed, traffic.requests);
    fault = () => undefined;
    await assertCacheClean(page);
    assert.deepEqual(await search(page, options), expected, 'the next try recovers by itself');
    assert.ok((await assertCacheClean(page)).includes(GRAPH), 'verified files are cached');
    assert.deepEqual(errors, []);
  } finally {
    fault = () => undefined;
    await close();
  }
}

/** A failure must never hang: each test fails after this long. */
const BOUNDED = { timeout: 120_000 };

const requestsOf = (requests, re) => requests.filter((r) => re.test(r.path));

test('a missing vector list (404) is named and not retried', BOUNDED, async () => {
  await failThenRecover((p) => (LIST.test(p) ? { status: 404 } : undefined), (failed, requests) => {
    assert.equal(failed.name, 'DotfindError');
    assert.match(failed.message, /^dotfind: http:\/\/127\.0\.0\.1:\d+\/idx\/vectors\/\d{5}\.bin: HTTP 404 Not Found$/);
    const lists = requestsOf(requests, LIST).map((r) => r.path);
    assert.equal(new Set(lists).size, lists.length, `a 404 is not retried: ${lists}`);
  });
});

test('a server error (500) is retried once: a passing one is absorbed, a lasting one is named', BOUNDED, async () => {
  const seen = new Set();
  await failThenRecover((p) => {
    if (!LIST.test(p) || seen.has(p)) return undefined;
    seen.add(p);
    return { status: 500 };
  }, (result, requests) => {
    assert.deepEqual(result, expected, 'one 500 per file is absorbed by the retry');
    assert.ok(requestsOf(requests, LIST).some((r) => r.status === 500));
  });
  await failThenRecover((p) => (LIST.test(p) ? { status: 500 } : undefined), (failed, requests) => {
    assert.match(failed.message, /^dotfind: http:\/\/127\.0\.0\.1:\d+\/idx\/vectors\/\d{5}\.bin: HTTP 500 Internal Server Error$/);
    const tries = new Map();
    for (const r of requestsOf(requests, LIST)) tries.set(r.path, (tries.get(r.path) ?? 0) + 1);
    assert.ok([...tries.values()].every((n) => n <= 2), `at most one retry per file: ${[...tries]}`);
  });
});

test('a connection reset halfway through the model is named, and nothing of it is cached', BOUNDED, async () => {
  await failThenRecover((p) => (p === GRAPH ? { cutAfter: 100_000 } : undefined), (failed, requests) => {
    assert.match(failed.message, /^dotfind: http:\/\/127\.0\.0\.1:\d+\/idx\/model\/model\.graph: connection lost after \d+ bytes: /);
    assert.equal(requestsOf(requests, /model\.graph$/).length, 2, 'tried twice');
  });
});

test('a truncated or damaged vector list is a named size or checksum error', BOUNDED, async () => {
  await failThenRecover((p) => (LIST.test(p) ? { body: fs.readFileSync(path.join(INDEX, p.slice(5))).subarray(0, 100) } : undefined), (failed) => {
    assert.match(failed.message, /^data corruption in vectors\/\d{5}\.bin: 100 bytes, manifest says \d+$/);
  });
  // A list's directory is checked against the part table; its rows against the directory.
  const flipped = (at) => (p) => {
    if (!LIST.test(p)) return undefined;
    const body = Buffer.from(fs.readFileSync(path.join(INDEX, p.slice(5))));
    body[at < 0 ? body.length + at : at] ^= 0xff;
    return { body };
  };
  await failThenRecover(flipped(40), (failed) => {
    assert.match(failed.message, /^vectors\/\d{5}\.bin: xxh3-128 mismatch: /);
  });
  await failThenRecover(flipped(-1), (failed) => {
    assert.match(failed.message, /^data corruption in vectors\/\d{5}\.bin: row \d+ does not match its checksum$/);
  });
});

test('a stall timeout that is not a positive integer is a named error', BOUNDED, async () => {
  const { page, close } = await visit();
  try {
    const message = await page.evaluate(() => window.Dotfind.load('/idx/', { stallTimeoutMs: 0 }).then(() => 'loaded', (e) => `${e.name}: ${e.message}`));
    assert.equal(message, 'DotfindError: dotfind: stallTimeoutMs must be a positive integer, not 0');
  } finally {
    await close();
  }
});

test('a server that stalls mid-file is abandoned after stallTimeoutMs and tried once more', BOUNDED, async () => {
  const t0 = Date.now();
  await failThenRecover((p) => (LIST.test(p) ? { stallAfter: 20 } : undefined), (failed, requests) => {
    assert.match(failed.message, /^dotfind: http:\/\/127\.0\.0\.1:\d+\/idx\/vectors\/\d{5}\.bin: the server sent nothing for 1\.5 s \(stalled after (0|20) bytes\)$/);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed < 20_000, `bounded: ${elapsed} ms`);
    assert.ok(requestsOf(requests, LIST).length >= 2);
  }, { stallTimeoutMs: 1500 });
});

test('going offline during the first load is named; back online, the next load completes', BOUNDED, async () => {
  const { context, page, close } = await visit();
  try {
    fault = (p) => {
      if (p !== GRAPH) return undefined;
      context.setOffline(true);
      return { stallAfter: 1000 };
    };
    const failed = await search(page, { stallTimeoutMs: 1500 });
    assert.equal(failed.name, 'DotfindError');
    // Whichever file of the load meets the outage first names it.
    assert.match(failed.message, /^dotfind: (cannot fetch )?http:\/\/127\.0\.0\.1:\d+\/idx\/\S+: /);
    fault = () => undefined;
    await context.setOffline(false);
    await assertCacheClean(page);
    assert.deepEqual(await search(page), expected);
  } finally {
    fault = () => undefined;
    await close();
  }
});

test('a Cache API without quota costs only caching: load and search still work', BOUNDED, async () => {
  const { context, page, errors, close } = await visit();
  try {
    const cdp = await context.newCDPSession(page);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: new URL(url).origin, quotaSize: 4096 });
    assert.deepEqual(await search(page), expected);
    const cached = await assertCacheClean(page);
    assert.ok(!cached.includes(GRAPH), `nothing large was cached: ${cached}`);
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});

test('a call that fails on its arguments, in the worker or in wasm, makes no request', BOUNDED, async () => {
  const { page, errors, close } = await visit();
  try {
    assert.deepEqual(await search(page), expected);
    traffic.reset();
    const failures = await page.evaluate(async (query) => {
      const out = [];
      for (const call of [
        () => window.engine.search(query, { k: 5, probe: 'deep' }),
        () => window.engine.searchVector(new Float32Array(3), { k: 5 }),
      ]) {
        try {
          await call();
          out.push('resolved');
        } catch (e) {
          out.push(`${e.name}: ${e.message}`);
        }
      }
      return out;
    }, QUERY);
    assert.deepEqual(failures, [
      'DotfindError: dotfind: probe must be "default", "exact" or a positive integer, not "deep"',
      'DotfindError: model mismatch: query vector has 3 dimensions, the index has 384',
    ]);
    assert.deepEqual(traffic.requests, [], 'no request, not even for manifest.json');
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});

test('a site rebuilt mid-visit: the next search loads the new index, never mixing builds, and drops the old parts', BOUNDED, async () => {
  const other = 'what is ownership';
  fs.cpSync(REBUILT, swap, { recursive: true });
  const fresh = await visit();
  const rebuiltResults = await search(fresh.page, { index: '/swap/', query: other });
  await fresh.close();
  fs.rmSync(swap, { recursive: true });

  fs.cpSync(INDEX, swap, { recursive: true });
  const { page, errors, close } = await visit();
  try {
    assert.deepEqual(await search(page, { index: '/swap/', probe: 'default' }), await search(page, { index: '/swap/', probe: 'default' }));
    const before = await assertCacheClean(page, { indexDir: swap, prefix: '/swap/' });
    assert.ok(before.some((p) => /\/swap\/vectors\/000(0[1-9]|1\d)\.bin\?bytes=0-\d+$/.test(p)), `lists of the first build cached: ${before}`);
    // The redeploy: every file replaced, the old build's lists gone.
    fs.rmSync(swap, { recursive: true });
    fs.cpSync(REBUILT, swap, { recursive: true });
    assert.deepEqual(await search(page, { index: '/swap/', query: other, probe: 'default' }), rebuiltResults);
    const after = await assertCacheClean(page, { indexDir: swap, prefix: '/swap/' });
    assert.ok(after.includes('/swap/vectors/00000.bin'), `the new build is cached: ${after}`);
    assert.deepEqual(errors, []);
  } finally {
    await close();
    fs.rmSync(swap, { recursive: true, force: true });
  }
});
