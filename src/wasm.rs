//! WebAssembly edge: the core's encoder exposed to JavaScript.
//!
//! JS does the fetching (it owns the network, caching and progress); Rust receives bytes,
//! verifies them and encodes. Every failure crosses into JS as an `Error` whose message
//! is the core's [`crate::Error`] text, so it names the file or input at fault.

use std::collections::HashMap;

use js_sys::Float32Array;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::bundle::{BundleManifest, Digest, ModelBundle};
use crate::encode::Encoder;
use crate::search::{snippet, top_k, Hit, IndexVectors, SearchIndex};
use crate::shard::{IndexManifest, PassageShard, VectorShard};

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

fn js_error(e: crate::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// A verified model bundle ready to embed text in the browser.
#[wasm_bindgen]
pub struct QueryEncoder {
    inner: Encoder,
}

#[wasm_bindgen]
impl QueryEncoder {
    /// Verifies the bundle files (sizes, checksums, descriptor) and builds the tract plan.
    /// `model`: the graph file the descriptor names — `model.graph` for a compiled
    /// bundle (see `modelFile` in encoder.js), else `model.onnx`.
    /// `model_sha256` and `tokenizer_sha256` (lower-case hex, both or neither): the files'
    /// sha256 if JS computed them (WebCrypto hashes sha256 far faster than wasm), for a
    /// descriptor that records no xxh3-128; otherwise the files are hashed here.
    #[wasm_bindgen(constructor)]
    pub fn new(
        manifest_json: &[u8],
        model: Vec<u8>,
        tokenizer_json: Vec<u8>,
        model_sha256: Option<String>,
        tokenizer_sha256: Option<String>,
    ) -> Result<QueryEncoder, JsError> {
        let bundle = match (model_sha256, tokenizer_sha256) {
            (Some(m), Some(t)) => ModelBundle::from_bytes_with_digests(
                manifest_json,
                model,
                tokenizer_json,
                &[Digest::Sha256(m), Digest::Sha256(t)],
            ),
            (None, None) => ModelBundle::from_bytes(manifest_json, model, tokenizer_json),
            _ => {
                return Err(JsError::new(
                    "QueryEncoder: pass both model_sha256 and tokenizer_sha256, or neither",
                ))
            }
        }
        .map_err(js_error)?;
        let inner = Encoder::from_bundle(bundle).map_err(js_error)?;
        Ok(QueryEncoder { inner })
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
        serde_wasm_bindgen::to_value(self.inner.manifest())
            .map_err(|e| JsError::new(&e.to_string()))
    }
}

/// Collects an index's files as JS fetches them, verifying each against `manifest.json`
/// on arrival, then assembles the [`SearchEngine`].
#[wasm_bindgen]
pub struct IndexLoader {
    manifest: IndexManifest,
    /// Each verified file's bytes and the digest `addFile` checked them by.
    files: HashMap<String, (Vec<u8>, Digest)>,
}

#[wasm_bindgen]
impl IndexLoader {
    #[wasm_bindgen(constructor)]
    pub fn new(manifest_json: &[u8]) -> Result<IndexLoader, JsError> {
        Ok(IndexLoader {
            manifest: IndexManifest::from_json(manifest_json).map_err(js_error)?,
            files: HashMap::new(),
        })
    }

    /// Every file to fetch, as `[{path, bytes, sha256, xxh3_128}]` (`xxh3_128` null when the
    /// manifest records none: then JS hashes sha256 for `addFile`).
    #[wasm_bindgen(js_name = fileList)]
    pub fn file_list(&self) -> Result<JsValue, JsError> {
        let list: Vec<serde_json::Value> = self
            .manifest
            .files
            .iter()
            .map(|(path, entry)| {
                serde_json::json!({
                    "path": path,
                    "bytes": entry.bytes,
                    "sha256": entry.sha256,
                    // Present: addFile checks it (hashed here) and needs no sha256 from JS.
                    "xxh3_128": entry.xxh3_128,
                })
            })
            .collect();
        list.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(|e| JsError::new(&e.to_string()))
    }

    /// The index's shards as `[{vectors, passages, count}]`, in passage order, so JS can
    /// plan which vector files a scoring helper needs before fetching them.
    #[wasm_bindgen(getter)]
    pub fn shards(&self) -> Result<JsValue, JsError> {
        to_js(&self.manifest.shards)
    }

    /// The model's part files, in order: JS keeps a split model's parts to hash the whole
    /// graph file (`model.graph`) with WebCrypto for [`IndexLoader::finish`] when
    /// [`IndexLoader::model_sha256_wanted`] says so.
    #[wasm_bindgen(getter, js_name = modelParts)]
    pub fn model_parts(&self) -> Vec<String> {
        self.manifest.model.model_parts.clone()
    }

    /// Whether [`IndexLoader::finish`] wants the whole graph file's sha256 from JS: only for
    /// a split model whose descriptor (added by then) records no xxh3-128 for it.
    #[wasm_bindgen(getter, js_name = modelSha256Wanted)]
    pub fn model_sha256_wanted(&self) -> bool {
        let m = &self.manifest.model;
        let descriptor = format!("{}{}", m.path, crate::bundle::MANIFEST_FILE);
        let checks_xxh3 = self
            .files
            .get(&descriptor)
            .and_then(|(bytes, _)| BundleManifest::from_json(bytes).ok())
            .and_then(|d| d.files.get(d.model_file()).map(|e| e.checks_xxh3()));
        m.model_parts.len() > 1 && checks_xxh3 != Some(true)
    }

    /// Checks one file's size and checksum and keeps it; `sha256` (lower-case hex): its
    /// sha256 if JS computed it (WebCrypto) because `fileList` showed no `xxh3_128` for it;
    /// otherwise it is hashed here.
    #[wasm_bindgen(js_name = addFile)]
    pub fn add_file(
        &mut self,
        path: &str,
        bytes: Vec<u8>,
        sha256: Option<String>,
    ) -> Result<(), JsError> {
        let entry = self.manifest.entry(path).map_err(js_error)?;
        entry.verify_size(path, bytes.len()).map_err(js_error)?;
        let digest = match sha256 {
            Some(digest) => Digest::Sha256(digest),
            None => entry.digest_of(&bytes),
        };
        entry
            .verify_digest(path, bytes.len(), &digest)
            .map_err(js_error)?;
        self.files.insert(path.to_string(), (bytes, digest));
        Ok(())
    }

    /// Parses the shards, loads the model the index was built with, and checks they agree.
    /// `model_sha256`: the sha256 of the whole graph file (its parts concatenated) if JS
    /// computed it (see [`IndexLoader::model_sha256_wanted`]); a one-part model's digest is
    /// already known from `addFile` when of the kind the descriptor checks, and otherwise
    /// the model is hashed here.
    pub fn finish(mut self, model_sha256: Option<String>) -> Result<SearchEngine, JsError> {
        let mut take = |path: &str| {
            self.files.remove(path).ok_or_else(|| {
                JsError::new(&format!(
                    "{path}: not loaded (call addFile for every file in fileList)"
                ))
            })
        };
        let m = &self.manifest.model;
        let (descriptor, _) = take(&format!("{}{}", m.path, crate::bundle::MANIFEST_FILE))?;
        let (tokenizer, tokenizer_checked) =
            take(&format!("{}{}", m.path, crate::bundle::TOKENIZER_FILE))?;
        let mut model = Vec::new();
        let mut part_digests = Vec::new();
        for part in &m.model_parts {
            let (bytes, digest) = take(part)?;
            model.extend_from_slice(&bytes);
            part_digests.push(digest);
        }
        // The digests `addFile` computed stand for the bytes wherever they are of the kind
        // the descriptor checks (no rehashing); otherwise the bytes are hashed again.
        let bundle_manifest = BundleManifest::from_json(&descriptor).map_err(js_error)?;
        // Both entries exist: `from_json` requires the tokenizer's, `model_file` names a
        // recorded file.
        let model_entry = &bundle_manifest.files[bundle_manifest.model_file()];
        let tokenizer_entry = &bundle_manifest.files[crate::bundle::TOKENIZER_FILE];
        let model_digest = match (model_sha256, part_digests.as_slice()) {
            (Some(digest), _) => Digest::Sha256(digest),
            (None, [single]) => model_entry.digest_using(single, &model),
            (None, _) => model_entry.digest_of(&model),
        };
        let tokenizer_digest = tokenizer_entry.digest_using(&tokenizer_checked, &tokenizer);
        let bundle = ModelBundle::from_bytes_with_digests(
            &descriptor,
            model,
            tokenizer,
            &[model_digest, tokenizer_digest],
        )
        .map_err(js_error)?;
        self.manifest.check_bundle(&bundle).map_err(js_error)?;
        let mut shards = Vec::new();
        for entry in &self.manifest.shards {
            let (vectors, _) = take(&entry.vectors)?;
            let (passages, _) = take(&entry.passages)?;
            shards.push((
                VectorShard::from_bytes(&entry.vectors, &vectors).map_err(js_error)?,
                PassageShard::from_bytes(&entry.passages, &passages).map_err(js_error)?,
            ));
        }
        let encoder = Encoder::from_bundle(bundle).map_err(js_error)?;
        let index = SearchIndex::new(self.manifest, shards).map_err(js_error)?;
        Ok(SearchEngine { index, encoder })
    }
}

/// A loaded index plus its query encoder: search and re-rank entirely in the browser.
#[wasm_bindgen]
pub struct SearchEngine {
    index: SearchIndex,
    encoder: Encoder,
}

/// Characters of passage text returned as a result's snippet.
const SNIPPET_CHARS: usize = 240;

#[derive(Serialize)]
struct JsHit {
    id: String,
    url: String,
    title: String,
    heading: String,
    snippet: String,
    score: f32,
}

impl SearchEngine {
    /// Hits as the `[{id, url, title, heading, snippet, score}]` every search method returns.
    fn results(&self, hits: &[Hit]) -> Result<JsValue, JsError> {
        let out = hits
            .iter()
            .map(|h| self.hit(h.passage, h.score))
            .collect::<Result<Vec<_>, _>>()?;
        to_js(&out)
    }

    fn hit(&self, passage: usize, score: f32) -> Result<JsHit, JsError> {
        let r = self.index.record(passage).map_err(js_error)?;
        Ok(JsHit {
            snippet: snippet(&r.text, SNIPPET_CHARS),
            id: r.id,
            url: r.url,
            title: r.title,
            heading: r.heading,
            score,
        })
    }
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&e.to_string()))
}

#[wasm_bindgen]
impl SearchEngine {
    /// Exact top-k passages for a query: `[{id, url, title, heading, snippet, score}]`.
    pub fn search(&self, query: &str, k: usize) -> Result<JsValue, JsError> {
        let q = self.encoder.encode_query(query).map_err(js_error)?;
        self.search_vector(&q, k)
    }

    /// Top-k for an already-encoded query (apps with their own encoder, benchmarks).
    #[wasm_bindgen(js_name = searchVector)]
    pub fn search_vector(&self, query: &[f32], k: usize) -> Result<JsValue, JsError> {
        let hits = self.index.search(query, k).map_err(js_error)?;
        self.results(&hits)
    }

    /// Exact top-k among passages `start..end` only: this thread's part of a search split
    /// across workers (see [`VectorScorer`]); [`merge_hits`](Self::merge_hits) joins the parts.
    #[wasm_bindgen(js_name = searchVectorRows)]
    pub fn search_vector_rows(
        &self,
        query: &[f32],
        k: usize,
        start: usize,
        end: usize,
    ) -> Result<PartialHits, JsError> {
        PartialHits::search(self.index.vectors(), query, k, start..end)
    }

    /// The top-k of the parts' hits (passage numbers and scores, concatenated), in the
    /// shape of `search`: exactly what an unsplit search returns.
    #[wasm_bindgen(js_name = mergeHits)]
    pub fn merge_hits(
        &self,
        k: usize,
        passages: Vec<u32>,
        scores: Vec<f32>,
    ) -> Result<JsValue, JsError> {
        if passages.len() != scores.len() {
            return Err(JsError::new(&format!(
                "invalid input: {} passages but {} scores to merge",
                passages.len(),
                scores.len()
            )));
        }
        let hits = passages
            .iter()
            .zip(&scores)
            .map(|(&p, &score)| Hit {
                passage: p as usize,
                score,
            })
            .collect();
        self.results(&top_k(hits, k))
    }

    /// BM25 top-k over passage text, same result shape as `search`: a lexical first stage.
    #[wasm_bindgen(js_name = lexicalSearch)]
    pub fn lexical_search(&self, query: &str, k: usize) -> Result<JsValue, JsError> {
        let hits = self.index.lexical_search(query, k).map_err(js_error)?;
        self.results(&hits)
    }

    /// Orders candidates (passage ids, document ids or URLs — e.g. a lexical engine's top
    /// 100) by BERT_Dot score: `{results: [{id, score}], unknown: [ids not in the index]}`.
    pub fn rerank(&self, query: &str, candidates: Vec<String>) -> Result<JsValue, JsError> {
        let q = self.encoder.encode_query(query).map_err(js_error)?;
        let (ranked, unknown) = self.index.rerank(&q, &candidates).map_err(js_error)?;
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

    /// The query vector search scores with.
    pub fn encode(&self, query: &str) -> Result<Float32Array, JsError> {
        let v = self.encoder.encode_query(query).map_err(js_error)?;
        Ok(Float32Array::from(v.as_slice()))
    }

    #[wasm_bindgen(getter, js_name = passageCount)]
    pub fn passage_count(&self) -> usize {
        self.index.len()
    }

    #[wasm_bindgen(getter)]
    pub fn dims(&self) -> usize {
        self.encoder.dims()
    }

    /// `manifest.json` as a plain object.
    #[wasm_bindgen(getter)]
    pub fn manifest(&self) -> Result<JsValue, JsError> {
        to_js(&self.index.manifest)
    }
}

/// One part's top-k: passage numbers (in the whole index) and their scores, best first.
#[wasm_bindgen]
pub struct PartialHits {
    passages: Vec<u32>,
    scores: Vec<f32>,
}

impl PartialHits {
    fn search(
        vectors: &IndexVectors,
        query: &[f32],
        k: usize,
        rows: std::ops::Range<usize>,
    ) -> Result<PartialHits, JsError> {
        let hits = vectors.search_rows(query, k, rows).map_err(js_error)?;
        Ok(PartialHits {
            passages: hits.iter().map(|h| h.passage as u32).collect(),
            scores: hits.iter().map(|h| h.score).collect(),
        })
    }
}

#[wasm_bindgen]
impl PartialHits {
    #[wasm_bindgen(getter)]
    pub fn passages(&self) -> Vec<u32> {
        self.passages.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn scores(&self) -> Vec<f32> {
        self.scores.clone()
    }
}

/// The vectors of part of an index, in a helper worker: a 100k-passage scan is bound by
/// one core's memory bandwidth, so a second core scoring half the rows halves the wait.
/// Holds no model and no passage text; the loading worker verified the bytes it hands over.
#[wasm_bindgen]
pub struct VectorScorer {
    vectors: IndexVectors,
}

#[wasm_bindgen]
impl VectorScorer {
    #[wasm_bindgen(constructor)]
    pub fn new(dims: usize) -> VectorScorer {
        VectorScorer {
            vectors: IndexVectors::empty(dims),
        }
    }

    /// Adds vector shard file `path`, whose first passage is number `start` in the index.
    #[wasm_bindgen(js_name = addShard)]
    pub fn add_shard(&mut self, path: &str, start: usize, bytes: &[u8]) -> Result<(), JsError> {
        let shard = VectorShard::from_bytes(path, bytes).map_err(js_error)?;
        self.vectors.insert(start, shard).map_err(js_error)
    }

    /// Exact top-k among passages `start..end` (of those this scorer holds).
    #[wasm_bindgen(js_name = searchRows)]
    pub fn search_rows(
        &self,
        query: &[f32],
        k: usize,
        start: usize,
        end: usize,
    ) -> Result<PartialHits, JsError> {
        PartialHits::search(&self.vectors, query, k, start..end)
    }
}
