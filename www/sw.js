// Offline support for the demo: the page, its scripts and the wasm are kept in a cache and
// served from it when the network is gone. Index files are cached by dotfind's worker
// itself (Cache API, verified by sha256), so they are left to it here.
const SHELL = 'dotfind-demo-shell-v1';
const PRECACHE = [
  './', './index.html', './app.js', './style.css',
  './dotfind/dotfind.js', './dotfind/dotfind-worker.js', './dotfind/pkg/dotfind.js', './dotfind/pkg/dotfind_bg.wasm',
];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(SHELL).then((c) => c.addAll(PRECACHE)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(self.clients.claim());
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin || url.pathname.includes('/dotfind-index/')) {
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
