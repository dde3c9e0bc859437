//! The offline side, native only: checkpoints into bundles ([`prepare`]; ONNX graphs:
//! [`compile`], with the `onnx` feature), corpora and built sites into passages ([`corpus`], [`html`]), passages
//! into an index folder ([`index_writer`]; its lists and fragments: [`partition`]; its probe
//! depth, measured on the corpus: [`probe`]; on many
//! machines: [`index_parts`]), and TREC-style evaluation of runs ([`eval`]).

#[cfg(feature = "onnx")]
pub mod compile;
pub mod corpus;
pub mod eval;
pub mod html;
pub mod index_parts;
pub mod index_writer;
pub mod lists;
pub mod partition;
pub mod pq;
pub mod prepare;
pub mod probe;
