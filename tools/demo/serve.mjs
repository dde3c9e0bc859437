#!/usr/bin/env node
// A plain static file server for the demo and the browser tests: what any static host
// does (GET/HEAD, MIME types, 404s), nothing more, so tests exercise real HTTP.
//
//   node tools/demo/serve.mjs --root www [--port 8080] [--mount /model=/path/to/bundle]
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.bin': 'application/octet-stream',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.txt': 'text/plain; charset=utf-8',
};

/** Resolves a URL path to a file under one of the mounts, refusing `..` escapes. */
function resolve(mounts, urlPath) {
  let decoded;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  for (const [prefix, dir] of mounts) {
    if (decoded === prefix || decoded.startsWith(prefix.endsWith('/') ? prefix : prefix + '/')) {
      const rel = decoded.slice(prefix.length).replace(/^\/+/, '');
      const file = path.resolve(dir, rel);
      if (file !== dir && !file.startsWith(dir + path.sep)) return null;
      return file;
    }
  }
  return null;
}

/**
 * Starts a server on 127.0.0.1. `mounts` maps URL prefixes to folders; the longest prefix
 * wins. Resolves to { server, url }.
 */
export function startServer({ root, port = 0, mounts = {} }) {
  const table = Object.entries({ ...mounts, '/': root })
    .map(([p, d]) => [p, path.resolve(d)])
    .sort((a, b) => b[0].length - a[0].length);
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    const urlPath = new URL(req.url, 'http://localhost').pathname;
    let file = resolve(table, urlPath);
    if (file && fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'index.html');
    if (!file || !fs.existsSync(file)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${urlPath}\n`);
      return;
    }
    const size = fs.statSync(file).size;
    res.writeHead(200, {
      'content-type': MIME[path.extname(file)] ?? 'application/octet-stream',
      'content-length': size,
      'cache-control': 'no-cache',
    });
    if (req.method === 'HEAD') res.end();
    else fs.createReadStream(file).pipe(res);
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => ok({ server, url: `http://127.0.0.1:${server.address().port}/` }));
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const opts = { root: '.', port: Number(process.env.PORT ?? 8080), mounts: {} };
  for (let i = 0; i < args.length; i += 2) {
    const [flag, value] = [args[i], args[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === '--root') opts.root = value;
    else if (flag === '--port') opts.port = Number(value);
    else if (flag === '--mount') {
      const eq = value.indexOf('=');
      if (eq < 1) throw new Error(`--mount takes /prefix=DIR, got ${value}`);
      opts.mounts[value.slice(0, eq)] = value.slice(eq + 1);
    } else throw new Error(`unknown option ${flag}`);
  }
  const { url } = await startServer(opts);
  console.log(`dotfind: serving ${path.resolve(opts.root)} at ${url}`);
}
