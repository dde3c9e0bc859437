// Pagefind's results as the lexical side of dotfind's search, for sites that already run
// Pagefind: its ranking (pages, and within each page the sections its sub-results point at)
// becomes a list of URLs with scores, which dotfind maps to its own passages by URL and anchor
// through the index's id directory (both indexes were built from the same site folder, so
// their URLs agree). Pagefind keeps doing what it does well — stemming, its chunked index —
// and dotfind adds the model's ranking.
import { DotfindError } from './errors.js';

/** Pages of Pagefind's results whose sections enter the fusion (each costs Pagefind a small fragment fetch). */
const PAGEFIND_PAGES = 20;

/**
 * Pagefind's ranking for `query`: `{keys, scores}`, best first. A page's sections score as
 * the page's score times their share of its best section's weight (Pagefind's own
 * per-location scores), so the page's best section carries the page's score.
 */
export async function pagefindRanking(pagefind, query, { pages = PAGEFIND_PAGES } = {}) {
  if (typeof pagefind?.search !== 'function') {
    throw new DotfindError('dotfind: lexical must be Pagefind\'s API (the module pagefind/pagefind.js), which has a search function');
  }
  const found = await pagefind.search(query);
  const top = (found?.results ?? []).slice(0, pages);
  const data = await Promise.all(top.map((result) => result.data()));
  const keys = [];
  const scores = [];
  data.forEach((page, i) => {
    const score = top[i].score;
    const sections = (page.sub_results ?? []).map((s) => ({
      url: s.url,
      weight: (s.weighted_locations ?? []).reduce((sum, l) => sum + l.balanced_score, 0),
    }));
    const best = Math.max(0, ...sections.map((s) => s.weight));
    if (best <= 0) {
      keys.push(page.url);
      scores.push(score);
      return;
    }
    for (const s of sections) {
      keys.push(s.url);
      scores.push((score * s.weight) / best);
    }
  });
  return { keys, scores };
}
