// Offline support for the demo: the page, its scripts and the wasm are kept in a cache and
// served from it when the network is gone. Index files are cached by dotfind's worker
// itself (Cache API, verified by sha256), so they are left to it here.
const SHELL = 'dotfind-demo-shell-v1';
// The wasm build dotfind's worker will load (see dotfind/runtime.js, whose probe this is):
// precaching only that one saves the other build's 15 MB download.
const RELAXED_SIMD_PROBE = 'AGFzbQEAAAABBQFgAAF7AwIBAAo9ATsA/QwAAAAAAAAAAAAAAAAAAAAA/QwAAAAAAAAAAAAAAAAAAAAA/QwAAAAAAAAAAAAAAAAAAAAA/ZMCCw==';
const relaxed = (() => {
  try {
    return WebAssembly.validate(Uint8Array.from(atob(RELAXED_SIMD_PROBE), (c) => c.charCodeAt(0)));
  } catch {
    return false;
  }
})();
const PKG = relaxed ? './dotfind/pkg-relaxed' : './dotfind/pkg';
const PRECACHE = [
  './', './index.html', './app.js', './style.css',
  './dotfind/dotfind.js', './dotfind/dotfind-worker.js', './dotfind/dotfind-scorer.js', './dotfind/messages.js', './dotfind/runtime.js', `${PKG}/dotfind.js`, `${PKG}/dotfind_bg.wasm`,
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
