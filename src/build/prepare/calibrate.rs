//! Calibration for the query model's weight quantizer: the f32 model run on sample text,
//! each linear layer's input Hessian (`Σ x·xᵀ` over the tokens) collected for GPTQ
//! ([`super::gptq::gptq`]).
//!
//! The text is what the caller chooses (`dotfind prepare --calibration`: a JSONL corpus or a
//! built site, read as `dotfind index` reads it), cut to query lengths, since the model
//! encodes queries: ideally text like the corpus the index will serve, never the queries a
//! benchmark evaluates with. Texts are cut in turn to the longest a query may be and to a
//! half, a quarter and an eighth of it: most queries are a few words, whose activations
//! (where `[CLS]` and `[SEP]` weigh most) are not a long text's, and GPTQ fits its codes to
//! the activations it is shown.

use std::collections::HashMap;
use std::path::Path;

use tract_core::internal::*;

use super::checkpoint::Encoder;
use super::gptq::accumulate_hessian;
use super::gptq::QuantizedWeights;
use super::graph::build_calibration;
use crate::error::{Error, Result};
use crate::model::encoder::{ATTENTION_MASK, INPUT_IDS};
use crate::model::tokenize::TextTokenizer;

/// Tokens of calibration text used at most: enough for stable Hessians of 384–3072 inputs,
/// few enough that the passes over them take seconds.
pub const MAX_TOKENS: usize = 4096;

/// The query lengths calibration texts are cut to, in turn: the longest a query may be
/// shifted right by these (all of it, a half, a quarter, an eighth; at least 4 tokens).
const QUERY_LENGTHS: [u32; 4] = [0, 1, 2, 3];

/// Calibration text, tokenized as queries are.
pub struct Calibration {
    texts: Vec<(Tensor, Tensor)>,
    /// Tokens in all.
    pub tokens: usize,
}

impl Calibration {
    /// The texts of the corpus at `source` (JSONL or an HTML folder), cut in turn to
    /// [`QUERY_LENGTHS`] of `max_query_tokens`, up to [`MAX_TOKENS`] in all.
    pub fn read(source: &Path, tokenizer_json: &[u8], max_query_tokens: usize) -> Result<Self> {
        let (records, _) = crate::build::corpus::read_corpus(source, true)?;
        let tokenizers = QUERY_LENGTHS
            .iter()
            .map(|&shift| {
                TextTokenizer::from_json(tokenizer_json, (max_query_tokens >> shift).max(4))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut texts = Vec::new();
        let mut used = 0;
        for (record, tokenizer) in records.iter().zip(tokenizers.iter().cycle()) {
            let tokens = tokenizer.tokenize(&record.encoded_text())?;
            if used + tokens.len() > MAX_TOKENS {
                break;
            }
            used += tokens.len();
            let tensor = |v: &[i64]| {
                tract_ndarray::Array2::from_shape_vec((1, v.len()), v.to_vec())
                    .map(|a| a.into_tensor())
                    .map_err(|e| Error::Inference(e.to_string()))
            };
            texts.push((tensor(&tokens.ids)?, tensor(&tokens.attention_mask)?));
        }
        if texts.is_empty() {
            return Err(Error::InvalidInput(format!(
                "{}: no text to calibrate with",
                source.display()
            )));
        }
        Ok(Calibration {
            texts,
            tokens: used,
        })
    }

    /// The input Hessians (`[k, k]`, row-major) of the linear layers `wanted`, by name, with
    /// the layers in `quantized` already quantized: each layer is calibrated on the inputs
    /// it will see, so later layers make up for earlier layers' errors (GPTQ's sequential
    /// order).
    pub fn hessians(
        &self,
        encoder: &Encoder,
        max_query_tokens: usize,
        quantized: &QuantizedWeights,
        wanted: &[String],
    ) -> Result<HashMap<String, Vec<f64>>> {
        let invalid = |e: TractError| Error::InvalidModel {
            file: "calibration graph".into(),
            reason: format!("{e:#}"),
        };
        let (graph, outputs) =
            build_calibration(encoder, max_query_tokens, quantized, wanted).map_err(invalid)?;
        let plan = graph
            .into_optimized()
            .and_then(|g| g.into_runnable())
            .map_err(invalid)?;
        let input_names: Vec<String> = plan
            .model()
            .input_outlets()
            .map_err(invalid)?
            .iter()
            .map(|o| plan.model().node(o.node).name.clone())
            .collect();
        // One Hessian per distinct input (q, k and v read the same one).
        let mut by_output: HashMap<usize, Vec<f64>> = HashMap::new();
        let mut distinct: Vec<usize> = outputs.iter().map(|&(_, at)| at).collect();
        distinct.sort_unstable();
        distinct.dedup();
        for (ids, mask) in &self.texts {
            let inputs = input_names
                .iter()
                .map(|name| match name.as_str() {
                    INPUT_IDS => Ok(ids.clone().into_tvalue()),
                    ATTENTION_MASK => Ok(mask.clone().into_tvalue()),
                    other => Err(Error::Inference(format!("calibration graph input {other}"))),
                })
                .collect::<Result<TVec<TValue>>>()?;
            let values = plan
                .run(inputs)
                .map_err(|e| Error::Inference(format!("{e:#}")))?;
            let seq = ids.len();
            for &at in &distinct {
                let rows = values[at]
                    .try_as_plain_ram()
                    .and_then(|r| Ok(r.as_slice::<f32>()?.to_vec()))
                    .map_err(|e| Error::Inference(format!("{e:#}")))?;
                let k = rows.len() / seq;
                let h = by_output.entry(at).or_insert_with(|| vec![0f64; k * k]);
                accumulate_hessian(h, &rows, k);
            }
        }
        Ok(outputs
            .into_iter()
            .filter_map(|(name, at)| by_output.get(&at).map(|h| (name, h.clone())))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Texts are cut in turn to the query length and to a half, a quarter and an eighth of
    /// it, so that short queries' activations are among those GPTQ fits to.
    #[test]
    fn texts_are_cut_to_query_lengths_in_turn() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let tokenizer =
            std::fs::read(root.join("tests/fixtures/tiny-onnx/f32/tokenizer.json")).unwrap();
        let corpus = root.join("tests/fixtures/corpus.jsonl");
        let calibration = Calibration::read(&corpus, &tokenizer, 32).unwrap();
        let lengths: Vec<usize> = calibration.texts.iter().map(|(ids, _)| ids.len()).collect();
        assert_eq!(lengths.len(), 24);
        assert_eq!(lengths.iter().sum::<usize>(), calibration.tokens);
        // The fixture's texts are all longer than 32 tokens.
        assert_eq!(&lengths[..8], &[32, 16, 8, 4, 32, 16, 8, 4]);
    }
}
