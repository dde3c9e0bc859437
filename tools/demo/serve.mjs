#!/usr/bin/env node
// A plain static file server for the demo, the browser tests and the benchmarks: what a
// static host does (GET/HEAD, MIME types, 404s, single byte ranges of files it sends
// uncompressed, and compression as Cloudflare Pages, Netlify and GitHub Pages apply it),
// nothing more, so tests exercise real HTTP and benchmarks count
// what a visitor's connection would carry.
//
//   node tools/demo/serve.mjs --root www [--port 8080] [--mount /model=/path/to/bundle]
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
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

// Hosts compress text, JSON, JavaScript and wasm on the fly (Cloudflare's list names
// application/wasm; GitHub Pages and Netlify gzip it too) and never application/octet-stream:
// so neither does this server. Levels are on-the-fly ones (brotli 5, gzip 6), not the
// maximum a build step could spend.
const COMPRESSED_TYPES = /^(text\/|application\/(javascript|json|wasm)|image\/svg)/;
const ENCODERS = {
  br: (bytes) => zlib.brotliCompressSync(bytes, {
    params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 5, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: bytes.length },
  }),
  gzip: (bytes) => zlib.gzipSync(bytes, { level: 6 }),
};
/** Compressed bodies by file, encoding and modification, as a CDN keeps them. */
const compressedCache = new Map();

/** The encoding to send `type` with for a request's Accept-Encoding, or null. */
function chooseEncoding(type, acceptEncoding = '') {
  if (!COMPRESSED_TYPES.test(type)) return null;
  const accepted = acceptEncoding.split(',').map((e) => e.split(';')[0].trim());
  return ['br', 'gzip'].find((e) => accepted.includes(e)) ?? null;
}

function compressedBody(file, stat, encoding) {
  const key = `${encoding} ${stat.mtimeMs} ${stat.size} ${file}`;
  if (!compressedCache.has(key)) compressedCache.set(key, ENCODERS[encoding](fs.readFileSync(file)));
  return compressedCache.get(key);
}

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

/** Answers with the misbehaviour `fault` describes (see startServer). */
function answerFaultily(res, file, type, fault) {
  if (fault.status) {
    res.writeHead(fault.status, { 'content-type': 'text/plain', 'cache-control': 'no-cache' }).end(`fault ${fault.status}\n`);
    return;
  }
  const bytes = fault.body ?? fs.readFileSync(file);
  res.writeHead(200, { 'content-type': type, 'content-length': bytes.length, 'cache-control': 'no-cache' });
  if (fault.body) res.end(bytes);
  else if (fault.cutAfter !== undefined) res.write(bytes.subarray(0, fault.cutAfter), () => res.socket?.destroy());
  else if (fault.stallAfter !== undefined) res.write(bytes.subarray(0, fault.stallAfter));
}

/**
 * Starts a server on 127.0.0.1. `mounts` maps URL prefixes to folders; the longest prefix
 * wins. Resolves to { server, url, traffic }: `traffic.requests` lists every response
 * ({path, status, encoding, bodyBytes}), `traffic.wireBytes()` counts every byte written to
 * every connection (headers included), for benchmarks of what a visit downloads.
 *
 * `fault(urlPath)`, for tests of a network that fails, may answer a request for an existing
 * file with a misbehaving server instead: `{status}` (that HTTP status), `{cutAfter: n}`
 * (the full Content-Length, then n bytes and a reset connection), `{body}` (other bytes: a
 * truncated or damaged file), `{stallAfter: n}` (n bytes, then silence) or `{hold: promise}`
 * (the file as usual, once `promise` settles: a slow download the test ends when it wants).
 * `ranges: false` makes it a host that ignores `Range` headers (the whole file, 200).
 */
export function startServer({ root, port = 0, mounts = {}, fault = () => undefined, ranges = true }) {
  const sockets = new Set();
  const traffic = {
    requests: [],
    /** Bytes written to every connection since the start or the last reset(). */
    wireBytes: () => [...sockets].reduce((n, s) => n + s.bytesWritten - (s.bytesCounted ?? 0), 0),
    reset() {
      this.requests.length = 0;
      for (const s of sockets) s.bytesCounted = s.bytesWritten;
    },
  };
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
      traffic.requests.push({ path: urlPath, status: 404, encoding: null, bodyBytes: 0 });
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${urlPath}\n`);
      return;
    }
    const type = MIME[path.extname(file)] ?? 'application/octet-stream';
    const misbehave = fault(urlPath);
    if (misbehave?.hold) {
      misbehave.hold.finally(() => serveFile(req, res, file, urlPath));
      return;
    }
    if (misbehave) {
      traffic.requests.push({ path: urlPath, status: misbehave.status ?? 200, encoding: null, bodyBytes: 0, fault: misbehave });
      answerFaultily(res, file, type, misbehave);
      return;
    }
    serveFile(req, res, file, urlPath);
  });
  function serveFile(req, res, file, urlPath) {
    const stat = fs.statSync(file);
    const type = MIME[path.extname(file)] ?? 'application/octet-stream';
    const encoding = chooseEncoding(type, req.headers['accept-encoding']);
    const body = encoding ? compressedBody(file, stat, encoding) : null;
    const bodyBytes = body ? body.length : stat.size;
    // Revalidation as hosts answer it: an unchanged file costs a 304, not its bytes again.
    const etag = `"${stat.size.toString(16)}-${Math.trunc(stat.mtimeMs).toString(16)}${encoding ? `-${encoding}` : ''}"`;
    if (req.headers['if-none-match'] === etag) {
      traffic.requests.push({ path: urlPath, status: 304, encoding, bodyBytes: 0 });
      res.writeHead(304, { etag, vary: 'Accept-Encoding', 'cache-control': 'no-cache' }).end();
      return;
    }
    // One byte range of a file sent as it is stored, as static hosts answer it.
    const range = ranges && !encoding && /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range) {
      const first = Number(range[1]);
      const last = Math.min(range[2] === '' ? stat.size - 1 : Number(range[2]), stat.size - 1);
      if (first > last) {
        traffic.requests.push({ path: urlPath, status: 416, encoding, bodyBytes: 0 });
        res.writeHead(416, { 'content-range': `bytes */${stat.size}` }).end();
        return;
      }
      res.writeHead(206, {
        etag,
        'content-type': type,
        'content-length': last - first + 1,
        'content-range': `bytes ${first}-${last}/${stat.size}`,
        'cache-control': 'no-cache',
      });
      traffic.requests.push({ path: urlPath, status: 206, encoding, bodyBytes: req.method === 'HEAD' ? 0 : last - first + 1, range: `${first}-${last}` });
      if (req.method === 'HEAD') res.end();
      else fs.createReadStream(file, { start: first, end: last }).pipe(res);
      return;
    }
    res.writeHead(200, {
      etag,
      'content-type': type,
      'content-length': bodyBytes,
      'cache-control': 'no-cache',
      vary: 'Accept-Encoding',
      ...(encoding ? { 'content-encoding': encoding } : {}),
    });
    traffic.requests.push({ path: urlPath, status: 200, encoding, bodyBytes: req.method === 'HEAD' ? 0 : bodyBytes });
    if (req.method === 'HEAD') res.end();
    else if (body) res.end(body);
    else fs.createReadStream(file).pipe(res);
  }
  server.on('connection', (socket) => sockets.add(socket));
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => ok({ server, url: `http://127.0.0.1:${server.address().port}/`, traffic }));
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
