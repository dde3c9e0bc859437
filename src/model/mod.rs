//! The model: a verified bundle ([`bundle`]), its tokenizer ([`tokenize`]), its compiled
//! graph ([`graph`]), the plan tract runs it with ([`plan`]), and the [`Encoder`] that turns
//! text into vectors with them.

pub mod bundle;
pub mod encoder;
pub mod graph;
pub mod plan;
pub mod storage;
pub mod token_table;
pub mod tokenize;

pub use bundle::{BundleManifest, ModelBundle, Pooling, Similarity};
pub use encoder::{cosine, l2_normalize, Encoder};
pub use plan::{F32Plan, Int8Plan, PlanBatch, Plans};

/// The widest vector any file may declare (BERT-large is 1,024): a width read from fetched
/// bytes above it is damage, refused before anything is sized by it.
pub const MAX_DIMS: usize = 1 << 16;
