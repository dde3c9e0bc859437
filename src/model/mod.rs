//! The model: a verified bundle ([`bundle`]), its tokenizer ([`tokenize`]), its compiled
//! graph ([`graph`]), the plan tract runs it with ([`plan`]), and the [`Encoder`] that turns
//! text into vectors with them.

pub mod bundle;
#[cfg(feature = "encoder")]
pub mod encoder;
#[cfg(feature = "encoder")]
pub mod graph;
#[cfg(feature = "encoder")]
pub mod plan;
pub mod storage;
pub mod token_table;
#[cfg(feature = "encoder")]
pub mod tokenize;

pub use bundle::{BundleManifest, ModelBundle, Pooling, Similarity};
#[cfg(feature = "encoder")]
pub use encoder::{cosine, l2_normalize, Encoder};
#[cfg(feature = "encoder")]
pub use plan::{F32Plan, Int8Plan, PlanBatch, Plans};

/// The widest vector any file may declare (BERT-large is 1,024): a width read from fetched
/// bytes above it is damage, refused before anything is sized by it.
pub const MAX_DIMS: usize = 1 << 16;
