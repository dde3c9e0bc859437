//! dotfind: BERT_Dot semantic search that runs in the browser.
//!
//! Dependencies point one way — [`kernels`] ← [`ops`] ← [`model`] ← [`index`] ← [`search`] ←
//! edges (the CLI in `src/main.rs`, the wasm bindings in `src/wasm.rs`, the JS package) —
//! and everything but [`build`] compiles for the browser too; see ARCHITECTURE.md.

pub mod checksum;
pub mod error;
pub mod index;
pub mod kernels;
pub mod model;
#[cfg(feature = "encoder")]
pub mod ops;
pub mod search;

#[cfg(not(target_arch = "wasm32"))]
pub mod build;

#[cfg(target_arch = "wasm32")]
mod wasm;

pub use error::{Error, Result};
#[cfg(feature = "encoder")]
pub use model::Encoder;
pub use model::{BundleManifest, ModelBundle, Pooling, Similarity};
