//! One error type for the whole crate, so native callers match on variants and the
//! wasm edge turns every failure into a JS `Error` carrying the same message.

use std::path::PathBuf;

/// Everything that can go wrong between bytes on disk (or on the wire) and a ranked list.
///
/// Messages name the file or input at fault: a user holding only the message should
/// know which file to fix or re-download.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written at all.
    /// (The cause is part of the message, not a chained source, so it prints once.)
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },

    /// A bundle folder lacks its compiled graph (`model.graph`), which every loader reads.
    #[error(
        "model bundle {bundle} is not compiled: run `dotfind compile --model {bundle}` first \
         (every loader reads its model.graph)"
    )]
    NotCompiled { bundle: String },

    /// A required file of a model bundle is absent.
    #[error("model bundle {bundle}: missing file {file}")]
    MissingFile { bundle: String, file: String },

    /// A file's bytes do not hash to what its manifest promised: a damaged download or
    /// cache, or files from two different builds mixed together.
    #[error("{file}: xxh3-128 mismatch: manifest says {expected}, file has {actual}")]
    ChecksumMismatch {
        file: String,
        expected: String,
        actual: String,
    },

    /// A manifest (`dotfind-model.json`, later `manifest.json`) is malformed or
    /// describes something this build cannot use.
    #[error("{file}: {reason}")]
    InvalidManifest { file: String, reason: String },

    /// The graph (`model.graph`, or the `model.onnx` it is compiled from) could not be
    /// parsed, typed or optimized, or lacks the inputs/outputs the bundle format requires.
    #[error("{file}: {reason}")]
    InvalidModel { file: String, reason: String },

    /// tokenizer.json could not be parsed or applied.
    #[error("tokenizer.json: {0}")]
    InvalidTokenizer(String),

    /// The manifest and the model disagree (e.g. hidden size), so vectors would be garbage.
    #[error("model mismatch: {0}")]
    ModelMismatch(String),

    /// The text given to the encoder cannot be encoded meaningfully.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// Inference failed at run time (should not happen for a validated bundle).
    #[error("inference failed: {0}")]
    Inference(String),

    /// A text needs token-embedding rows whose chunk file was not added yet (browsers fetch
    /// them on demand: `missingTokenChunks` names what to fetch before encoding).
    #[error(
        "{file}: not loaded (token embeddings are fetched on demand, before a text is encoded)"
    )]
    TokensNotLoaded { file: String },

    /// A search step needs an index part (vector list or passage fragment) not added yet
    /// (browsers fetch them on demand: `missing*` calls name what to fetch first).
    #[error("{file}: not loaded (index parts are fetched on demand, as a query needs them)")]
    PartNotLoaded { file: String },

    /// Stored or fetched data is damaged: truncated, wrong magic, inconsistent sizes.
    #[error("data corruption in {file}: {reason}")]
    DataCorruption { file: String, reason: String },
}

/// Crate-wide result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause: source,
        }
    }
}
