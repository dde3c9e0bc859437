//! The full module's objects: the query encoder, the index loader, and the search engine
//! (index + encoder: dense, lexical, hybrid and re-ranking).

use js_sys::Float32Array;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::{file_list, hits_of, index_steps, js_error, to_js, Hits};
use crate::index::manifest::MODEL_DIR;
use crate::index::IndexLoader as CoreLoader;
use crate::model::{Encoder, ModelBundle};
use crate::search::{Fusion, Probe, SearchIndex, Searcher};

/// A verified model bundle ready to embed text in the browser.
#[wasm_bindgen]
pub struct QueryEncoder {
    inner: Encoder,
}

#[wasm_bindgen]
impl QueryEncoder {
    /// Verifies the bundle files (sizes, checksums, descriptor) and builds the plan.
    /// `token_checksums`: `token-embeddings/checksums.bin`, for bundles that keep their token
    /// embeddings apart (their chunks are added with `addTokenChunk` before encoding).
    #[wasm_bindgen(constructor)]
    pub fn new(
        manifest_json: &[u8],
        graph: Vec<u8>,
        tokenizer_json: Vec<u8>,
        token_checksums: Option<Vec<u8>>,
    ) -> Result<QueryEncoder, JsError> {
        let mut bundle =
            ModelBundle::from_bytes(manifest_json, graph, tokenizer_json).map_err(js_error)?;
        if let Some(checksums) = token_checksums {
            bundle = bundle.with_token_checksums(checksums).map_err(js_error)?;
        }
        let inner = Encoder::from_bundle(bundle).map_err(js_error)?;
        Ok(QueryEncoder { inner })
    }

    /// The token-embedding chunk files (relative to the bundle) encoding `query` needs that
    /// were not added yet.
    #[wasm_bindgen(js_name = missingTokenChunks)]
    pub fn missing_token_chunks(&self, query: &str) -> Result<Vec<String>, JsError> {
        self.inner.missing_token_chunks(query).map_err(js_error)
    }

    /// As `missingTokenChunks`, for passages.
    #[wasm_bindgen(js_name = missingPassageTokenChunks)]
    pub fn missing_passage_token_chunks(
        &self,
        passages: Vec<String>,
    ) -> Result<Vec<String>, JsError> {
        let texts: Vec<&str> = passages.iter().map(String::as_str).collect();
        self.inner
            .missing_passage_token_chunks(&texts)
            .map_err(js_error)
    }

    /// Adds a token-embedding chunk file, verified against the bundle's checksums.
    #[wasm_bindgen(js_name = addTokenChunk)]
    pub fn add_token_chunk(&self, path: &str, bytes: Vec<u8>) -> Result<(), JsError> {
        self.inner.add_token_chunk(path, bytes).map_err(js_error)
    }

    /// Embeds a query.
    pub fn encode(&self, query: &str) -> Result<Float32Array, JsError> {
        let v = self.inner.encode_query(query).map_err(js_error)?;
        Ok(Float32Array::from(v.as_slice()))
    }

    /// Embeds passages (one model run each); returns `passages.length * dims` floats, row-major.
    #[wasm_bindgen(js_name = encodePassages)]
    pub fn encode_passages(&self, passages: Vec<String>) -> Result<Float32Array, JsError> {
        let texts: Vec<&str> = passages.iter().map(String::as_str).collect();
        let vectors = self.inner.encode_passages(&texts).map_err(js_error)?;
        Ok(Float32Array::from(vectors.concat().as_slice()))
    }

    /// Token ids of a query as the model sees them.
    pub fn tokenize(&self, query: &str) -> Result<Vec<u32>, JsError> {
        let t = self.inner.tokenize_query(query).map_err(js_error)?;
        // Ids come from a u32 vocabulary, so the conversion is lossless.
        Ok(t.ids.iter().map(|&id| id as u32).collect())
    }

    /// Vector length.
    #[wasm_bindgen(getter)]
    pub fn dims(&self) -> usize {
        self.inner.dims()
    }

    /// The bundle descriptor as a plain JS object.
    #[wasm_bindgen(getter)]
    pub fn manifest(&self) -> Result<JsValue, JsError> {
        to_js(self.inner.manifest())
    }
}

/// Collects an index's always-loaded files as JS fetches them, verifying each against
/// `manifest.json` on arrival ([`crate::index::IndexLoader`]), then assembles the
/// [`SearchEngine`]. Vector lists and passage fragments come later, as queries need them.
#[wasm_bindgen]
pub struct IndexLoader {
    inner: CoreLoader,
}

#[wasm_bindgen]
impl IndexLoader {
    #[wasm_bindgen(constructor)]
    pub fn new(manifest_json: &[u8]) -> Result<IndexLoader, JsError> {
        let inner = CoreLoader::new(manifest_json).map_err(js_error)?;
        Ok(IndexLoader { inner })
    }

    /// Every file to fetch before the first query, as `[{path, bytes}]`.
    #[wasm_bindgen(js_name = fileList)]
    pub fn file_list(&self) -> Result<JsValue, JsError> {
        file_list(self.inner.files().map(|(path, entry)| (path, entry.bytes)))
    }

    /// Checks one file's size and checksum and keeps it.
    #[wasm_bindgen(js_name = addFile)]
    pub fn add_file(&mut self, path: &str, bytes: Vec<u8>) -> Result<(), JsError> {
        self.inner.add_file(path, bytes).map_err(js_error)
    }

    /// Parses the part table, loads the model the index was built with, and checks they agree.
    pub fn finish(self) -> Result<SearchEngine, JsError> {
        let loaded = self.inner.finish().map_err(js_error)?;
        let searcher = Searcher::new(loaded).map_err(js_error)?;
        Ok(SearchEngine { searcher })
    }
}

/// A loaded index plus its query encoder: search and re-rank entirely in the browser. Each
/// step that reads index parts has a `missing…` twin naming the part files to fetch and
/// `addPart` first; a step run without them is an error naming the first missing file.
#[wasm_bindgen]
pub struct SearchEngine {
    searcher: Searcher,
}

/// `undefined` → the index's own probe depth; a number → that many lists (clamped; a
/// number ≥ the list count scans every list exactly).
fn probe_of(lists: Option<usize>) -> Probe {
    lists.map_or(Probe::Default, Probe::Lists)
}

impl SearchEngine {
    fn index(&self) -> &SearchIndex {
        self.searcher.index()
    }

    fn index_mut(&mut self) -> &mut SearchIndex {
        self.searcher.index_mut()
    }
}

index_steps!(SearchEngine);

/// How deep each side of a hybrid search goes for `k` results: the lexical hits to pass
/// `hybridHits`.
#[wasm_bindgen(js_name = hybridDepth)]
pub fn hybrid_depth(k: usize) -> usize {
    crate::search::hybrid::hybrid_depth(k)
}

#[wasm_bindgen]
impl SearchEngine {
    /// Parts every query reads (the lists of an index scanned whole, a single fragment),
    /// worth fetching with the index, as `[{path, bytes}]` like `IndexLoader.fileList`.
    #[wasm_bindgen(js_name = partsEveryQueryNeeds)]
    pub fn parts_every_query_needs(&self) -> Result<JsValue, JsError> {
        let parts = self.index().parts_every_query_needs();
        file_list(parts.iter().map(|(path, bytes)| (path.as_str(), *bytes)))
    }

    /// Holds at most `bytes` of vector lists (`undefined`: no limit): adding one beyond it
    /// drops those probed longest ago, never the current search's.
    #[wasm_bindgen(js_name = setListBudget)]
    pub fn set_list_budget(&mut self, bytes: Option<u32>) {
        self.searcher
            .index_mut()
            .set_list_budget(bytes.map(u64::from));
    }

    /// Bytes of vector lists held now.
    #[wasm_bindgen(getter, js_name = listBytesHeld)]
    pub fn list_bytes_held(&self) -> f64 {
        self.searcher.index().list_bytes_held() as f64
    }

    /// What a search for `query` (a vector) and `k` results needs next of the vector lists
    /// and does not hold: list files, or byte ranges of them (`path#bytes=first-last`:
    /// fetch with a `Range` header, or the whole file where a host ignores it). Ask again
    /// after adding them, until none are missing.
    #[wasm_bindgen(js_name = missingLists)]
    pub fn missing_lists(
        &self,
        query: &[f32],
        k: usize,
        probe: Option<usize>,
    ) -> Result<Vec<String>, JsError> {
        self.searcher
            .index()
            .missing_lists(query, k, probe_of(probe))
            .map_err(js_error)
    }

    /// Top-k passage numbers and scores for a query vector among the lists `probe` selects.
    #[wasm_bindgen(js_name = searchHits)]
    pub fn search_hits(
        &self,
        query: &[f32],
        k: usize,
        probe: Option<usize>,
    ) -> Result<Hits, JsError> {
        let hits = self
            .searcher
            .index()
            .search(query, k, probe_of(probe))
            .map_err(js_error)?;
        Ok(hits.into())
    }

    /// Top-k passages by the query vector and by a lexical ranking (`lexicalPassages`,
    /// `lexicalScores`: best first, `hybridDepth(k)` of them — BM25's `lexicalHits`, or
    /// another engine's mapped to passages), fused (`fusion`: "rrf" or "convex:W"; absent:
    /// the default). Needs the lists `missingLists` names.
    #[wasm_bindgen(js_name = hybridHits)]
    pub fn hybrid_hits(
        &self,
        vector: &[f32],
        lexical_passages: Vec<u32>,
        lexical_scores: Vec<f32>,
        k: usize,
        probe: Option<usize>,
        fusion: Option<String>,
    ) -> Result<Hits, JsError> {
        let fusion = match fusion {
            Some(name) => name
                .parse()
                .map_err(|e: String| JsError::new(&format!("dotfind: {e}")))?,
            None => Fusion::default(),
        };
        let lexical = hits_of(&lexical_passages, &lexical_scores)?;
        self.index()
            .fuse_with(vector, &lexical, k, probe_of(probe), fusion)
            .map(Hits::from)
            .map_err(js_error)
    }

    /// The parts re-ranking `candidates` needs that were not added yet (their id buckets,
    /// then their lists): ask again after adding them, until none are missing.
    #[wasm_bindgen(js_name = missingForRerank)]
    pub fn missing_for_rerank(&self, candidates: Vec<String>) -> Result<Vec<String>, JsError> {
        self.searcher
            .index()
            .missing_for_rerank(&candidates)
            .map_err(js_error)
    }

    /// Orders candidates (passage ids, document ids or URLs — e.g. a lexical engine's top
    /// 100) by BERT_Dot score: `{results: [{id, score}], unknown: [ids not in the index]}`.
    pub fn rerank(&self, query: &str, candidates: Vec<String>) -> Result<JsValue, JsError> {
        let (ranked, unknown) = self.searcher.rerank(query, &candidates).map_err(js_error)?;
        #[derive(Serialize)]
        struct Ranked {
            id: String,
            score: f32,
        }
        #[derive(Serialize)]
        struct Reranked {
            results: Vec<Ranked>,
            unknown: Vec<String>,
        }
        to_js(&Reranked {
            results: ranked
                .into_iter()
                .map(|(id, score)| Ranked { id, score })
                .collect(),
            unknown,
        })
    }

    /// The token-embedding chunk files (paths relative to the index) encoding `query` needs
    /// that were not added yet: fetch and add them before `search`, `rerank` or `encode`.
    #[wasm_bindgen(js_name = missingTokenChunks)]
    pub fn missing_token_chunks(&self, query: &str) -> Result<Vec<String>, JsError> {
        let paths = self
            .searcher
            .encoder()
            .missing_token_chunks(query)
            .map_err(js_error)?;
        Ok(paths
            .into_iter()
            .map(|p| format!("{MODEL_DIR}{p}"))
            .collect())
    }

    /// Adds a token-embedding chunk file (`path` relative to the index, as
    /// `missingTokenChunks` names it), verified against the model's checksums.
    #[wasm_bindgen(js_name = addTokenChunk)]
    pub fn add_token_chunk(&self, path: &str, bytes: Vec<u8>) -> Result<(), JsError> {
        let in_model = path.strip_prefix(MODEL_DIR).ok_or_else(|| {
            JsError::new(&format!(
                "invalid input: {path} is not a file of the index's model"
            ))
        })?;
        self.searcher
            .encoder()
            .add_token_chunk(in_model, bytes)
            .map_err(js_error)
    }

    /// The query vector search scores with.
    pub fn encode(&self, query: &str) -> Result<Float32Array, JsError> {
        let v = self
            .searcher
            .encoder()
            .encode_query(query)
            .map_err(js_error)?;
        Ok(Float32Array::from(v.as_slice()))
    }

    #[wasm_bindgen(getter)]
    pub fn dims(&self) -> usize {
        self.searcher.encoder().dims()
    }
}
