//! [`SearchIndex`]: an index whose parts arrive on demand. A query scores the lists whose
//! centroids score highest (IVF), then decodes the records of the hits shown; each step
//! first says which parts it needs ([`SearchIndex::missing_lists`],
//! [`SearchIndex::missing_fragments`]), so the browser fetches only those. Natively every
//! part is at hand and the same code runs.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::dense::IndexVectors;
use super::hybrid::{fuse, hybrid_depth, Fusion};
use super::lexical::{query_keys, LexicalPostings};
use super::text::snippet;
use super::top_k::Hit;
use crate::error::{Error, Result};
#[cfg(doc)]
use crate::index::LoadedIndex;
use crate::index::{
    EncodedRow, IndexManifest, Part, PartTable, PassageRecord, PassageShard, VectorShard,
};

/// A search result as every front end shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResult {
    pub id: String,
    pub url: String,
    pub title: String,
    pub heading: String,
    /// The passage text cut at a word boundary.
    pub snippet: String,
    pub score: f32,
}

/// Re-ranked candidates (id, score; best first) and the ids the index does not know.
pub type Reranked = (Vec<(String, f32)>, Vec<String>);

/// How many lists a search scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The index's own depth (`layout.probe`), chosen by the indexer for its size.
    Default,
    /// This many lists (clamped to the index's list count).
    Lists(usize),
    /// Every list: the exact scan, for comparison.
    Exact,
}

/// An index ready to search, holding the parts added so far.
#[derive(Debug)]
pub struct SearchIndex {
    pub manifest: IndexManifest,
    parts: PartTable,
    /// One row per list; `None` for an index of one list.
    centroids: Option<IndexVectors>,
    vectors: IndexVectors,
    lists_loaded: Vec<bool>,
    /// When each list was last probed (a count of probes): what eviction goes by.
    list_last_probed: Vec<AtomicU64>,
    probes: AtomicU64,
    /// Bytes of list files held, and the most to hold (`None`: no limit, as natively).
    list_bytes_held: u64,
    list_budget: Option<u64>,
    fragments: Vec<Option<PassageShard>>,
    /// The postings of the term buckets added.
    lexical: LexicalPostings,
    terms_loaded: Vec<bool>,
    /// Passage id / document id / URL → passage numbers, from the id buckets added.
    ids: HashMap<String, Vec<usize>>,
    ids_loaded: Vec<bool>,
}

impl SearchIndex {
    /// Starts from a loaded index (see [`LoadedIndex`]) and adds the parts it came with,
    /// each verified.
    pub fn new(
        manifest: IndexManifest,
        parts: PartTable,
        centroids: Option<VectorShard>,
        parts_at_hand: Vec<(Part, Vec<u8>)>,
    ) -> Result<Self> {
        let dims = manifest.model.dims;
        let centroids = match centroids {
            Some(shard) => Some(IndexVectors::new(dims, vec![(0, shard)])?),
            None => None,
        };
        let id_buckets = parts.ids.len();
        let term_buckets = parts.terms.len();
        let lexical = LexicalPostings::new(manifest.passage_count);
        let mut index = SearchIndex {
            vectors: IndexVectors::empty(dims),
            lists_loaded: vec![false; parts.lists.len()],
            list_last_probed: (0..parts.lists.len()).map(|_| AtomicU64::new(0)).collect(),
            probes: AtomicU64::new(0),
            list_bytes_held: 0,
            list_budget: None,
            fragments: vec![None; parts.fragments.len()],
            manifest,
            parts,
            centroids,
            lexical,
            terms_loaded: vec![false; term_buckets],
            ids: HashMap::new(),
            ids_loaded: vec![false; id_buckets],
        };
        for (part, bytes) in parts_at_hand {
            index.add(part, &bytes)?;
        }
        Ok(index)
    }

    pub fn len(&self) -> usize {
        self.manifest.passage_count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds the part file `path` (as `missing_*` name it), verified against the part table.
    pub fn add_part(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        let part = self.parts.part_at(path)?;
        self.add(part, bytes)
    }

    fn add(&mut self, part: Part, bytes: &[u8]) -> Result<()> {
        let path = part.path();
        let Some(entry) = self.parts.entry(part) else {
            return Err(Error::InvalidInput(format!(
                "{path}: not a part of this index"
            )));
        };
        entry.file.verify(&path, bytes)?;
        let count = entry.count;
        let mismatch = |what: &str, found: usize| {
            crate::index::corrupt(
                &path,
                format!("holds {found} {what}, the part table says {count}"),
            )
        };
        match part {
            Part::List(i) if !self.lists_loaded[i] => {
                let shard = VectorShard::from_bytes(&path, bytes)?;
                if shard.encoding != self.manifest.vector_encoding {
                    return Err(crate::index::corrupt(
                        &path,
                        format!(
                            "encoded as {:?}, manifest says {:?}",
                            shard.encoding, self.manifest.vector_encoding
                        ),
                    ));
                }
                if shard.count != count {
                    return Err(mismatch("vectors", shard.count));
                }
                self.vectors.insert(self.parts.list_range(i).start, shard)?;
                self.lists_loaded[i] = true;
                self.list_bytes_held += entry.file.bytes;
                self.evict_lists();
            }
            Part::Fragment(j) if self.fragments[j].is_none() => {
                let shard = PassageShard::from_bytes(&path, bytes)?;
                if shard.len() != count {
                    return Err(mismatch("passages", shard.len()));
                }
                self.fragments[j] = Some(shard);
            }
            Part::Ids(b) if !self.ids_loaded[b] => {
                let before = self.ids.len();
                crate::index::ids::read_bucket(&path, bytes, self.len(), &mut self.ids)?;
                if self.ids.len() - before != count {
                    return Err(mismatch("keys", self.ids.len() - before));
                }
                self.ids_loaded[b] = true;
            }
            Part::Terms(b) if !self.terms_loaded[b] => {
                let terms = self.lexical.add_bucket(&path, bytes)?;
                if terms != count {
                    return Err(mismatch("terms", terms));
                }
                self.terms_loaded[b] = true;
            }
            _ => {} // added before: the bytes were the same (verified above)
        }
        Ok(())
    }

    /// Holds at most `bytes` of vector lists: beyond it, adding a list drops the lists probed
    /// longest ago (never those of the current search), to be fetched again — from the
    /// browser's cache — when a query needs them. Bounds a long session's memory on an index
    /// larger than a tab should hold.
    pub fn set_list_budget(&mut self, bytes: Option<u64>) {
        self.list_budget = bytes;
        self.evict_lists();
    }

    /// Bytes of vector lists held now.
    pub fn list_bytes_held(&self) -> u64 {
        self.list_bytes_held
    }

    fn evict_lists(&mut self) {
        let Some(budget) = self.list_budget else {
            return;
        };
        if self.list_bytes_held <= budget {
            return;
        }
        let now = self.probes.load(Ordering::Relaxed);
        let mut candidates: Vec<(u64, usize)> = (0..self.lists_loaded.len())
            .filter(|&i| self.lists_loaded[i])
            .map(|i| (self.list_last_probed[i].load(Ordering::Relaxed), i))
            .filter(|&(last, _)| last < now)
            .collect();
        candidates.sort_unstable();
        for (_, i) in candidates {
            if self.list_bytes_held <= budget {
                break;
            }
            self.vectors.remove(self.parts.list_range(i).start);
            self.lists_loaded[i] = false;
            let bytes = self.parts.lists[i].file.bytes;
            self.list_bytes_held = self.list_bytes_held.saturating_sub(bytes);
        }
    }

    /// Parts every query reads, worth fetching with the index: the lists when a query scans
    /// them all, the passages when they are one fragment. Each with its size, for progress.
    pub fn parts_every_query_needs(&self) -> Vec<(String, u64)> {
        let mut parts = Vec::new();
        if self.manifest.layout.probe >= self.parts.lists.len() {
            parts.extend((0..self.parts.lists.len()).map(Part::List));
        }
        if self.parts.fragments.len() == 1 {
            parts.push(Part::Fragment(0));
        }
        parts
            .into_iter()
            .filter(|&p| !self.is_loaded(p))
            .map(|p| (p.path(), self.parts.entry(p).map_or(0, |e| e.file.bytes)))
            .collect()
    }

    fn is_loaded(&self, part: Part) -> bool {
        match part {
            Part::List(i) => self.lists_loaded.get(i).copied().unwrap_or(false),
            Part::Fragment(j) => self.fragments.get(j).is_some_and(Option::is_some),
            Part::Ids(b) => self.ids_loaded.get(b).copied().unwrap_or(false),
            Part::Terms(b) => self.terms_loaded.get(b).copied().unwrap_or(false),
        }
    }

    /// An error naming the first of `parts` not added yet, if one is not.
    fn require_loaded(&self, parts: &[Part]) -> Result<()> {
        match parts.iter().find(|&&p| !self.is_loaded(p)) {
            Some(part) => Err(Error::PartNotLoaded { file: part.path() }),
            None => Ok(()),
        }
    }

    /// The files of `parts` not added yet, each once, in order.
    fn missing(&self, parts: impl IntoIterator<Item = Part>) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        parts
            .into_iter()
            .filter(|&part| !self.is_loaded(part) && seen.insert(part))
            .map(Part::path)
            .collect()
    }

    /// Marks `lists` as probed by the step under way, so that adding the missing ones never
    /// evicts these (see `set_list_budget`).
    fn mark_probed(&self, lists: &[usize]) {
        let now = self.probes.fetch_add(1, Ordering::Relaxed) + 1;
        for &i in lists {
            self.list_last_probed[i].store(now, Ordering::Relaxed);
        }
    }

    /// The lists a search of `query` scans, best centroid first.
    pub fn probed_lists(&self, query: &[f32], probe: Probe) -> Result<Vec<usize>> {
        let lists = self.parts.lists.len();
        let depth = match probe {
            Probe::Default => self.manifest.layout.probe,
            Probe::Lists(n) => n.max(1),
            Probe::Exact => lists,
        }
        .min(lists);
        match &self.centroids {
            Some(centroids) if depth < lists => Ok(centroids
                .search_ranges(query, depth, std::slice::from_ref(&(0..lists)))?
                .into_iter()
                .map(|h| h.passage)
                .collect()),
            _ => Ok((0..lists).collect()),
        }
    }

    /// The list files a search of `query` needs that were not added yet. Marks the lists
    /// probed, so that adding the missing ones never evicts these.
    pub fn missing_lists(&self, query: &[f32], probe: Probe) -> Result<Vec<String>> {
        let lists = self.probed_lists(query, probe)?;
        self.mark_probed(&lists);
        Ok(self.missing(lists.into_iter().map(Part::List)))
    }

    /// The passage ranges of `lists`, each checked to be loaded.
    fn loaded_ranges(&self, lists: &[usize]) -> Result<Vec<Range<usize>>> {
        self.require_loaded(&lists.iter().map(|&i| Part::List(i)).collect::<Vec<_>>())?;
        Ok(lists.iter().map(|&i| self.parts.list_range(i)).collect())
    }

    /// Top-k passages for a query vector among the lists `probe` selects.
    pub fn search(&self, query: &[f32], k: usize, probe: Probe) -> Result<Vec<Hit>> {
        let ranges = self.loaded_ranges(&self.probed_lists(query, probe)?)?;
        self.vectors.search_ranges(query, k, &ranges)
    }

    /// Scores of every passage in the lists `probe` selects, as `visit(first passage, scores)`
    /// runs (batch evaluation keeps a document's best passage).
    pub fn score_probed(
        &self,
        query: &[f32],
        probe: Probe,
        visit: impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        let ranges = self.loaded_ranges(&self.probed_lists(query, probe)?)?;
        self.vectors.score_ranges(query, &ranges, visit)
    }

    /// Passage `n`'s row as stored (its list must be loaded): what a re-index copies.
    pub fn stored_row(&self, n: usize) -> Result<EncodedRow> {
        let list = self
            .parts
            .list_of(n)
            .ok_or_else(|| Error::InvalidInput(format!("no passage {n}")))?;
        self.loaded_ranges(&[list])?;
        self.vectors
            .row(n)
            .ok_or_else(|| Error::InvalidInput(format!("no passage {n}")))
    }

    /// Passage `n`'s stored vector (its list must be loaded).
    pub fn vector(&self, n: usize) -> Result<Vec<f32>> {
        Ok(self.stored_row(n)?.decode(self.manifest.vector_encoding))
    }

    /// The fragment files holding `passages` that were not added yet.
    pub fn missing_fragments(&self, passages: &[usize]) -> Vec<String> {
        self.missing(
            passages
                .iter()
                .filter_map(|&n| self.parts.fragment_of(n))
                .map(Part::Fragment),
        )
    }

    /// Decodes passage `n`'s record.
    pub fn record(&self, n: usize) -> Result<PassageRecord> {
        let j = self
            .parts
            .fragment_of(n)
            .ok_or_else(|| Error::InvalidInput(format!("no passage {n}")))?;
        match &self.fragments[j] {
            Some(shard) => shard.record(n - self.parts.fragment_range(j).start),
            None => Err(Error::PartNotLoaded {
                file: Part::Fragment(j).path(),
            }),
        }
    }

    /// What front ends show for `hit` (its fragment added), its snippet at most
    /// `snippet_chars` characters.
    pub fn result(&self, hit: &Hit, snippet_chars: usize) -> Result<SearchResult> {
        let r = self.record(hit.passage)?;
        Ok(SearchResult {
            snippet: snippet(&r.text, snippet_chars),
            id: r.id,
            url: r.url,
            title: r.title,
            heading: r.heading,
            score: hit.score,
        })
    }

    /// Every record, in passage order (for batch evaluation and id lookups).
    pub fn records(&self) -> Result<Vec<PassageRecord>> {
        (0..self.len()).map(|n| self.record(n)).collect()
    }

    /// The term bucket of each of the query's distinct terms.
    fn term_buckets_of(&self, keys: &[u64]) -> Vec<Part> {
        let buckets = self.terms_loaded.len();
        keys.iter()
            .map(|&key| Part::Terms(crate::index::terms::bucket_of(key, buckets)))
            .collect()
    }

    /// The term buckets a lexical search of `query` needs that were not added yet.
    pub fn missing_term_buckets(&self, query: &str) -> Vec<String> {
        self.missing(self.term_buckets_of(&query_keys(query)))
    }

    /// BM25 top-k over the passages' text (title, heading and body): the lexical side of
    /// hybrid search, and a first stage for re-ranking. Needs the buckets of the query's
    /// terms (`missing_term_buckets`), nothing else.
    pub fn lexical_search(&self, query: &str, k: usize) -> Result<Vec<Hit>> {
        let keys = query_keys(query);
        self.require_loaded(&self.term_buckets_of(&keys))?;
        Ok(self.lexical.search(&keys, k))
    }

    /// Top-k passages by the query vector and by BM25 on the query text, fused: each side's
    /// best `hybrid_depth(k)` passages enter the fusion. Needs the lists the vector probes
    /// and the query's term buckets.
    pub fn hybrid_search(
        &self,
        vector: &[f32],
        text: &str,
        k: usize,
        probe: Probe,
        fusion: Fusion,
    ) -> Result<Vec<Hit>> {
        let lexical = self.lexical_search(text, hybrid_depth(k))?;
        self.fuse_with(vector, &lexical, k, probe, fusion)
    }

    /// Top-k passages by the query vector and a lexical ranking given (`hybrid_depth(k)`
    /// hits, best first: BM25's, or another engine's as `candidate_hits` maps it), fused.
    /// Needs the lists the vector probes.
    pub fn fuse_with(
        &self,
        vector: &[f32],
        lexical: &[Hit],
        k: usize,
        probe: Probe,
        fusion: Fusion,
    ) -> Result<Vec<Hit>> {
        let dense = self.search(vector, hybrid_depth(k), probe)?;
        Ok(fuse(&dense, lexical, fusion, k))
    }

    /// The id bucket each candidate's key sits in.
    fn buckets_of(&self, candidates: &[String]) -> Vec<Part> {
        let buckets = self.ids_loaded.len();
        candidates
            .iter()
            .map(|id| Part::Ids(crate::index::ids::bucket_of(id, buckets)))
            .collect()
    }

    /// The id buckets naming `candidates` (passage ids, document ids or URLs) that were not
    /// added yet.
    pub fn missing_id_buckets(&self, candidates: &[String]) -> Vec<String> {
        self.missing(self.buckets_of(candidates))
    }

    /// Another engine's ranking — `candidates` (passage ids, document ids or URLs, best
    /// first) with its `scores` — as the `k` best passage hits: each passage a candidate
    /// names scores as the best candidate naming it; unknown candidates are skipped. Lets a
    /// site's own lexical search (Pagefind's results, by URL and anchor) be the lexical side
    /// of a hybrid search. Needs the candidates' id buckets (`missing_id_buckets`).
    pub fn candidate_hits(
        &self,
        candidates: &[String],
        scores: &[f32],
        k: usize,
    ) -> Result<Vec<Hit>> {
        if candidates.len() != scores.len() {
            return Err(Error::InvalidInput(format!(
                "{} candidates but {} scores",
                candidates.len(),
                scores.len()
            )));
        }
        self.require_loaded(&self.buckets_of(candidates))?;
        let mut best: HashMap<usize, f32> = HashMap::new();
        for (key, &score) in candidates.iter().zip(scores) {
            if !score.is_finite() {
                return Err(Error::InvalidInput(format!(
                    "candidate {key:?} has score {score}"
                )));
            }
            for &n in self.ids.get(key.as_str()).into_iter().flatten() {
                let entry = best.entry(n).or_insert(score);
                *entry = entry.max(score);
            }
        }
        let hits = best
            .into_iter()
            .map(|(passage, score)| Hit { passage, score })
            .collect();
        Ok(super::top_k::top_k(hits, k))
    }

    /// The parts re-ranking `candidates` needs that were not added yet: the id buckets
    /// naming them first, then the lists holding their passages. Ask again once those are
    /// in, until nothing is missing.
    pub fn missing_for_rerank(&self, candidates: &[String]) -> Result<Vec<String>> {
        let buckets = self.missing_id_buckets(candidates);
        if !buckets.is_empty() {
            return Ok(buckets);
        }
        let lists = self.lists_of(&self.candidate_passages(candidates));
        self.mark_probed(&lists);
        Ok(self.missing(lists.into_iter().map(Part::List)))
    }

    /// The passages the known candidates name (their id buckets must be added).
    fn candidate_passages(&self, candidates: &[String]) -> Vec<usize> {
        candidates
            .iter()
            .filter_map(|id| self.ids.get(id.as_str()))
            .flatten()
            .copied()
            .collect()
    }

    /// The list holding each of `passages`.
    fn lists_of(&self, passages: &[usize]) -> Vec<usize> {
        passages
            .iter()
            .filter_map(|&n| self.parts.list_of(n))
            .collect()
    }

    /// Orders candidate ids (passage ids, document ids or URLs, e.g. a lexical engine's top
    /// 100) by the query's score. A document id scores as its best passage. Unknown ids are
    /// returned separately, in input order, so callers can keep or drop them.
    pub fn rerank(&self, query: &[f32], candidates: &[String]) -> Result<Reranked> {
        self.require_loaded(&self.buckets_of(candidates))?;
        let passages = self.candidate_passages(candidates);
        self.loaded_ranges(&self.lists_of(&passages))?;
        let mut scores = HashMap::with_capacity(passages.len());
        let rows: Vec<Range<usize>> = passages.iter().map(|&n| n..n + 1).collect();
        self.vectors.score_ranges(query, &rows, |n, s| {
            scores.insert(n, s[0]);
        })?;
        let mut scored = Vec::new();
        let mut unknown = Vec::new();
        for (order, id) in candidates.iter().enumerate() {
            match self.ids.get(id.as_str()) {
                Some(ns) => {
                    let best = ns
                        .iter()
                        .filter_map(|n| scores.get(n).copied())
                        .fold(f32::NEG_INFINITY, f32::max);
                    scored.push((order, id.clone(), best));
                }
                None => unknown.push(id.clone()),
            }
        }
        scored.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
        Ok((
            scored.into_iter().map(|(_, id, s)| (id, s)).collect(),
            unknown,
        ))
    }
}
