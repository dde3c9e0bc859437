//! Model bundles: the folder `dotfind-model.json` + `model.onnx` + `tokenizer.json`, and
//! `model.graph` once compiled (`dotfind compile`; see [`crate::compiled_graph`]).
//!
//! The bundle is the unit that travels from the offline preparation step to the browser,
//! so it is verified in one place — here — from bytes, whatever fetched them (the file
//! system natively, `fetch` in wasm). Nothing downstream re-checks.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// File name of the bundle descriptor.
pub const MANIFEST_FILE: &str = "dotfind-model.json";
/// File name of the ONNX graph (weights inline, so it loads from bytes).
pub const MODEL_FILE: &str = "model.onnx";
/// File name of the compiled graph: `model.onnx` already typed and decluttered by tract, in
/// dotfind's form, so the browser skips the ONNX parser and tract's analysis at start-up.
pub const COMPILED_MODEL_FILE: &str = "model.graph";
/// File name of the Hugging Face tokenizer definition.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Descriptor format this build reads; bumped on incompatible changes.
pub const BUNDLE_FORMAT: &str = "dotfind-model/1";

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

/// Size and checksums of one file (of a bundle or an index), as recorded when it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The file's identity: what tools compare and what a descriptor's own sha256 (a bundle's
    /// identity) vouches for.
    pub sha256: String,
    pub bytes: u64,
    /// xxh3-128 (lower-case hex, 32 digits), recorded next to `sha256` by this dotfind; when
    /// present it is the digest readers verify. The same check against damaged or mixed-up
    /// files, made cheap where it runs on every page load: in the browser's wasm a 23 MB
    /// model hashes in ~10 ms, where WebCrypto's sha256 held Chromium's main thread ~40 ms.
    /// (Neither is a defence against a hostile host, which also serves the code.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xxh3_128: Option<String>,
}

/// A digest computed from a file's bytes (by dotfind, or for sha256 by WebCrypto), to compare
/// with what a manifest recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Digest {
    Sha256(String),
    Xxh3_128(String),
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
    /// `none` (f32) or the int8 scheme used; informational.
    pub quantization: String,
    /// sha256 and size of `model.onnx`, `tokenizer.json` and, once compiled, `model.graph`.
    pub files: BTreeMap<String, FileEntry>,
}

impl BundleManifest {
    /// The graph file to load: the compiled one when the bundle has it (same outputs, bit
    /// for bit, and a faster start), else `model.onnx`. The descriptor decides, not the
    /// bytes, so a damaged file is reported under its own name.
    pub fn model_file(&self) -> &'static str {
        if self.files.contains_key(COMPILED_MODEL_FILE) {
            COMPILED_MODEL_FILE
        } else {
            MODEL_FILE
        }
    }

    /// Checks that `other` (a bundle meant to encode passages for this query bundle, e.g.
    /// its f32 twin) embeds text into the same space: same checkpoint, tokenizer, pooling,
    /// similarity, dimensions and passage handling. Only the numeric precision may differ.
    pub fn check_same_space(&self, other: &BundleManifest) -> Result<()> {
        let tokenizer = |m: &BundleManifest| {
            m.files
                .get("tokenizer.json")
                .map(|f| f.sha256.clone())
                .unwrap_or_default()
        };
        let fields = [
            ("model_id", self.model_id.clone(), other.model_id.clone()),
            (
                "hidden_size",
                self.hidden_size.to_string(),
                other.hidden_size.to_string(),
            ),
            (
                "pooling",
                format!("{:?}", self.pooling).to_lowercase(),
                format!("{:?}", other.pooling).to_lowercase(),
            ),
            (
                "similarity",
                format!("{:?}", self.similarity).to_lowercase(),
                format!("{:?}", other.similarity).to_lowercase(),
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
            ("tokenizer.json sha256", tokenizer(self), tokenizer(other)),
        ];
        match fields.into_iter().find(|(_, a, b)| a != b) {
            None => Ok(()),
            Some((field, query, passage)) => Err(Error::ModelMismatch(format!(
                "the passage model's {field} is {passage:?}, the query model's is {query:?}"
            ))),
        }
    }
}

impl FileEntry {
    /// The entry recording `bytes`: size and both digests.
    pub fn of(bytes: &[u8]) -> Self {
        FileEntry {
            sha256: sha256_hex(bytes),
            bytes: bytes.len() as u64,
            xxh3_128: Some(xxh3_128_hex(bytes)),
        }
    }

    /// Whether [`FileEntry::verify`] checks xxh3-128 (recorded) rather than sha256: a caller
    /// that could hash sha256 faster elsewhere (WebCrypto) only needs to when it does not.
    pub fn checks_xxh3(&self) -> bool {
        self.xxh3_128.is_some()
    }

    /// Checks a file's bytes against this entry: size first (a truncated download is
    /// reported as such), then xxh3-128 if recorded, else sha256. The one place any dotfind
    /// file is verified.
    pub fn verify(&self, file: &str, bytes: &[u8]) -> Result<()> {
        self.verify_size(file, bytes.len())?;
        self.verify_digest(file, bytes.len(), &self.digest_of(bytes))
    }

    /// The digest of `bytes` that [`FileEntry::verify`] compares with this entry.
    pub fn digest_of(&self, bytes: &[u8]) -> Digest {
        if self.checks_xxh3() {
            Digest::Xxh3_128(xxh3_128_hex(bytes))
        } else {
            Digest::Sha256(sha256_hex(bytes))
        }
    }

    /// As [`FileEntry::digest_of`], reusing `known` (a digest already computed from `bytes`)
    /// when it is the kind this entry checks, e.g. for a file already verified against another
    /// manifest: only a digest computed from the bytes is ever compared, never one a manifest
    /// recorded.
    pub fn digest_using(&self, known: &Digest, bytes: &[u8]) -> Digest {
        match known {
            Digest::Xxh3_128(_) if self.checks_xxh3() => known.clone(),
            Digest::Sha256(_) if !self.checks_xxh3() => known.clone(),
            _ => self.digest_of(bytes),
        }
    }

    /// As [`FileEntry::verify`], for a file of `len` bytes whose digest the caller already
    /// has (see [`Digest`]).
    pub fn verify_digest(&self, file: &str, len: usize, digest: &Digest) -> Result<()> {
        self.verify_size(file, len)?;
        let (algorithm, expected, actual) = match digest {
            Digest::Sha256(actual) => ("sha256", Some(&self.sha256), actual),
            Digest::Xxh3_128(actual) => ("xxh3-128", self.xxh3_128.as_ref(), actual),
        };
        if expected != Some(actual) {
            return Err(Error::ChecksumMismatch {
                file: file.into(),
                algorithm,
                expected: expected.map_or_else(|| "none".into(), String::clone),
                actual: actual.clone(),
            });
        }
        Ok(())
    }

    /// The size check alone, done first so a truncated file is reported (and not hashed) as such.
    pub(crate) fn verify_size(&self, file: &str, len: usize) -> Result<()> {
        if len as u64 != self.bytes {
            return Err(Error::DataCorruption {
                file: file.into(),
                reason: format!("{len} bytes, manifest says {}", self.bytes),
            });
        }
        Ok(())
    }
}

/// A verified bundle held in memory: descriptor plus the raw bytes it vouches for.
#[derive(Debug, Clone)]
pub struct ModelBundle {
    pub manifest: BundleManifest,
    /// The descriptor exactly as read: copied verbatim into indexes, since its hash is the
    /// bundle's identity.
    pub manifest_json: Vec<u8>,
    /// The bytes of the graph file [`BundleManifest::model_file`] names.
    pub model: Vec<u8>,
    pub tokenizer_json: Vec<u8>,
    /// sha256 of the descriptor bytes: changes whenever any bundle file changes,
    /// so an index can record exactly which model produced it.
    pub bundle_sha256: String,
}

/// Lower-case hex sha256, the form used in every manifest.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Lower-case hex xxh3-128 (seed 0), in xxHash's canonical (big-endian) form: what
/// [`FileEntry::xxh3_128`] records.
pub fn xxh3_128_hex(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

impl BundleManifest {
    /// Parses and sanity-checks a descriptor; `Err` names the field at fault.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidManifest {
            file: MANIFEST_FILE.into(),
            reason,
        };
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
        for file in [MODEL_FILE, TOKENIZER_FILE] {
            if !manifest.files.contains_key(file) {
                return Err(invalid(format!("no checksum recorded for {file}")));
            }
        }
        Ok(manifest)
    }
}

impl ModelBundle {
    /// Verifies the three files against each other. `model` is the graph file the
    /// descriptor names ([`BundleManifest::model_file`]). The heavy parsing (graph,
    /// tokenizer) happens in [`crate::encode::Encoder::new`]; this only proves the bytes are
    /// the ones the descriptor was written for.
    pub fn from_bytes(
        manifest_json: &[u8],
        model: Vec<u8>,
        tokenizer_json: Vec<u8>,
    ) -> Result<Self> {
        Self::verified(manifest_json, model, tokenizer_json, None)
    }

    /// As [`ModelBundle::from_bytes`], with digests of the graph file and `tokenizer.json`
    /// (in that order) the caller already has (see [`FileEntry::verify_digest`]).
    pub fn from_bytes_with_digests(
        manifest_json: &[u8],
        model: Vec<u8>,
        tokenizer_json: Vec<u8>,
        digests: &[Digest; 2],
    ) -> Result<Self> {
        Self::verified(manifest_json, model, tokenizer_json, Some(digests))
    }

    fn verified(
        manifest_json: &[u8],
        model: Vec<u8>,
        tokenizer_json: Vec<u8>,
        digests: Option<&[Digest; 2]>,
    ) -> Result<Self> {
        let manifest = BundleManifest::from_json(manifest_json)?;
        let files = [
            (manifest.model_file(), &model),
            (TOKENIZER_FILE, &tokenizer_json),
        ];
        for (i, (file, bytes)) in files.into_iter().enumerate() {
            let entry = &manifest.files[file];
            match digests {
                Some(digests) => entry.verify_digest(file, bytes.len(), &digests[i])?,
                None => entry.verify(file, bytes)?,
            }
        }
        Ok(ModelBundle {
            manifest,
            manifest_json: manifest_json.to_vec(),
            model,
            tokenizer_json,
            bundle_sha256: sha256_hex(manifest_json),
        })
    }

    /// Reads and verifies a bundle folder.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(dir: &std::path::Path) -> Result<Self> {
        let read = |file: &str| read_bundle_file(dir, file);
        let manifest_json = read(MANIFEST_FILE)?;
        let model_file = BundleManifest::from_json(&manifest_json)?.model_file();
        let model =
            if dir.join(model_file).exists() || !dir.join(format!("{model_file}.000")).exists() {
                read(model_file)?
            } else {
                // Split for static hosts' per-file caps: model.graph.000, .001, ... in order.
                let mut bytes = Vec::new();
                for i in 0.. {
                    let part = format!("{model_file}.{i:03}");
                    if !dir.join(&part).exists() {
                        break;
                    }
                    bytes.extend_from_slice(&read(&part)?);
                }
                bytes
            };
        let tokenizer = read(TOKENIZER_FILE)?;
        Self::from_bytes(&manifest_json, model, tokenizer)
    }
}

/// One file of the bundle folder `dir`; a missing one is [`Error::MissingFile`].
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn read_bundle_file(dir: &std::path::Path, file: &str) -> Result<Vec<u8>> {
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

    fn manifest_for(model: &[u8], tokenizer: &[u8]) -> String {
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
                "model.onnx": {"sha256": sha256_hex(model), "bytes": model.len()},
                "tokenizer.json": {"sha256": sha256_hex(tokenizer), "bytes": tokenizer.len()},
            }
        })
        .to_string()
    }

    /// As `manifest_for`, with xxh3-128 recorded too (what this dotfind writes).
    fn manifest_with_xxh3(model: &[u8], tokenizer: &[u8]) -> String {
        let mut m: serde_json::Value =
            serde_json::from_str(&manifest_for(model, tokenizer)).unwrap();
        m["files"]["model.onnx"] = serde_json::to_value(FileEntry::of(model)).unwrap();
        m["files"]["tokenizer.json"] = serde_json::to_value(FileEntry::of(tokenizer)).unwrap();
        m.to_string()
    }

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// Expected values from xxHash 0.8.4's C reference (Python `xxhash.xxh3_128_hexdigest`);
    /// the 10240-byte input takes the long-input path (over 240 bytes).
    #[test]
    fn xxh3_128_matches_the_reference_implementation() {
        assert_eq!(xxh3_128_hex(b""), "99aa06d3014798d86001c324468d497f");
        assert_eq!(xxh3_128_hex(b"abc"), "06b05ab6733a618578af5f94892f3950");
        let long: Vec<u8> = (0..40).flat_map(|_| 0..=255u8).collect();
        assert_eq!(xxh3_128_hex(&long), "1cb22534d0d96975c03d2231ab9348f3");
    }

    #[test]
    fn recorded_xxh3_is_what_is_checked() {
        let m = manifest_with_xxh3(b"onnx", b"{}");
        let b = ModelBundle::from_bytes(m.as_bytes(), b"onnx".to_vec(), b"{}".to_vec()).unwrap();
        assert!(b.manifest.files["model.onnx"].checks_xxh3());
        let err =
            ModelBundle::from_bytes(m.as_bytes(), b"onnY".to_vec(), b"{}".to_vec()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "model.onnx: xxh3-128 mismatch: manifest says {}, file has {}",
                xxh3_128_hex(b"onnx"),
                xxh3_128_hex(b"onnY")
            )
        );
        // Digests known elsewhere: a sha256 (WebCrypto) is checked against the recorded
        // sha256, an xxh3-128 against the recorded xxh3-128.
        let with = |model: Digest| {
            let tokenizer = Digest::Sha256(sha256_hex(b"{}"));
            ModelBundle::from_bytes_with_digests(
                m.as_bytes(),
                b"onnx".to_vec(),
                b"{}".to_vec(),
                &[model, tokenizer],
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        assert_eq!(with(Digest::Sha256(sha256_hex(b"onnx"))), Ok(()));
        assert_eq!(with(Digest::Xxh3_128(xxh3_128_hex(b"onnx"))), Ok(()));
        assert_eq!(
            with(Digest::Xxh3_128(xxh3_128_hex(b"onnY"))),
            Err(format!(
                "model.onnx: xxh3-128 mismatch: manifest says {}, file has {}",
                xxh3_128_hex(b"onnx"),
                xxh3_128_hex(b"onnY")
            ))
        );
        // A descriptor recording only sha256 cannot vouch for an xxh3-128.
        let old = manifest_for(b"onnx", b"{}");
        let err = ModelBundle::from_bytes_with_digests(
            old.as_bytes(),
            b"onnx".to_vec(),
            b"{}".to_vec(),
            &[
                Digest::Xxh3_128(xxh3_128_hex(b"onnx")),
                Digest::Sha256(sha256_hex(b"{}")),
            ],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "model.onnx: xxh3-128 mismatch: manifest says none, file has {}",
                xxh3_128_hex(b"onnx")
            )
        );
    }

    #[test]
    fn known_digests_are_reused_only_when_of_the_kind_checked() {
        let with_both = FileEntry::of(b"bytes");
        let sha_only = FileEntry {
            xxh3_128: None,
            ..with_both.clone()
        };
        let xxh3 = Digest::Xxh3_128(xxh3_128_hex(b"bytes"));
        let sha = Digest::Sha256(sha256_hex(b"bytes"));
        // Reused as is (a deliberately wrong one shows it was not recomputed) …
        let stale = Digest::Xxh3_128("0".repeat(32));
        assert_eq!(with_both.digest_using(&stale, b"bytes"), stale);
        assert_eq!(sha_only.digest_using(&sha, b"bytes"), sha);
        // … or computed from the bytes when of the other kind.
        assert_eq!(with_both.digest_using(&sha, b"bytes"), xxh3);
        assert_eq!(sha_only.digest_using(&xxh3, b"bytes"), sha);
        assert_eq!(sha_only.digest_of(b"bytes"), sha);
    }

    #[test]
    fn verified_bundle_keeps_bytes_and_descriptor_hash() {
        let m = manifest_for(b"onnx", b"{}");
        let b = ModelBundle::from_bytes(m.as_bytes(), b"onnx".to_vec(), b"{}".to_vec()).unwrap();
        assert_eq!(b.manifest.pooling, Pooling::Cls);
        assert_eq!(b.bundle_sha256, sha256_hex(m.as_bytes()));
    }

    #[test]
    fn tampered_model_names_file_and_both_hashes() {
        let m = manifest_for(b"onnx", b"{}");
        let err =
            ModelBundle::from_bytes(m.as_bytes(), b"onnY".to_vec(), b"{}".to_vec()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "model.onnx: sha256 mismatch: manifest says {}, file has {}",
                sha256_hex(b"onnx"),
                sha256_hex(b"onnY")
            )
        );
    }

    #[test]
    fn digests_computed_elsewhere_are_checked_like_hashed_bytes() {
        let m = manifest_for(b"onnx", b"{}");
        let digests = |model: &[u8]| {
            [
                Digest::Sha256(sha256_hex(model)),
                Digest::Sha256(sha256_hex(b"{}")),
            ]
        };
        let ok = ModelBundle::from_bytes_with_digests(
            m.as_bytes(),
            b"onnx".to_vec(),
            b"{}".to_vec(),
            &digests(b"onnx"),
        )
        .unwrap();
        assert_eq!(ok.bundle_sha256, sha256_hex(m.as_bytes()));
        // A wrong digest is the same error as hashing the wrong bytes; size is checked first.
        let wrong = ModelBundle::from_bytes_with_digests(
            m.as_bytes(),
            b"onnx".to_vec(),
            b"{}".to_vec(),
            &digests(b"onnY"),
        )
        .unwrap_err();
        let hashed =
            ModelBundle::from_bytes(m.as_bytes(), b"onnY".to_vec(), b"{}".to_vec()).unwrap_err();
        assert_eq!(wrong.to_string(), hashed.to_string());
        let short = ModelBundle::from_bytes_with_digests(
            m.as_bytes(),
            b"on".to_vec(),
            b"{}".to_vec(),
            &digests(b"onnx"),
        )
        .unwrap_err();
        assert_eq!(
            short.to_string(),
            "data corruption in model.onnx: 2 bytes, manifest says 4"
        );
    }

    #[test]
    fn truncated_file_is_reported_as_corruption() {
        let m = manifest_for(b"onnx", b"{}");
        let err =
            ModelBundle::from_bytes(m.as_bytes(), b"on".to_vec(), b"{}".to_vec()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "data corruption in model.onnx: 2 bytes, manifest says 4"
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
            "dotfind-model.json: format is \"dotfind-model/99\", this build reads \"dotfind-model/1\""
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
    }
}
