//! WebAssembly bindings: the core exposed to JavaScript, and nothing else.
//!
//! JS does the fetching (it owns the network, caching and progress); Rust receives bytes,
//! verifies them and encodes. Every failure crosses into JS as an `Error` whose message
//! is the core's [`crate::Error`] text, so it names the file or input at fault.
//!
//! Two modules come out of this crate: the full one (feature `encoder`, the default: the
//! model, dense, lexical and hybrid search) and a lexical one (`--no-default-features`:
//! BM25 over the same index parts, no model), small enough to answer a visitor's first
//! queries while the full one and the model are still on their way.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::search::{Hit, SearchIndex, SearchResult};

#[cfg(feature = "encoder")]
mod engine;
mod lexical;

extern "C" {
    /// Static constructors emitted by wasm-ld. tract registers its kernels in them, and
    /// wasm-bindgen's generated start-up does not run them for us.
    fn __wasm_call_ctors();
}

/// Runs once when the module is instantiated.
#[wasm_bindgen(start)]
pub fn start() {
    // SAFETY: called exactly once, before any other export can run (wasm-bindgen calls the
    // start function during instantiation), and no Rust code has touched statics yet.
    unsafe { __wasm_call_ctors() };
    console_error_panic_hook::set_once();
}

/// Bytes of the wasm instance's linear memory: what the engine holds (it never shrinks, so
/// this is the high-water mark), for `stats()` and benchmarks.
#[wasm_bindgen(js_name = wasmMemoryBytes)]
pub fn wasm_memory_bytes() -> f64 {
    (core::arch::wasm32::memory_size(0) * 65536) as f64
}

fn js_error(e: crate::Error) -> JsError {
    JsError::new(&e.to_string())
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&e.to_string()))
}

/// Files to fetch, as the `[{path, bytes}]` JS fetches them by (with progress by size).
fn file_list<'a>(files: impl Iterator<Item = (&'a str, u64)>) -> Result<JsValue, JsError> {
    #[derive(Serialize)]
    struct File<'a> {
        path: &'a str,
        bytes: u64,
    }
    to_js(
        &files
            .map(|(path, bytes)| File { path, bytes })
            .collect::<Vec<_>>(),
    )
}

/// Characters of passage text returned as a result's snippet.
const SNIPPET_CHARS: usize = 240;

/// Hits as the `[{id, url, title, heading, snippet, score}]` every search method returns.
fn results_of(index: &SearchIndex, hits: &[Hit]) -> Result<JsValue, JsError> {
    let out = hits
        .iter()
        .map(|h| index.result(h, SNIPPET_CHARS))
        .collect::<crate::Result<Vec<SearchResult>>>()
        .map_err(js_error)?;
    to_js(&out)
}

/// Passage numbers and scores from JS as hits (`results`, fusion with an outside ranking).
fn hits_of(passages: &[u32], scores: &[f32]) -> Result<Vec<Hit>, JsError> {
    if passages.len() != scores.len() {
        return Err(JsError::new(&format!(
            "invalid input: {} passages but {} scores",
            passages.len(),
            scores.len()
        )));
    }
    Ok(passages
        .iter()
        .zip(scores)
        .map(|(&p, &score)| Hit {
            passage: p as usize,
            score,
        })
        .collect())
}

/// A search's top-k: passage numbers and their scores, best first.
#[wasm_bindgen]
pub struct Hits {
    passages: Vec<u32>,
    scores: Vec<f32>,
}

impl From<Vec<Hit>> for Hits {
    fn from(hits: Vec<Hit>) -> Self {
        Hits {
            passages: hits.iter().map(|h| h.passage as u32).collect(),
            scores: hits.iter().map(|h| h.score).collect(),
        }
    }
}

#[wasm_bindgen]
impl Hits {
    #[wasm_bindgen(getter)]
    pub fn passages(&self) -> Vec<u32> {
        self.passages.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn scores(&self) -> Vec<f32> {
        self.scores.clone()
    }
}

/// The steps both modules' index objects answer alike (`$type` has `index()` and
/// `index_mut()` giving its [`SearchIndex`]): parts added on demand, BM25, results.
macro_rules! index_steps {
    ($type:ty) => {
        #[wasm_bindgen]
        impl $type {
            /// Adds a part file (`path` as a `missing…` call named it), verified against the
            /// index's part table.
            #[wasm_bindgen(js_name = addPart)]
            pub fn add_part(&mut self, path: &str, bytes: &[u8]) -> Result<(), JsError> {
                self.index_mut()
                    .add_part(path, bytes)
                    .map_err($crate::wasm::js_error)
            }

            /// What showing `passages` needs of the passage fragments and does not hold:
            /// their directories, then their records (`path#bytes=first-last`). Ask again
            /// after adding them, until none are missing.
            #[wasm_bindgen(js_name = missingFragments)]
            pub fn missing_fragments(&self, passages: Vec<u32>) -> Vec<String> {
                let passages: Vec<usize> = passages.iter().map(|&p| p as usize).collect();
                self.index().missing_fragments(&passages)
            }

            /// Hits (as `searchHits` or `lexicalHits` returned them) as `[{id, url, title,
            /// heading, snippet, score}]`; their fragments must be added.
            pub fn results(
                &self,
                passages: Vec<u32>,
                scores: Vec<f32>,
            ) -> Result<JsValue, JsError> {
                let hits = $crate::wasm::hits_of(&passages, &scores)?;
                $crate::wasm::results_of(self.index(), &hits)
            }

            /// The term buckets a lexical search of `query` needs that were not added yet.
            #[wasm_bindgen(js_name = missingTermBuckets)]
            pub fn missing_term_buckets(&self, query: &str) -> Vec<String> {
                self.index().missing_term_buckets(query)
            }

            /// BM25's top-k passage numbers and scores (the query's term buckets added).
            #[wasm_bindgen(js_name = lexicalHits)]
            pub fn lexical_hits(&self, query: &str, k: usize) -> Result<Hits, JsError> {
                self.index()
                    .lexical_search(query, k)
                    .map(Hits::from)
                    .map_err($crate::wasm::js_error)
            }

            /// The id buckets naming `candidates` (passage ids, document ids or URLs) that
            /// were not added yet: what `candidateHits` needs.
            #[wasm_bindgen(js_name = missingIdBuckets)]
            pub fn missing_id_buckets(&self, candidates: Vec<String>) -> Vec<String> {
                self.index().missing_id_buckets(&candidates)
            }

            /// Another engine's ranking (`candidates`: ids or URLs, best first, with their
            /// `scores`; e.g. Pagefind's results) as the `k` best passage hits, for fusion
            /// (`hybridHits`) or to show as they are.
            #[wasm_bindgen(js_name = candidateHits)]
            pub fn candidate_hits(
                &self,
                candidates: Vec<String>,
                scores: Vec<f32>,
                k: usize,
            ) -> Result<Hits, JsError> {
                self.index()
                    .candidate_hits(&candidates, &scores, k)
                    .map(Hits::from)
                    .map_err($crate::wasm::js_error)
            }

            #[wasm_bindgen(getter, js_name = passageCount)]
            pub fn passage_count(&self) -> usize {
                self.index().len()
            }

            /// `manifest.json` as a plain object.
            #[wasm_bindgen(getter)]
            pub fn manifest(&self) -> Result<JsValue, JsError> {
                $crate::wasm::to_js(&self.index().manifest)
            }
        }
    };
}
use index_steps;
