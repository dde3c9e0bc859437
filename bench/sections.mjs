// BENCHMARKS.md's sections, each between `<!-- bench:NAME -->` markers and rewritten whole by
// the benchmark that measures it (the JS benchmarks' twin of bench/sections.py).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'BENCHMARKS.md');

/** BENCHMARKS.md as it stands. */
export function readBenchmarks() {
  return fs.existsSync(FILE) ? fs.readFileSync(FILE, 'utf8') : '# dotfind benchmarks\n';
}

/** Replaces section `name` of BENCHMARKS.md with `body` (appended where it is new). */
export function writeSection(name, body) {
  const text = readBenchmarks();
  const [start, end] = [`<!-- bench:${name} -->`, `<!-- /bench:${name} -->`];
  const block = `${start}\n${body}\n${end}`;
  fs.writeFileSync(FILE, text.includes(start)
    ? text.slice(0, text.indexOf(start)) + block + text.slice(text.indexOf(end) + end.length)
    : `${text.trimEnd()}\n\n${block}\n`);
}
