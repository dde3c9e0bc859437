// The demo search page. Keyword (BM25) results come first: the search field opens as soon as
// the small lexical module and the index's part table are in, long before the model. When
// the model is ready, the results on screen are upgraded in place to the chosen ranking
// (hybrid by default: the model's and BM25's fused; or dense retrieval, or BM25's top 100
// re-ranked by the model) — but never while the pointer or focus is on the list, so it
// does not move under the visitor's hand. Corpus text is only ever inserted as text nodes.
import { Dotfind } from './dotfind/dotfind.js';

const $ = (id) => document.getElementById(id);
let engine;
let modelReady = false;
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
  engine = await Dotfind.open('./dotfind-index/', {
    onProgress(p) {
      progressEvents += 1;
      document.body.dataset.progressEvents = String(progressEvents);
      $('progress').max = p.total;
      $('progress').value = p.loaded;
      $('status').textContent = `Keyword search ready; loading the model: ${(p.loaded / 1e6).toFixed(1)} / ${(p.total / 1e6).toFixed(1)} MB`;
    },
  });
  $('status').textContent = `Keyword search ready in ${Math.round(performance.now() - t0)} ms; loading the model…`;
  $('q').disabled = false;
  $('q').focus();
  // A search linked to (?q=…) runs at once, before the model starts loading.
  const linked = new URLSearchParams(location.search).get('q');
  if (linked) {
    $('q').value = linked;
    search(linked);
  }
  const { passageCount, modelId } = await engine.ready;
  modelReady = true;
  $('loading').classList.add('done');
  $('status').textContent = `Ready: ${passageCount} passages, model ${modelId}, loaded in ${Math.round(performance.now() - t0)} ms.`;
  if ($('q').value.trim()) search($('q').value); // the keyword results on screen, upgraded
}

function mode() {
  return document.querySelector('input[name=mode]:checked').value;
}

/** The ranking to show now: the chosen one once the model is in, BM25's before. */
async function rank(query, chosen) {
  const t0 = performance.now();
  if (!modelReady) {
    const hits = await engine.search(query, { k: 10, mode: 'lexical' });
    return { hits, shown: 'lexical', timing: `BM25 in ${(performance.now() - t0).toFixed(1)} ms (model loading)` };
  }
  if (chosen === 'dense' || chosen === 'hybrid') {
    const hits = await engine.search(query, { k: 10, mode: chosen });
    return { hits, shown: chosen === 'hybrid' ? 'hybrid' : 'semantic', timing: `encode ${hits.timings.encodeMs.toFixed(1)} ms · search ${hits.timings.searchMs.toFixed(1)} ms` };
  }
  const lexical = await engine.lexicalSearch(query, { k: 100 });
  const byId = new Map(lexical.map((h) => [h.id, h]));
  const { results } = await engine.rerank(query, lexical.map((h) => h.id));
  const hits = results.slice(0, 10).map(({ id, score }) => ({ ...byId.get(id), score }));
  return { hits, shown: 'semantic', timing: `BM25 top ${lexical.length} re-ranked by BERT_Dot in ${(performance.now() - t0).toFixed(1)} ms` };
}

/** Whether the visitor's pointer or focus is on the results list. */
function inUse(list) {
  return list.matches(':hover') || list.contains(document.activeElement);
}

/** A render waiting for the pointer and focus to leave the list. */
let deferred = null;
function flushDeferred() {
  const list = $('results');
  if (deferred && !inUse(list)) {
    const render = deferred;
    deferred = null;
    render();
  }
}
$('results').addEventListener('pointerleave', () => setTimeout(flushDeferred));
$('results').addEventListener('focusout', () => setTimeout(flushDeferred));

async function search(query) {
  const list = $('results');
  if (!query.trim()) {
    deferred = null;
    list.replaceChildren();
    delete list.dataset.query;
    $('timing').textContent = '';
    return;
  }
  const chosen = mode();
  let ranked;
  try {
    ranked = await rank(query, chosen);
  } catch (e) {
    list.replaceChildren(el('li', { className: 'error', textContent: e.message }));
    $('timing').textContent = '';
    return;
  }
  if ($('q').value !== query || mode() !== chosen) return; // a newer query is on its way
  if (ranked.shown === 'lexical' && modelReady) return search(query); // the model came meanwhile
  const render = () => {
    const { hits, shown, timing } = ranked;
    $('timing').textContent = `${timing} · ${hits.length} results`;
    // Which query and mode the list answers (tests and benchmarks wait on them), and which
    // ranking it shows: BM25's alone, the model's, or both fused.
    list.dataset.query = query;
    list.dataset.searchMode = chosen;
    list.dataset.mode = shown;
    // Milliseconds from navigation to the first results shown (benchmarks read it).
    document.body.dataset.firstResultMs ??= String(Math.round(performance.now()));
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
  };
  // The same query, now better ranked: not while the visitor points at or tabs through it.
  const upgrade = list.dataset.query === query && list.dataset.mode === 'lexical' && ranked.shown !== 'lexical';
  deferred = null;
  if (upgrade && inUse(list)) deferred = render;
  else render();
}

let timer;
function schedule() {
  clearTimeout(timer);
  timer = setTimeout(() => search($('q').value), 150);
}
$('q').addEventListener('input', schedule);
for (const radio of document.querySelectorAll('input[name=mode]')) radio.addEventListener('change', schedule);

/** Offline support, set up once the model is in: its install fetches the page's scripts
 * again, which would only compete with a visit's first results. */
function registerServiceWorker() {
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('./sw.js').catch((e) => console.warn(`offline support unavailable: ${e.message}`));
  }
}
load()
  .catch((e) => showError(engine
    ? `Keyword search only: semantic search could not load: ${e.message}`
    : `Could not load the search index: ${e.message}`))
  .finally(registerServiceWorker);
