//! The offline side, native only: corpora and built sites into passages ([`corpus`],
//! [`html`]), passages into an index folder ([`index_writer`]), ONNX into compiled bundles
//! ([`compile`]), and TREC-style evaluation of runs ([`eval`]).

pub mod compile;
pub mod corpus;
pub mod eval;
pub mod html;
pub mod index_writer;
