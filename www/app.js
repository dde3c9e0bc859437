// Encoder playground: loads the bundle from ./model/, embeds what you type and ranks a
// few sentences by the bundle's similarity. Text from the corpus is set as textContent.
import { loadQueryEncoder } from './encoder.js';

const SENTENCES = [
  'Paris is the capital and largest city of France.',
  'Vaccines train the immune system to recognise a pathogen.',
  'The Rust compiler checks ownership and borrowing at compile time.',
  'WebAssembly runs compiled code in the browser at near-native speed.',
  'Photosynthesis turns light, water and carbon dioxide into sugar.',
  'The 2019 TREC Deep Learning track evaluated passage ranking.',
  'A bi-encoder embeds queries and passages separately and compares them by dot product.',
  'Mount Everest is the highest mountain above sea level.',
];

const $ = (id) => document.getElementById(id);
const dot = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0);

async function main() {
  const t0 = performance.now();
  const encoder = await loadQueryEncoder('./model/');
  const vectors = SENTENCES.map((s) => encoder.encode(s));
  const m = encoder.manifest;
  $('status').textContent = `Model ${m.model_id} (${m.quantization}, ${m.pooling} pooling, ${encoder.dims} dims) loaded in ${Math.round(performance.now() - t0)} ms.`;
  const input = $('q');
  input.disabled = false;
  input.focus();
  let timer;
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => search(encoder, vectors, input.value), 120);
  });
}

function search(encoder, vectors, query) {
  const list = $('results');
  list.replaceChildren();
  if (!query.trim()) return;
  let q;
  const t0 = performance.now();
  try {
    q = encoder.encode(query);
  } catch (e) {
    const li = document.createElement('li');
    li.className = 'error';
    li.textContent = e.message;
    list.append(li);
    return;
  }
  const encodeMs = performance.now() - t0;
  const ranked = SENTENCES.map((s, i) => ({ s, score: dot(q, vectors[i]) })).sort((a, b) => b.score - a.score);
  for (const { s, score } of ranked) {
    const li = document.createElement('li');
    const sc = document.createElement('span');
    sc.className = 'score';
    sc.textContent = score.toFixed(3);
    li.append(sc, document.createTextNode(s));
    list.append(li);
  }
  $('timing').textContent = `encoded ${encoder.tokenize(query).length} tokens in ${encodeMs.toFixed(1)} ms`;
  $('vector').textContent = `[${Array.from(q.slice(0, 8), (x) => x.toFixed(4)).join(', ')}, …] (${q.length} dims)`;
}

main().catch((e) => {
  $('status').textContent = `Could not load the model: ${e.message}`;
  $('status').className = 'error';
});
