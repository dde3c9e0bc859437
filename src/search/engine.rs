//! [`Searcher`]: a loaded index and the encoder of the bundle it was built with — what the
//! CLI and the browser both search with, from query text to results.

use super::hybrid::Mode;
use super::search_index::{Probe, Reranked, SearchIndex, SearchResult};
use super::top_k::Hit;
use crate::error::Result;
use crate::index::LoadedIndex;
use crate::model::Encoder;

/// An index ready to answer queries.
#[derive(Debug)]
pub struct Searcher {
    index: SearchIndex,
    encoder: Encoder,
}

impl Searcher {
    /// Builds the encoder of the index's own bundle copy (the one the loader checked).
    pub fn new(loaded: LoadedIndex) -> Result<Self> {
        let LoadedIndex {
            manifest,
            parts,
            centroids,
            codebook,
            parts_at_hand,
            bundle,
        } = loaded;
        let encoder = Encoder::from_bundle(bundle)?;
        let index = SearchIndex::new(manifest, parts, centroids, codebook, parts_at_hand)?;
        Ok(Searcher { index, encoder })
    }

    /// Opens the index folder `dir`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(dir: &std::path::Path) -> Result<Self> {
        Self::new(crate::index::loader::read_folder(dir)?)
    }

    pub fn index(&self) -> &SearchIndex {
        &self.index
    }

    /// The index, to add parts fetched on demand.
    pub fn index_mut(&mut self) -> &mut SearchIndex {
        &mut self.index
    }

    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// Top-k passages for a query (dense retrieval) among the lists `probe` selects.
    pub fn search(&self, query: &str, k: usize, probe: Probe) -> Result<Vec<Hit>> {
        let vector = self.encoder.encode_query(query)?;
        self.index.search(&vector, k, probe)
    }

    /// Top-k passages in `mode`: the model's, BM25's or both fused.
    pub fn search_in(&self, query: &str, k: usize, probe: Probe, mode: Mode) -> Result<Vec<Hit>> {
        match mode {
            Mode::Dense => self.search(query, k, probe),
            Mode::Lexical => self.index.lexical_search(query, k),
            Mode::Hybrid(fusion) => {
                let vector = self.encoder.encode_query(query)?;
                self.index.hybrid_search(&vector, query, k, probe, fusion)
            }
        }
    }

    /// Candidates (passage ids, document ids or URLs) ordered by the query's score: the
    /// re-ranking mode.
    pub fn rerank(&self, query: &str, candidates: &[String]) -> Result<Reranked> {
        let vector = self.encoder.encode_query(query)?;
        self.index.rerank(&vector, candidates)
    }

    /// What front ends show for `hit`, its snippet at most `snippet_chars` characters.
    pub fn result(&self, hit: &Hit, snippet_chars: usize) -> Result<SearchResult> {
        self.index.result(hit, snippet_chars)
    }
}
