// duet's service worker: it caches the app shell (this directory's files)
// so that the app opens and can be installed offline. It never touches the
// SDK, the relay API or media: those always go to the network.

const CACHE = 'duet-shell-v1';
const SHELL = ['./', 'index.html', 'app.js', 'style.css', 'manifest.webmanifest', 'icon.svg', 'icon-192.png', 'icon-512.png'];

self.addEventListener('install', (ev) => {
  ev.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (ev) => {
  ev.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

const shellURLs = () => new Set(SHELL.map((p) => new URL(p, self.registration.scope).href));

// Network first (a new relay version is picked up at once), the cached
// shell when the network fails.
self.addEventListener('fetch', (ev) => {
  const req = ev.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  url.search = '';
  if (!shellURLs().has(url.href)) return;
  ev.respondWith(fetch(req).then((res) => {
    if (res.ok) {
      const copy = res.clone();
      caches.open(CACHE).then((c) => c.put(url.href, copy));
    }
    return res;
  }).catch(() => caches.match(url.href).then((r) => r ?? Response.error())));
});
