//! [`SearchIndex`]: an index whose parts arrive on demand. A query scores the lists whose
//! centroids score highest (IVF), then decodes the records of the hits shown; each step
//! first says which parts it needs ([`SearchIndex::missing_lists`],
//! [`SearchIndex::missing_fragments`]), so the browser fetches only those. Natively every
//! part is at hand and the same code runs.

use std::collections::HashMap;

use serde::Serialize;

use super::fragments::Fragments;
use super::hybrid::{fuse, hybrid_depth, Fusion};
use super::lexical::{query_keys, LexicalPostings};
use super::text::snippet;
use super::top_k::Hit;
pub use super::vector_lists::Probe;
use super::vector_lists::VectorLists;
use crate::error::{Error, Result};
use crate::index::parts::parse_range_path;
#[cfg(doc)]
use crate::index::LoadedIndex;
use crate::index::{
    Codebook, EncodedRow, IndexManifest, Part, PartTable, PassageRecord, VectorShard,
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

/// An index ready to search, holding the parts added so far.
#[derive(Debug)]
pub struct SearchIndex {
    pub manifest: IndexManifest,
    parts: PartTable,
    /// The vector lists, as far as they arrived, and dense search over them.
    lists: VectorLists,
    /// The passage fragments, as far as they arrived.
    fragments: Fragments,
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
        codebook: Option<Codebook>,
        parts_at_hand: Vec<(Part, Vec<u8>)>,
    ) -> Result<Self> {
        let lists = VectorLists::new(
            manifest.layout,
            manifest.vector_encoding,
            manifest.model.dims,
            parts.lists.clone(),
            centroids,
            codebook,
        )?;
        let id_buckets = parts.ids.len();
        let term_buckets = parts.terms.len();
        let lexical = LexicalPostings::new(manifest.passage_count);
        let mut index = SearchIndex {
            lists,
            fragments: Fragments::new(parts.fragments.clone()),
            manifest,
            parts,
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

    /// Each part's count, size and checksum.
    pub fn parts(&self) -> &PartTable {
        &self.parts
    }

    pub fn len(&self) -> usize {
        self.manifest.passage_count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds the part file `path` (as `missing_*` name it: a vector list's may name a byte
    /// range, `#bytes=first-last`), verified against the part table.
    pub fn add_part(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        let (file, range) = parse_range_path(path)?;
        let part = self.parts.part_at(file)?;
        match part {
            Part::List(i) => self.lists.add(i, range, bytes),
            Part::Fragment(j) => self.fragments.add(j, range, bytes),
            _ if range.is_some() => Err(Error::InvalidInput(format!(
                "{path}: not a range dotfind names"
            ))),
            _ => self.add(part, bytes),
        }
    }

    fn add(&mut self, part: Part, bytes: &[u8]) -> Result<()> {
        let path = part.path();
        match part {
            Part::List(i) => return self.lists.add(i, None, bytes),
            Part::Fragment(j) => return self.fragments.add(j, None, bytes),
            _ => {}
        }
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
        self.lists.set_budget(bytes);
    }

    /// Bytes of vector lists held now.
    pub fn list_bytes_held(&self) -> u64 {
        self.lists.bytes_held()
    }

    /// Parts every query reads, worth fetching with the index: the lists when a query scans
    /// them all, the passages when they are one fragment. Each with its size, for progress.
    pub fn parts_every_query_needs(&self) -> Vec<(String, u64)> {
        let mut parts = self.lists.every_query_needs();
        if self.parts.fragments.len() == 1 && !self.is_loaded(Part::Fragment(0)) {
            let part = Part::Fragment(0);
            parts.push((part.path(), self.parts.fragments[0].file.bytes));
        }
        parts
    }

    fn is_loaded(&self, part: Part) -> bool {
        match part {
            Part::List(_) => false, // lists arrive in pieces: `VectorLists` says what is held
            Part::Fragment(j) => self.fragments.is_whole(j),
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

    /// The lists a search of `query` scans, in list order.
    pub fn probed_lists(&self, query: &[f32], probe: Probe) -> Result<Vec<usize>> {
        self.lists.probed(query, probe)
    }

    /// What a search of `query` for `k` results needs next of the vector lists and does not
    /// hold (whole lists for an exact scan; else the probed lists' codes, then the best
    /// candidates' rows, by byte range): ask again once these are added, until nothing is
    /// missing. Marks the lists probed, so that adding what they miss never evicts them.
    pub fn missing_lists(&self, query: &[f32], k: usize, probe: Probe) -> Result<Vec<String>> {
        self.lists.missing(query, k, probe)
    }

    /// Top-k passages for a query vector among the lists `probe` selects: ranked by their
    /// codes, the best `layout.rescore` (at least `k`) scored exactly on their rows.
    pub fn search(&self, query: &[f32], k: usize, probe: Probe) -> Result<Vec<Hit>> {
        self.lists.search(query, k, probe)
    }

    /// Exact scores of the passages a search for `depth` results ranks (every passage of
    /// the probed lists when scanning exactly), as `visit(first passage, scores)` runs
    /// (batch evaluation keeps a document's best passage).
    pub fn score_probed(
        &self,
        query: &[f32],
        depth: usize,
        probe: Probe,
        visit: impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        self.lists.score(query, depth, probe, visit)
    }

    /// Passage `n`'s row as stored (its row must be held): what a re-index copies.
    pub fn stored_row(&self, n: usize) -> Result<EncodedRow> {
        if n >= self.len() {
            return Err(Error::InvalidInput(format!("no passage {n}")));
        }
        self.lists.row(n).ok_or_else(|| Error::PartNotLoaded {
            file: self.lists.missing_rows(&[n]).concat(),
        })
    }

    /// Passage `n`'s stored vector (its list must be loaded).
    pub fn vector(&self, n: usize) -> Result<Vec<f32>> {
        Ok(self.stored_row(n)?.decode(self.manifest.vector_encoding))
    }

    /// What showing `passages` needs of the fragments and did not arrive: their
    /// fragments' directories, then their records (by byte range). Ask again once these are
    /// added, until nothing is missing.
    pub fn missing_fragments(&self, passages: &[usize]) -> Vec<String> {
        self.fragments.missing(passages)
    }

    /// Decodes passage `n`'s record.
    pub fn record(&self, n: usize) -> Result<PassageRecord> {
        self.fragments.record(n)
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
    /// naming them first, then the directories of their lists, then their rows (by byte
    /// range). Ask again once those are in, until nothing is missing.
    pub fn missing_for_rerank(&self, candidates: &[String]) -> Result<Vec<String>> {
        let buckets = self.missing_id_buckets(candidates);
        if !buckets.is_empty() {
            return Ok(buckets);
        }
        let passages = self.candidate_passages(candidates);
        self.lists.mark_probed(&self.lists_of(&passages));
        Ok(self.lists.missing_rows(&passages))
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
            .filter_map(|&n| self.lists.list_of(n))
            .collect()
    }

    /// Orders candidate ids (passage ids, document ids or URLs, e.g. a lexical engine's top
    /// 100) by the query's score. A document id scores as its best passage. Unknown ids are
    /// returned separately, in input order, so callers can keep or drop them.
    pub fn rerank(&self, query: &[f32], candidates: &[String]) -> Result<Reranked> {
        self.require_loaded(&self.buckets_of(candidates))?;
        let passages = self.candidate_passages(candidates);
        let mut scores = HashMap::with_capacity(passages.len());
        self.lists.score_passages(query, &passages, |n, s| {
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
