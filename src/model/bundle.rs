//! Model bundles: the folder `dotfind-model.json` + `model.graph` + `tokenizer.json`, and
//! for bundles that keep their token embeddings apart ([`crate::model::token_table`]),
//! `token-embeddings/` (its checksums file verified here, its chunks where they are added).
//!
//! The bundle is the unit that travels from model preparation to the browser, so it is
//! verified in one place — here — from bytes, whatever fetched them (the file system
//! natively, `fetch` in wasm). Nothing downstream re-checks. `model.graph` is the compiled
//! graph ([`crate::model::graph`]); a bundle may also keep the `model.onnx` it was compiled
//! from, which `dotfind compile` reads and nothing else does.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::checksum::{sha256_hex, FileEntry};
use crate::error::{Error, Result};
use crate::model::token_table::{TokenTableSpec, CHECKSUMS_FILE};

/// File name of the bundle descriptor.
pub const MANIFEST_FILE: &str = "dotfind-model.json";
/// File name of the compiled graph every loader reads.
pub const GRAPH_FILE: &str = "model.graph";
/// File name of the ONNX graph `dotfind compile` compiles (not loaded by anything else).
pub const ONNX_FILE: &str = "model.onnx";
/// File name of the Hugging Face tokenizer definition.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Descriptor format this build reads; bumped on incompatible changes.
pub const BUNDLE_FORMAT: &str = "dotfind-model/3";

/// How token vectors become one passage/query vector. The reference model uses CLS;
/// sentence-transformers checkpoints usually use the attention-masked mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    Cls,
    Mean,
}

/// How query and passage vectors are compared. `Cosine` bundles get L2-normalized
/// vectors, so scoring is always a dot product downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Similarity {
    Dot,
    Cosine,
}

/// How an encoder runs the linear layers of its graph (`x·W + b`, constant `W`, or int8
/// codes times column scales): the weights are stored however the graph says
/// ([`crate::model::storage`]); this is compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinearCompute {
    /// As written: f32 (what passages are encoded with).
    #[default]
    F32,
    /// int8, each token's activations with their own scale, weights 7-bit per column
    /// ([`crate::ops::int8_per_token`]): the fast query path, near f32's vectors.
    Int8PerToken,
}

impl std::str::FromStr for Pooling {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cls" => Ok(Pooling::Cls),
            "mean" => Ok(Pooling::Mean),
            _ => Err(format!("unknown pooling {s:?} (expected cls or mean)")),
        }
    }
}

impl std::str::FromStr for Similarity {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "dot" => Ok(Similarity::Dot),
            "cosine" => Ok(Similarity::Cosine),
            _ => Err(format!("unknown similarity {s:?} (expected dot or cosine)")),
        }
    }
}

/// The contents of `dotfind-model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    pub format: String,
    /// Where the weights came from (a hub id or a description); part of an index's identity.
    pub model_id: String,
    /// `bert` or `distilbert`; informational, the graph is what runs.
    pub architecture: String,
    pub hidden_size: usize,
    pub pooling: Pooling,
    pub similarity: Similarity,
    /// Queries are truncated to this many tokens, special tokens included.
    pub max_query_tokens: usize,
    /// Passages are truncated to this many tokens, special tokens included.
    pub max_passage_tokens: usize,
    #[serde(default)]
    pub query_prefix: String,
    #[serde(default)]
    pub passage_prefix: String,
    /// How weights are stored and computed with, in words; informational.
    pub quantization: String,
    #[serde(default)]
    pub linear_compute: LinearCompute,
    /// Present when the token embeddings are kept apart from the graph, in chunk files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_embeddings: Option<TokenTableSpec>,
    /// Size and checksum of `model.graph`, `tokenizer.json` and `model.onnx` if kept.
    pub files: BTreeMap<String, FileEntry>,
}

impl BundleManifest {
    /// Parses and sanity-checks a descriptor of a compiled bundle; `Err` names the field at
    /// fault.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let manifest = Self::from_json_uncompiled(bytes)?;
        if !manifest.files.contains_key(TOKENIZER_FILE) {
            return Err(invalid(format!(
                "no checksum recorded for {TOKENIZER_FILE}"
            )));
        }
        if !manifest.files.contains_key(GRAPH_FILE) {
            return Err(invalid(format!(
                "no checksum recorded for {GRAPH_FILE}: the bundle is not compiled \
                 (`dotfind compile` adds it)"
            )));
        }
        if let Some(spec) = &manifest.token_embeddings {
            spec.validate().map_err(invalid)?;
            if spec.dims != manifest.hidden_size {
                return Err(invalid(format!(
                    "token_embeddings has {} dims, hidden_size is {}",
                    spec.dims, manifest.hidden_size
                )));
            }
            if !manifest.files.contains_key(CHECKSUMS_FILE) {
                return Err(invalid(format!(
                    "no checksum recorded for {CHECKSUMS_FILE}"
                )));
            }
        }
        Ok(manifest)
    }

    /// As [`BundleManifest::from_json`], for a descriptor that may record no files yet (what
    /// `dotfind compile` reads).
    pub fn from_json_uncompiled(bytes: &[u8]) -> Result<Self> {
        if bytes.is_empty() {
            return Err(invalid("empty file".into()));
        }
        let manifest: BundleManifest = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("not a valid descriptor: {e}")))?;
        if manifest.format != BUNDLE_FORMAT {
            return Err(invalid(format!(
                "format is {:?}, this build reads {BUNDLE_FORMAT:?}",
                manifest.format
            )));
        }
        if manifest.hidden_size == 0 {
            return Err(invalid("hidden_size must be positive".into()));
        }
        for (field, value) in [
            ("max_query_tokens", manifest.max_query_tokens),
            ("max_passage_tokens", manifest.max_passage_tokens),
        ] {
            // 3 = [CLS] + one token + [SEP]; 8192 is far beyond any BERT position table.
            if !(3..=8192).contains(&value) {
                return Err(invalid(format!("{field} is {value}, expected 3..=8192")));
            }
        }
        Ok(manifest)
    }

    /// Checks that `other` (a bundle meant to encode passages for this query bundle, e.g.
    /// its f32 twin) embeds text into the same space: same checkpoint, tokenizer, pooling,
    /// similarity, dimensions and passage handling. Only the numeric precision may differ.
    pub fn check_same_space(&self, other: &BundleManifest) -> Result<()> {
        let tokenizer = |m: &BundleManifest| {
            m.files
                .get(TOKENIZER_FILE)
                .map(|f| f.xxh3_128.clone())
                .unwrap_or_default()
        };
        let lower = |x: String| x.to_lowercase();
        let fields = [
            ("model_id", self.model_id.clone(), other.model_id.clone()),
            (
                "hidden_size",
                self.hidden_size.to_string(),
                other.hidden_size.to_string(),
            ),
            (
                "pooling",
                lower(format!("{:?}", self.pooling)),
                lower(format!("{:?}", other.pooling)),
            ),
            (
                "similarity",
                lower(format!("{:?}", self.similarity)),
                lower(format!("{:?}", other.similarity)),
            ),
            (
                "max_passage_tokens",
                self.max_passage_tokens.to_string(),
                other.max_passage_tokens.to_string(),
            ),
            (
                "passage_prefix",
                self.passage_prefix.clone(),
                other.passage_prefix.clone(),
            ),
            ("tokenizer.json checksum", tokenizer(self), tokenizer(other)),
        ];
        match fields.into_iter().find(|(_, a, b)| a != b) {
            None => Ok(()),
            Some((field, query, passage)) => Err(Error::ModelMismatch(format!(
                "the passage model's {field} is {passage:?}, the query model's is {query:?}"
            ))),
        }
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidManifest {
        file: MANIFEST_FILE.into(),
        reason,
    }
}

/// A verified bundle held in memory: descriptor plus the raw bytes it vouches for.
#[derive(Debug, Clone)]
pub struct ModelBundle {
    pub manifest: BundleManifest,
    /// The descriptor exactly as read: copied verbatim into indexes, since its hash is the
    /// bundle's identity.
    pub manifest_json: Vec<u8>,
    /// The bytes of `model.graph`.
    pub graph: Vec<u8>,
    pub tokenizer_json: Vec<u8>,
    /// The verified `token-embeddings/checksums.bin`, for bundles that keep the table apart.
    pub token_checksums: Option<Vec<u8>>,
    /// Token-embedding chunk files already at hand, by number (natively: all of them;
    /// in a browser none, fetched as queries need them). Verified when the encoder adds them.
    pub token_chunks: Vec<(usize, Vec<u8>)>,
    /// sha256 of the descriptor bytes: changes whenever any bundle file changes, so an
    /// index can record exactly which model produced it.
    pub bundle_sha256: String,
}

impl ModelBundle {
    /// Verifies the files against the descriptor. The heavy parsing (graph, tokenizer)
    /// happens in [`crate::model::Encoder`]; this only proves the bytes are the ones the
    /// descriptor was written for.
    pub fn from_bytes(
        manifest_json: &[u8],
        graph: Vec<u8>,
        tokenizer_json: Vec<u8>,
    ) -> Result<Self> {
        Self::from_checked(manifest_json, graph, tokenizer_json, [None, None])
    }

    /// Adds the token table's checksums file (verified against the descriptor), for bundles
    /// that keep their token embeddings apart.
    pub fn with_token_checksums(mut self, bytes: Vec<u8>) -> Result<Self> {
        let Some(entry) = self.manifest.files.get(CHECKSUMS_FILE) else {
            return Err(invalid(format!(
                "no checksum recorded for {CHECKSUMS_FILE}, yet one was given"
            )));
        };
        entry.verify(CHECKSUMS_FILE, &bytes)?;
        self.token_checksums = Some(bytes);
        Ok(self)
    }

    /// As [`ModelBundle::from_bytes`], with the xxh3-128 of the graph and of the tokenizer
    /// (in that order) where the caller already computed them from these very bytes.
    pub fn from_checked(
        manifest_json: &[u8],
        graph: Vec<u8>,
        tokenizer_json: Vec<u8>,
        computed: [Option<String>; 2],
    ) -> Result<Self> {
        let manifest = BundleManifest::from_json(manifest_json)?;
        let files = [(GRAPH_FILE, &graph), (TOKENIZER_FILE, &tokenizer_json)];
        for ((file, bytes), computed) in files.into_iter().zip(computed) {
            let entry = &manifest.files[file];
            match computed {
                Some(xxh3) => entry.verify_computed(file, bytes.len(), &xxh3)?,
                None => entry.verify(file, bytes).map(drop)?,
            }
        }
        Ok(ModelBundle {
            manifest,
            manifest_json: manifest_json.to_vec(),
            graph,
            tokenizer_json,
            token_checksums: None,
            token_chunks: Vec::new(),
            bundle_sha256: sha256_hex(manifest_json),
        })
    }

    /// Reads and verifies a bundle folder.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(dir: &std::path::Path) -> Result<Self> {
        let manifest_json = read_bundle_file(dir, MANIFEST_FILE)?;
        let manifest = BundleManifest::from_json_uncompiled(&manifest_json)?;
        if !manifest.files.contains_key(GRAPH_FILE) {
            return Err(Error::NotCompiled {
                bundle: dir.display().to_string(),
            });
        }
        let graph = read_bundle_file(dir, GRAPH_FILE)?;
        let tokenizer = read_bundle_file(dir, TOKENIZER_FILE)?;
        let bundle = Self::from_bytes(&manifest_json, graph, tokenizer)?;
        let Some(spec) = bundle.manifest.token_embeddings.clone() else {
            return Ok(bundle);
        };
        let mut bundle = bundle.with_token_checksums(read_bundle_file(dir, CHECKSUMS_FILE)?)?;
        for chunk in 0..spec.chunk_count() {
            let bytes = read_bundle_file(dir, &TokenTableSpec::chunk_path(chunk))?;
            bundle.token_chunks.push((chunk, bytes));
        }
        Ok(bundle)
    }
}

/// One file of the bundle folder `dir`; a missing one is [`Error::MissingFile`].
#[cfg(not(target_arch = "wasm32"))]
pub fn read_bundle_file(dir: &std::path::Path, file: &str) -> Result<Vec<u8>> {
    let path = dir.join(file);
    std::fs::read(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::MissingFile {
                bundle: dir.display().to_string(),
                file: file.into(),
            }
        } else {
            Error::io(path, source)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::xxh3_128_hex;

    fn manifest_for(graph: &[u8], tokenizer: &[u8]) -> String {
        serde_json::json!({
            "format": BUNDLE_FORMAT,
            "model_id": "test",
            "architecture": "distilbert",
            "hidden_size": 4,
            "pooling": "cls",
            "similarity": "dot",
            "max_query_tokens": 30,
            "max_passage_tokens": 200,
            "quantization": "none",
            "files": {
                "model.graph": FileEntry::of(graph),
                "tokenizer.json": FileEntry::of(tokenizer),
            }
        })
        .to_string()
    }

    #[test]
    fn verified_bundle_keeps_bytes_and_descriptor_hash() {
        let m = manifest_for(b"graph", b"{}");
        let b = ModelBundle::from_bytes(m.as_bytes(), b"graph".to_vec(), b"{}".to_vec()).unwrap();
        assert_eq!(b.manifest.pooling, Pooling::Cls);
        assert_eq!(b.bundle_sha256, sha256_hex(m.as_bytes()));
        assert_eq!(b.graph, b"graph");
    }

    #[test]
    fn tampered_and_truncated_files_are_named() {
        let m = manifest_for(b"graph", b"{}");
        let err =
            ModelBundle::from_bytes(m.as_bytes(), b"grapH".to_vec(), b"{}".to_vec()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "model.graph: xxh3-128 mismatch: manifest says {}, file has {}",
                xxh3_128_hex(b"graph"),
                xxh3_128_hex(b"grapH")
            )
        );
        let err =
            ModelBundle::from_bytes(m.as_bytes(), b"gr".to_vec(), b"{}".to_vec()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "data corruption in model.graph: 2 bytes, manifest says 5"
        );
        // A checksum the caller computed is compared as hashing the bytes would.
        let computed = [Some(xxh3_128_hex(b"grapH")), None];
        let err =
            ModelBundle::from_checked(m.as_bytes(), b"graph".to_vec(), b"{}".to_vec(), computed)
                .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("model.graph: xxh3-128 mismatch"),
            "{err}"
        );
    }

    #[test]
    fn bad_descriptors_name_the_problem() {
        let err = BundleManifest::from_json(b"").unwrap_err();
        assert_eq!(err.to_string(), "dotfind-model.json: empty file");
        let err = BundleManifest::from_json(b"{not json").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("dotfind-model.json: not a valid descriptor:"),
            "{err}"
        );
        let good = manifest_for(b"x", b"y");
        let bad = good.replace(BUNDLE_FORMAT, "dotfind-model/99");
        assert_eq!(
            BundleManifest::from_json(bad.as_bytes()).unwrap_err().to_string(),
            "dotfind-model.json: format is \"dotfind-model/99\", this build reads \"dotfind-model/3\""
        );
        let bad = good.replace("\"max_query_tokens\":30", "\"max_query_tokens\":1");
        assert_eq!(
            BundleManifest::from_json(bad.as_bytes())
                .unwrap_err()
                .to_string(),
            "dotfind-model.json: max_query_tokens is 1, expected 3..=8192"
        );
        let bad = good.replace("\"cls\"", "\"max\"");
        assert!(BundleManifest::from_json(bad.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("unknown variant `max`"));
        let uncompiled = good.replace("\"model.graph\"", "\"model.onnx\"");
        assert!(BundleManifest::from_json_uncompiled(uncompiled.as_bytes()).is_ok());
        assert_eq!(
            BundleManifest::from_json(uncompiled.as_bytes())
                .unwrap_err()
                .to_string(),
            "dotfind-model.json: no checksum recorded for model.graph: the bundle is not \
             compiled (`dotfind compile` adds it)"
        );
    }
}
