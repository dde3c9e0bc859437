// The demo search page: loads the index with visible progress, searches as you type,
// and shows dense retrieval, BM25 and the model fused (hybrid), or BM25 top-100 re-ranked
// by the model. Corpus text is only ever inserted as text nodes.
import { Dotfind } from './dotfind/dotfind.js';

const $ = (id) => document.getElementById(id);
let engine;
let progressEvents = 0;

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function showError(message) {
  $('status').textContent = message;
  $('status').classList.add('error');
}

async function load() {
  const t0 = performance.now();
  engine = await Dotfind.load('./dotfind-index/', {
    onProgress(p) {
      progressEvents += 1;
      document.body.dataset.progressEvents = String(progressEvents);
      $('progress').max = p.total;
      $('progress').value = p.loaded;
      $('status').textContent = `Loading model and index: ${(p.loaded / 1e6).toFixed(1)} / ${(p.total / 1e6).toFixed(1)} MB`;
    },
  });
  const { passageCount, modelId } = engine.info;
  $('loading').classList.add('done');
  $('status').textContent = `Ready: ${passageCount} passages, model ${modelId}, loaded in ${Math.round(performance.now() - t0)} ms.`;
  $('q').disabled = false;
  $('q').focus();
}

function mode() {
  return document.querySelector('input[name=mode]:checked').value;
}

async function search(query) {
  const list = $('results');
  if (!query.trim()) {
    list.replaceChildren();
    $('timing').textContent = '';
    return;
  }
  const currentMode = mode();
  const t0 = performance.now();
  let hits;
  let timing;
  try {
    if (currentMode === 'dense' || currentMode === 'hybrid') {
      hits = await engine.search(query, { k: 10, mode: currentMode });
      timing = `encode ${hits.timings.encodeMs.toFixed(1)} ms · search ${hits.timings.searchMs.toFixed(1)} ms`;
    } else {
      const lexical = await engine.lexicalSearch(query, { k: 100 });
      const byId = new Map(lexical.map((h) => [h.id, h]));
      const { results } = await engine.rerank(query, lexical.map((h) => h.id));
      hits = results.slice(0, 10).map(({ id, score }) => ({ ...byId.get(id), score }));
      timing = `BM25 top ${lexical.length} re-ranked by BERT_Dot in ${(performance.now() - t0).toFixed(1)} ms`;
    }
  } catch (e) {
    list.replaceChildren(el('li', { className: 'error', textContent: e.message }));
    $('timing').textContent = '';
    return;
  }
  if ($('q').value !== query || mode() !== currentMode) return; // a newer query is on its way
  $('timing').textContent = `${timing} · ${hits.length} results`;
  // Which query and mode the list answers (tests and benchmarks wait on them).
  list.dataset.query = query;
  list.dataset.searchMode = currentMode;
  // Which ranking the list shows: the model's alone, or fused with BM25's.
  list.dataset.mode = currentMode === 'hybrid' ? 'hybrid' : 'semantic';
  list.replaceChildren(
    ...hits.map((h) =>
      el(
        'li',
        {},
        el('a', { href: h.url, textContent: h.title }),
        h.heading ? el('span', { className: 'heading', textContent: ` — ${h.heading}` }) : '',
        el('span', { className: 'score', textContent: h.score.toFixed(3) }),
        el('span', { className: 'snippet', textContent: h.snippet }),
      ),
    ),
  );
}

let timer;
function schedule() {
  clearTimeout(timer);
  timer = setTimeout(() => search($('q').value), 150);
}
$('q').addEventListener('input', schedule);
for (const radio of document.querySelectorAll('input[name=mode]')) radio.addEventListener('change', schedule);

if ('serviceWorker' in navigator) {
  navigator.serviceWorker.register('./sw.js').catch((e) => console.warn(`offline support unavailable: ${e.message}`));
}
load().catch((e) => showError(`Could not load the search index: ${e.message}`));
