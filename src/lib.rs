//! dotfind: BERT_Dot semantic search that runs in the browser.
//!
//! The core (bundle verification, tokenization, encoding) is platform-free and shared by
//! the native CLI (`src/main.rs`) and the wasm bindings (`src/wasm.rs`); see ARCHITECTURE.md.

pub mod bundle;
pub mod compiled_graph;
pub mod encode;
pub mod error;
pub mod int8_amx;
pub mod int8_graph;
pub mod int8_linear;
pub mod lexical;
pub mod score;
pub mod search;
pub mod shard;
pub mod tokenize;

#[cfg(not(target_arch = "wasm32"))]
pub mod attention;
#[cfg(not(target_arch = "wasm32"))]
pub mod bf16_linear;
#[cfg(not(target_arch = "wasm32"))]
pub mod corpus;
#[cfg(not(target_arch = "wasm32"))]
pub mod eval;
#[cfg(not(target_arch = "wasm32"))]
pub mod html;
#[cfg(not(target_arch = "wasm32"))]
pub mod index;
#[cfg(not(target_arch = "wasm32"))]
pub mod index_files;

#[cfg(target_arch = "wasm32")]
mod wasm;

pub use bundle::{BundleManifest, ModelBundle, Pooling, Similarity};
pub use encode::Encoder;
pub use error::{Error, Result};
