//! How the query bundle is stored: what a visitor downloads before a first result. Linear
//! weights as the 7-bit per-column codes int8 compute runs (from the 8-bit grids
//! [`super::gptq`] chose), or in 4 bits per weight in groups of 32 (4.5 bits with their
//! scales; exactly the values it chose), the position table in 8 bits, the token-embedding
//! table apart, in chunk files of a few KB fetched as queries need them.

use tract_core::internal::*;

use super::checkpoint::Encoder;
use super::gptq::QuantizedWeights;
use crate::error::{Error, Result};
use crate::kernels::groups::GroupCode;
use crate::model::graph::StorageChoice;
use crate::model::storage::ValueEncoding;
use crate::model::token_table::{TokenTableSpec, CHECKSUMS_FILE};

/// The query bundle's storage choices (`dotfind prepare` options).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryStorage {
    /// Text the weight quantizer calibrates on (a JSONL corpus or a built site); without
    /// it, weights are rounded to nearest.
    pub calibration: Option<std::path::PathBuf>,
    /// Bits per linear weight, 4 (in groups of 32 inputs) or 8 (groups of 128), each group
    /// with an f16 scale and minimum: the grids the quantizer puts them on (8-bit ones are
    /// then stored as their int8 compute codes, [`QueryStorage::stores_compute_codes`]).
    pub weight_bits: u32,
    /// Token-embedding rows.
    pub tokens: ValueEncoding,
    /// Token ids per chunk file: fewer means less over the wire per new token, more files.
    pub rows_per_chunk: usize,
}

/// Values per group of every code: small groups keep outliers local (4 bits in groups of
/// 64–128 cost up to 0.016 nDCG@10 where groups of 32 cost ±0.0025; BENCHMARKS.md).
const GROUP: usize = 32;

impl Default for QueryStorage {
    fn default() -> Self {
        QueryStorage {
            calibration: None,
            weight_bits: 8,
            tokens: ValueEncoding::Groups(GroupCode {
                bits: 4,
                group: GROUP,
            }),
            rows_per_chunk: 32,
        }
    }
}

/// The position table: few values (max tokens × hidden), so 8 bits cost little (f16 where
/// the positions are not a whole number of groups).
const POSITIONS: ValueEncoding = ValueEncoding::Groups(GroupCode {
    bits: 8,
    group: GROUP,
});

impl QueryStorage {
    /// The graph writer's choice per constant: f32 linear weights (`….weight`) on the 4- or
    /// 8-bit grids `weights` chose for them (their bytes as the quantizer made them; int8
    /// compute codes are written as they are), the position table in 8 bits, everything
    /// else (biases, norms) as is.
    pub fn chooser<'a>(
        &'a self,
        weights: &'a QuantizedWeights,
    ) -> impl Fn(&TypedNode, &Tensor) -> Option<StorageChoice> + 'a {
        move |node, tensor| {
            if tensor.rank() < 2 || tensor.datum_type() != f32::datum_type() {
                None
            } else if let Some(layer) = node.name.strip_suffix(".weight") {
                let encoding = matrix_fits(tensor, ValueEncoding::Groups(self.weights()))?;
                Some(StorageChoice {
                    encoding,
                    encoded: weights.get(layer).map(|w| w.stored.clone()),
                })
            } else if node.name == "embeddings.position.table" {
                Some(
                    matrix_fits(tensor, POSITIONS)
                        .unwrap_or(ValueEncoding::F16)
                        .into(),
                )
            } else {
                None
            }
        }
    }

    /// Linear weights' code: `weight_bits` per weight, in groups of 32 inputs for 4 bits
    /// (groups of 64–128 cost up to 0.016 nDCG@10 there), of 128 for 8 bits (cosine 0.9998
    /// with f32 already). Storing them so is lossless: the quantizer put them on its grids.
    pub fn weights(&self) -> GroupCode {
        GroupCode {
            bits: self.weight_bits,
            group: if self.weight_bits == 8 { 128 } else { GROUP },
        }
    }

    /// Whether linear weights are stored as the 7-bit per-column codes the int8 plan runs
    /// rather than as their group codes: with 8-bit groups both take a byte a weight, and the
    /// compute codes spare a load expanding each matrix to f32 and quantizing it again
    /// (most of a browser's start and memory peak); 4-bit groups are half the download.
    pub fn stores_compute_codes(&self) -> bool {
        self.weight_bits == 8
    }

    /// The descriptor's `quantization` words.
    pub fn describe(&self, calibrated_on: Option<usize>) -> String {
        let weights = match calibrated_on {
            Some(tokens) => format!("GPTQ calibrated on {tokens} tokens"),
            None => "rounded to nearest".into(),
        };
        let compute = match self.stores_compute_codes() {
            true => "stored as the 7-bit per-column int8 codes they are computed with (activations per token)",
            false => "expanded at load and computed in int8 (7-bit per-column weights, activations per token)",
        };
        format!(
            "linear weights {} ({weights}), {compute}; positions \
             {POSITIONS}; token embeddings {} in chunks of {} rows",
            ValueEncoding::Groups(self.weights()),
            self.tokens,
            self.rows_per_chunk
        )
    }

    /// The token table's descriptor entry, checksums file and chunk files.
    pub fn token_table(
        &self,
        encoder: &Encoder,
    ) -> Result<(TokenTableSpec, Vec<u8>, Vec<Vec<u8>>)> {
        let spec = TokenTableSpec {
            vocab_size: encoder.vocab(),
            dims: encoder.hidden,
            encoding: self.tokens,
            rows_per_chunk: self.rows_per_chunk,
        };
        let (checksums, chunks) =
            spec.encode(&encoder.word_embeddings)
                .map_err(|reason| Error::InvalidModel {
                    file: CHECKSUMS_FILE.into(),
                    reason,
                })?;
        Ok((spec, checksums, chunks))
    }
}

/// `encoding` if a weight matrix's columns (its input axes flattened) hold whole groups.
fn matrix_fits(tensor: &Tensor, encoding: ValueEncoding) -> Option<ValueEncoding> {
    let (_, inputs) = tensor.shape().split_last()?;
    encoding
        .encoded_len(inputs.iter().product())
        .map(|_| encoding)
}
