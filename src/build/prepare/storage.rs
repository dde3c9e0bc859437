//! How the query bundle is stored: what a visitor downloads before a first result. Linear
//! weights as the per-column int8 codes the int8 plan computes with, on grids of a few
//! levels that [`super::gptq`] chose (deflated by the graph writer, so they cost about
//! their entropy), or in 4 bits per weight in groups of 32; the position table in 8 bits;
//! the token-embedding table apart, in chunk files of a few KB fetched as queries need them.

use tract_core::internal::*;

use super::checkpoint::Encoder;
use super::gptq::{QuantizedWeights, StoredWeights, WeightGrid};
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
    /// The grid the quantizer puts linear weights on (and the bundle stores them in).
    pub weights: WeightGrid,
    /// Token-embedding rows.
    pub tokens: ValueEncoding,
    /// Token ids per chunk file: fewer means less over the wire per new token, more files.
    pub rows_per_chunk: usize,
}

/// Values per group of every group code: small groups keep outliers local.
const GROUP: usize = 32;

impl Default for QueryStorage {
    fn default() -> Self {
        QueryStorage {
            calibration: None,
            weights: DEFAULT_WEIGHTS,
            tokens: ValueEncoding::Groups(GroupCode {
                bits: 4,
                group: GROUP,
            }),
            rows_per_chunk: 32,
        }
    }
}

/// Linear weights' default grid: per column, the full 63 levels a side. Fewer levels
/// download fewer bytes (21: 6.6 MB instead of 8.6 for the stand-in) but, even with GPTQ,
/// cost retrieval (up to 0.009 nDCG@10 on SciFact) and move short, unusual queries (emoji,
/// CJK) further from f32 than the query bundle's parity floors allow (BENCHMARKS.md, "Query
/// weights").
pub const DEFAULT_WEIGHTS: WeightGrid = WeightGrid::Columns {
    levels: WeightGrid::MAX_LEVELS,
};

/// The position table: few values (max tokens × hidden), so 8 bits cost little (f16 where
/// the positions are not a whole number of groups).
const POSITIONS: ValueEncoding = ValueEncoding::Groups(GroupCode {
    bits: 8,
    group: GROUP,
});

impl QueryStorage {
    /// The graph writer's choice per constant: f32 linear weights (`….weight`, there as
    /// such only on group grids: column codes are i8 already) as the group codes `weights`
    /// chose, the position table in 8 bits, everything else (biases, norms) as is.
    pub fn chooser<'a>(
        &'a self,
        weights: &'a QuantizedWeights,
    ) -> impl Fn(&TypedNode, &Tensor) -> Option<StorageChoice> + 'a {
        move |node, tensor| {
            if tensor.rank() < 2 || tensor.datum_type() != f32::datum_type() {
                None
            } else if let Some(layer) = node.name.strip_suffix(".weight") {
                let WeightGrid::Groups(code) = self.weights else {
                    return None;
                };
                let encoding = matrix_fits(tensor, ValueEncoding::Groups(code))?;
                Some(StorageChoice {
                    encoding,
                    encoded: weights.get(layer).and_then(|w| match &w.stored {
                        StoredWeights::Groups(bytes) => Some(bytes.clone()),
                        StoredWeights::Columns { .. } => None,
                    }),
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

    /// The descriptor's `quantization` words.
    pub fn describe(&self, calibrated_on: Option<usize>) -> String {
        let chosen = match calibrated_on {
            Some(tokens) => format!("GPTQ calibrated on {tokens} tokens"),
            None => "rounded to nearest".into(),
        };
        let weights = match self.weights {
            WeightGrid::Columns { levels } => format!(
                "linear weights on per-column grids of ±{levels} levels ({chosen}), stored \
                 as the int8 codes they are computed with (activations per token)"
            ),
            WeightGrid::Groups(code) => format!(
                "linear weights {} ({chosen}), expanded at load and computed in int8 \
                 (7-bit per-column weights, activations per token)",
                ValueEncoding::Groups(code)
            ),
        };
        format!(
            "{weights}; positions {POSITIONS}; token embeddings {} in chunks of {} rows",
            self.tokens, self.rows_per_chunk
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
