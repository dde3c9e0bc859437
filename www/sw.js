// Offline support for the demo: the page and its scripts are kept in a cache and served from
// it when the network is gone. dotfind caches what it fetches itself (the index files and
// its wasm, in the Cache API), so the service worker leaves those alone; the package's
// scripts are read from its own package.json, the one list of its files.
const SHELL = 'dotfind-demo-shell-v2';
const PAGE = ['./', './index.html', './app.js', './style.css'];

/** The package's scripts (not its wasm, which dotfind's runtime caches). */
async function packageScripts() {
  const response = await fetch('./dotfind/package.json');
  const { files } = await response.json();
  return files.filter((f) => f.endsWith('.js')).map((f) => `./dotfind/${f}`);
}

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(SHELL);
    await cache.addAll([...PAGE, './dotfind/package.json', ...(await packageScripts())]);
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil(self.clients.claim());
});

/** Requests dotfind caches on its own: the demo's indexes (dotfind-index*) and the wasm. */
function ownedByDotfind(url) {
  return /\/dotfind-index[^/]*\//.test(url.pathname) || url.pathname.endsWith('.wasm');
}

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin || ownedByDotfind(url)) {
    return;
  }
  // Network first, so a deployed update shows up; the cached copy when offline.
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(SHELL).then((c) => c.put(event.request, copy));
        }
        return response;
      })
      .catch(async () => (await caches.match(event.request, { ignoreSearch: true })) ?? Response.error()),
  );
});
