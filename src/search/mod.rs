//! Search over a loaded index: exact top-k ([`top_k`]), dense scoring ([`dense`]), BM25
//! ([`lexical`]), text helpers ([`text`]), and the [`Searcher`] front ends use.

pub mod dense;
pub mod engine;
pub mod lexical;
pub mod text;
pub mod top_k;

pub use dense::{IndexVectors, Reranked, SearchIndex};
pub use engine::{SearchResult, Searcher};
pub use top_k::{top_k, Hit};
