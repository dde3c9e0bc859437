//! Search over an index whose parts arrive on demand ([`search_index`]): exact top-k
//! ([`top_k`]), dense scoring ([`dense`]), BM25 ([`lexical`]), the two fused
//! ([`hybrid`]), text helpers ([`text`]), and the [`Searcher`] front ends use.

pub mod dense;
#[cfg(feature = "encoder")]
pub mod engine;
pub mod fragments;
pub mod hybrid;
pub mod lexical;
pub mod search_index;
pub mod text;
pub mod top_k;
pub mod vector_lists;

pub use dense::IndexVectors;
#[cfg(feature = "encoder")]
pub use engine::Searcher;
pub use hybrid::{Fusion, Mode};
pub use search_index::{Probe, Reranked, SearchIndex, SearchResult};
pub use top_k::{top_k, Hit};
