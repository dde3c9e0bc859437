//! `manifest.json`: what an index holds (passages, shards, model) and the size and
//! checksum of every file in it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::codebook::CODEBOOK_FILE;
use super::parts::{CENTROIDS_FILE, PARTS_FILE};
use super::vectors::VectorEncoding;
use crate::checksum::FileEntry;
use crate::error::{Error, Result};
use crate::model::{ModelBundle, Pooling, Similarity};

/// Index format this build reads and writes.
pub const INDEX_FORMAT: &str = "dotfind-index/5";
/// File name of the index manifest.
pub const INDEX_MANIFEST: &str = "manifest.json";
/// Largest file the indexer writes: under static hosts' per-file caps (Cloudflare Pages: 25 MiB).
pub const DEFAULT_MAX_FILE_BYTES: usize = 20 * 1024 * 1024;
/// Folder inside an index holding its copy of the model bundle.
pub const MODEL_DIR: &str = "model/";

/// The model an index was built with; queries must be encoded by the same bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexModel {
    pub model_id: String,
    /// sha256 of the bundle's `dotfind-model.json`: identifies the exact weights.
    pub bundle_sha256: String,
    pub dims: usize,
    pub pooling: Pooling,
    pub similarity: Similarity,
    /// The bundle's `model.graph` in [`MODEL_DIR`], in order: one file, or parts under the
    /// per-file cap to concatenate ([`graph_part_paths`] names them).
    pub graph_parts: Vec<String>,
    /// When passages were encoded by another bundle of the same checkpoint (typically the
    /// f32 twin of the int8 query model): its `bundle_sha256`. Absent when it is this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passage_bundle_sha256: Option<String>,
}

impl IndexModel {
    /// The bundle whose outputs the stored vectors are: what a reused vector must match.
    pub fn passage_bundle(&self) -> &str {
        self.passage_bundle_sha256
            .as_deref()
            .unwrap_or(&self.bundle_sha256)
    }
}

/// How an index is cut for fetching on demand (the parts themselves are in `parts.bin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexLayout {
    /// Vector lists (IVF partitions). One list: every query scans all vectors, exactly.
    pub lists: usize,
    /// Lists a query scans by default, those whose centroids score highest.
    pub probe: usize,
    /// Passage fragments.
    pub fragments: usize,
    /// Buckets of the id directory (candidate ids → passages, for re-ranking).
    pub id_buckets: usize,
    /// Buckets of the lexical index (BM25 postings by term).
    pub term_buckets: usize,
    /// Code bytes a passage in the lists (`vectors/codebook.bin`'s slices): what a query
    /// scans of a probed list. 0 exactly for an index of one list, scanned exactly.
    pub code_bytes: usize,
    /// Passages a search scores exactly, on their rows, after the codes ranked them (at
    /// least `k`); 0 for an index of one list.
    pub rescore: usize,
}

impl IndexLayout {
    /// Whether a search probing `depth` lists ranks by the codes first: any probe short of
    /// every list of an index that has codes.
    pub fn ranks_by_codes(&self, depth: usize) -> bool {
        self.code_bytes > 0 && depth < self.lists
    }
}

/// The contents of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexManifest {
    pub format: String,
    pub model: IndexModel,
    pub vector_encoding: VectorEncoding,
    pub passage_count: usize,
    pub document_count: usize,
    pub layout: IndexLayout,
    /// The files every visit loads, relative path → size and checksum: the model, the part
    /// table and the centroids. Parts are checked against the part table.
    pub files: BTreeMap<String, FileEntry>,
}

impl IndexManifest {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidManifest {
            file: INDEX_MANIFEST.into(),
            reason,
        };
        let m: IndexManifest = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("not a valid index manifest: {e}")))?;
        if m.format != INDEX_FORMAT {
            return Err(invalid(format!(
                "format is {:?}, this build reads {INDEX_FORMAT:?}",
                m.format
            )));
        }
        let l = m.layout;
        if l.lists == 0
            || l.fragments == 0
            || l.id_buckets == 0
            || l.term_buckets == 0
            || l.probe == 0
            || l.probe > l.lists
            || (l.lists > 1) != (l.code_bytes > 0)
            || (l.lists > 1) != (l.rescore > 0)
            || l.code_bytes > m.model.dims
        {
            return Err(invalid(format!(
                "layout needs at least one list, fragment, id bucket and term bucket, 1 ≤ probe ≤ lists, and code bytes (at most the dims) and a rescore depth exactly when there are several lists, not {l:?}"
            )));
        }
        let mut required = vec![descriptor_path(), tokenizer_path(), PARTS_FILE.to_string()];
        if l.lists > 1 {
            required.push(CENTROIDS_FILE.to_string());
            required.push(CODEBOOK_FILE.to_string());
        }
        for f in m.model.graph_parts.iter().chain(&required) {
            if !m.files.contains_key(f) {
                return Err(invalid(format!("no checksum recorded for {f}")));
            }
        }
        if m.model.graph_parts.is_empty() {
            return Err(invalid("no graph parts listed".into()));
        }
        if let Some(bad) = m.files.keys().find(|f| !is_plain_relative_path(f)) {
            return Err(invalid(format!(
                "file name {bad:?} is not a plain relative path"
            )));
        }
        Ok(m)
    }

    /// The manifest/model agreement every loader enforces: the very bundle the index was
    /// built with (same descriptor hash), hence the same vector space and dimensions.
    pub fn check_bundle(&self, bundle: &ModelBundle) -> Result<()> {
        let m = &self.model;
        if bundle.bundle_sha256 != m.bundle_sha256 {
            return Err(Error::ModelMismatch(format!(
                "index was built with bundle {} ({}), the model folder holds {} ({})",
                m.bundle_sha256, m.model_id, bundle.bundle_sha256, bundle.manifest.model_id
            )));
        }
        if bundle.manifest.hidden_size != m.dims {
            return Err(Error::ModelMismatch(format!(
                "index vectors have {} dimensions, the model outputs {}",
                m.dims, bundle.manifest.hidden_size
            )));
        }
        Ok(())
    }

    /// The size and checksum recorded for `file`.
    pub fn entry(&self, file: &str) -> Result<&FileEntry> {
        self.files.get(file).ok_or_else(|| Error::InvalidManifest {
            file: INDEX_MANIFEST.into(),
            reason: format!("no checksum recorded for {file}"),
        })
    }
}

/// Where an index keeps its bundle's descriptor.
pub fn descriptor_path() -> String {
    format!("{MODEL_DIR}{}", crate::model::bundle::MANIFEST_FILE)
}

/// Where an index keeps its bundle's tokenizer.
pub fn tokenizer_path() -> String {
    format!("{MODEL_DIR}{}", crate::model::bundle::TOKENIZER_FILE)
}

/// Where an index keeps its bundle's token-embedding chunks' checksums (bundles that keep
/// the table apart); the chunks themselves are beside it, fetched on demand, not listed.
pub fn token_checksums_path() -> String {
    format!("{MODEL_DIR}{}", crate::model::token_table::CHECKSUMS_FILE)
}

/// The files a `model.graph` of `len` bytes is written as in an index whose files are at
/// most `max_file_bytes`: itself, or numbered parts (`model.graph.000`, …) to concatenate.
pub fn graph_part_paths(len: usize, max_file_bytes: usize) -> Vec<String> {
    let graph = crate::model::bundle::GRAPH_FILE;
    if len <= max_file_bytes {
        return vec![format!("{MODEL_DIR}{graph}")];
    }
    (0..len.div_ceil(max_file_bytes.max(1)))
        .map(|i| format!("{MODEL_DIR}{graph}.{i:03}"))
        .collect()
}

/// A path a static host serves under the index folder and a reader may open under it:
/// relative, `/`-separated, of plain names (no `..`, no empty or hidden parts).
fn is_plain_relative_path(path: &str) -> bool {
    path.split('/').all(|part| {
        !part.is_empty()
            && !part.starts_with('.')
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_graphs_are_named_in_parts() {
        assert_eq!(graph_part_paths(10, 10), ["model/model.graph"]);
        assert_eq!(
            graph_part_paths(21, 10),
            [
                "model/model.graph.000",
                "model/model.graph.001",
                "model/model.graph.002"
            ]
        );
    }

    #[test]
    fn only_plain_relative_paths_are_index_files() {
        for ok in [
            "manifest.json",
            "model/model.graph.000",
            "vectors/00001.bin",
        ] {
            assert!(is_plain_relative_path(ok), "{ok}");
        }
        for bad in [
            "../x",
            "/etc/passwd",
            "a//b",
            ".hidden",
            "a/../b",
            "a\\b",
            "",
            "a b",
        ] {
            assert!(!is_plain_relative_path(bad), "{bad}");
        }
    }
}
