// Shared pieces of the browser tests: the Chromium launch the environment requires, the
// prepared model's location and small numeric helpers mirrored from tests/common.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { xxhash128 } from 'hash-wasm';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Headless Debian Chromium; playwright-core gives each launch a fresh profile dir. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ...(process.env.EXTRA_CHROMIUM_ARGS ? process.env.EXTRA_CHROMIUM_ARGS.split(' ') : []),
    ],
  });
}

export function modelDir() {
  const dir = process.env.DOTFIND_MODEL_DIR;
  if (!dir || !fs.existsSync(path.join(dir, 'int8', 'dotfind-model.json'))) {
    throw new Error('DOTFIND_MODEL_DIR must point at a prepared model: run the tests through ./build.sh test');
  }
  return dir;
}

export const readJson = (p) => JSON.parse(fs.readFileSync(p, 'utf8'));

export function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

/** Same rule as tests/common/mod.rs: mostly-[UNK] queries may reach 0.98, others 0.985. */
export function int8Floor(item) {
  const words = item.tokens.filter((t) => t !== '[CLS]' && t !== '[SEP]');
  const unknown = words.filter((t) => t === '[UNK]').length;
  return unknown * 2 >= words.length ? 0.98 : 0.985;
}

/** A file entry as dotfind records it: size and xxh3-128 (lower-case hex). */
export async function fileEntry(bytes) {
  return { bytes: bytes.length, xxh3_128: await xxhash128(bytes) };
}
