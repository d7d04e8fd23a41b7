// The example's static file server (node server.js; no dependencies). It
// serves the pages, src/, dist/, assets/ and the installed SDK
// (node_modules/@duetcall/duet/) on 127.0.0.1:PORT (default 8081), with a
// content security policy that lets the pages reach the relay at RELAY
// (default http://localhost:8080) and nothing else. Each request is logged.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('.', import.meta.url));
const port = Number(process.env.PORT ?? 8081);
const relay = new URL(process.env.RELAY ?? 'http://localhost:8080').origin;
const types = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
};
const pages = { '/': 'index.html', '/index.html': 'index.html', '/bundled.html': 'bundled.html' };
const dirs = ['/src/', '/dist/', '/assets/', '/node_modules/@duetcall/duet/'];

// The policy: scripts and workers of this site only (plus the inline
// import map, by its hash), connections to the relay's HTTP API and
// WebSocket, remote media from the call's streams.
function csp(importMaps) {
  const ws = relay.replace(/^http/, 'ws');
  return [
    "default-src 'self'",
    `script-src 'self' ${importMaps.map((m) => `'sha256-${createHash('sha256').update(m).digest('base64')}'`).join(' ')}`,
    `connect-src ${relay} ${ws}`,
    "worker-src 'self'",
    'media-src blob: mediastream:',
    'img-src data:',
    "object-src 'none'",
    "base-uri 'none'",
  ].join('; ');
}

const server = createServer(async (req, res) => {
  const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  const file = pages[path] ?? (dirs.some((d) => path.startsWith(d)) && !path.includes('..') ? path.slice(1) : null);
  let body = null;
  if ((req.method === 'GET' || req.method === 'HEAD') && file) {
    body = await readFile(join(root, file)).catch(() => null);
  }
  console.log(`${req.method} ${path} ${body ? 200 : 404}`);
  if (!body) {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
    return;
  }
  const type = types[extname(file)] ?? 'application/octet-stream';
  const maps = type.startsWith('text/html')
    ? [...body.toString().matchAll(/<script type="importmap">([\s\S]*?)<\/script>/g)].map((m) => m[1])
    : [];
  res.writeHead(200, {
    'Content-Type': type,
    'Content-Security-Policy': csp(maps),
    'Permissions-Policy': 'microphone=(self), camera=(self)',
    'X-Content-Type-Options': 'nosniff',
    'Cache-Control': 'no-cache',
  });
  res.end(req.method === 'HEAD' ? undefined : body);
});
server.listen(port, '127.0.0.1', () => {
  console.log(`web-app: listening on http://127.0.0.1:${server.address().port}, relay ${relay}`);
});
