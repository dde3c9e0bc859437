// Offline support for the demo: the page, its scripts and the wasm are kept in a cache and
// served from it when the network is gone. Index files are cached by dotfind's worker
// itself (Cache API, verified by their checksums), so they are left to it here.
const SHELL = 'dotfind-demo-shell-v1';
// The wasm build dotfind's worker will load, decided as dotfind/runtime.js decides it (the
// same probe: relaxed SIMD with the standard's relaxed dot product; a test keeps the two in
// step): precaching only that one saves the other build's download.
const RELAXED_SIMD_PROBE = 'AGFzbQEAAAABBQFgAAF/AwIBAAcFAQFmAAAKQAE+AP0M//////////////////////0MAQEBAQEBAQEBAQEBAQEBAf0MAAAAAAAAAAAAAAAAAAAAAP2TAv0bAAs=';
const relaxed = (() => {
  try {
    const bytes = Uint8Array.from(atob(RELAXED_SIMD_PROBE), (c) => c.charCodeAt(0));
    if (!WebAssembly.validate(bytes)) return false;
    return new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports.f() === -4;
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
