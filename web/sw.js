// The web client's service worker: keeps the app's own files (and nothing else) so the
// page opens without a network once visited. Invitations, PINs, texts and keys never
// pass through here: they live in the page's memory, and an invitation rides in the
// link's fragment, which no request carries.

const CACHE = 'intercom-app-v1';
const APP = [
  './',
  'index.html',
  'style.css',
  'app.js',
  'call.js',
  'transport.js',
  'pkg/intercom_pairing_wasm.js',
  'pkg/intercom_pairing_wasm_bg.wasm',
  'manifest.webmanifest',
  'icon-192.png',
  'icon-512.png',
];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(APP)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  // Older versions of the app go.
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  // Only the app's own files, by GET; everything else goes to the network untouched.
  if (event.request.method !== 'GET' || url.origin !== self.location.origin) return;
  event.respondWith((async () => {
    // The network first, so an updated app is used when online; the cache when not.
    try {
      const fresh = await fetch(event.request);
      if (fresh.ok && APP.some((f) => new URL(f, self.location).pathname === url.pathname)) {
        const cache = await caches.open(CACHE);
        await cache.put(url.pathname, fresh.clone());
      }
      return fresh;
    } catch (e) {
      const kept = await caches.match(url.pathname);
      if (kept) return kept;
      throw e;
    }
  })());
});
