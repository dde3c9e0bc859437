//! dotfind: BERT_Dot semantic search that runs in the browser.
//!
//! The core (bundle verification, tokenization, encoding) is platform-free and shared by
//! the native CLI (`src/main.rs`) and the wasm bindings (`src/wasm.rs`); see ARCHITECTURE.md.

pub mod bundle;
pub mod encode;
pub mod error;
pub mod tokenize;

#[cfg(target_arch = "wasm32")]
mod wasm;

pub use bundle::{BundleManifest, ModelBundle, Pooling, Similarity};
pub use encode::Encoder;
pub use error::{Error, Result};
