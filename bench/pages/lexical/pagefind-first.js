// A Pagefind site's search page reduced to its first result, for bench/bench_lexical.mjs:
// searches ?q= at once with Pagefind's JS API and shows the top 10 pages (their data
// fetched), recording when they are on screen, as the dotfind demo does.
const pagefind = await import('/pagefind/pagefind.js');
const query = new URLSearchParams(location.search).get('q');
const { results } = await pagefind.search(query);
const pages = await Promise.all(results.slice(0, 10).map((r) => r.data()));
const list = document.getElementById('results');
list.replaceChildren(...pages.map((p) => Object.assign(document.createElement('li'), { textContent: p.meta?.title ?? p.url })));
list.dataset.query = query;
document.body.dataset.firstResultMs = String(Math.round(performance.now()));
