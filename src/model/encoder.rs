//! Text → one vector per text: tokenize, run the planned graph, pool, normalize.
//!
//! Pooling happens here, not in the graph, so a single graph supports both CLS (the
//! reference model) and mean (sentence-transformers) pooling.

use std::sync::{Arc, RwLock};

use tract_core::prelude::*;

use super::bundle::{BundleManifest, LinearCompute, ModelBundle, Pooling, Similarity, GRAPH_FILE};
use super::plan::{self, PlanBatch, Plans};
use super::token_table::{TokenTable, TokenTableSpec, TOKEN_ROWS};
use super::tokenize::{TextTokenizer, TokenizedText, MAX_QUERY_BYTES};
use crate::error::{Error, Result};

/// Input names every bundle's graph must have (the reference DistilBERT graph's inputs).
pub const INPUT_IDS: &str = "input_ids";
pub const ATTENTION_MASK: &str = "attention_mask";

/// A loaded bundle: tokenizers + optimized tract plan + pooling. Cheap to share across
/// threads (`&self` everywhere), expensive to build (parse + optimize), so build it once.
pub struct Encoder {
    plan: Arc<TypedRunnableModel>,
    /// Position of `input_ids` and `attention_mask` among the graph's inputs.
    input_order: [usize; 2],
    /// For graphs that take their token rows as input ([`TOKEN_ROWS`]): its position, and
    /// the table the rows come from (chunks added as they arrive, by `&self` callers).
    token_rows: Option<(usize, RwLock<TokenTable>)>,
    query_tokenizer: TextTokenizer,
    /// Made on first use: the browser encodes only queries, and the copy of a 30k-entry
    /// vocabulary is start-up time there.
    passage_tokenizer: std::sync::OnceLock<TextTokenizer>,
    manifest: BundleManifest,
    bundle_sha256: String,
    /// Texts per run of `plan`.
    batch: PlanBatch,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("model_id", &self.manifest.model_id)
            .finish()
    }
}

fn invalid_model(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidModel {
        file: GRAPH_FILE.into(),
        reason: format!("{what}: {e}"),
    }
}

/// Positions of `input_ids` and `attention_mask` among the graph's inputs, which must be
/// exactly those two, or those and [`TOKEN_ROWS`] (whose position comes third).
fn input_order(graph: &TypedModel) -> Result<([usize; 2], Option<usize>)> {
    let names: Vec<String> = graph
        .input_outlets()
        .map_err(|e| invalid_model("cannot list inputs", e))?
        .iter()
        .map(|o| graph.node(o.node).name.clone())
        .collect();
    let position = |name: &str| names.iter().position(|n| n == name);
    let rows = position(TOKEN_ROWS);
    match (position(INPUT_IDS), position(ATTENTION_MASK), names.len()) {
        (Some(ids), Some(mask), n) if n == 2 + usize::from(rows.is_some()) => Ok(([ids, mask], rows)),
        _ => Err(invalid_model(
            "unexpected inputs",
            format!("expected [{INPUT_IDS}, {ATTENTION_MASK}] and optionally {TOKEN_ROWS}, found {names:?}"),
        )),
    }
}

/// The token table of a bundle whose graph takes token rows, with the chunks it carries.
fn token_table(bundle: &ModelBundle) -> Result<TokenTable> {
    let (Some(spec), Some(checksums)) =
        (&bundle.manifest.token_embeddings, &bundle.token_checksums)
    else {
        return Err(invalid_model(
            "unexpected inputs",
            format!("the graph takes {TOKEN_ROWS}, but the bundle has no token table (token_embeddings and its checksums file)"),
        ));
    };
    let mut table = TokenTable::new(spec.clone(), checksums)?;
    for (chunk, bytes) in &bundle.token_chunks {
        table.add_chunk(*chunk, bytes.clone())?;
    }
    Ok(table)
}

/// Checks that the graph's first output is `last_hidden_state [batch, sequence, hidden]`
/// with the hidden size the descriptor records.
fn check_output(graph: &TypedModel, hidden_size: usize) -> Result<()> {
    let output = graph
        .output_fact(0)
        .map_err(|e| invalid_model("no output", e))?;
    let hidden = output
        .shape
        .iter()
        .last()
        .and_then(|d| d.as_i64())
        .and_then(|d| usize::try_from(d).ok());
    match hidden {
        Some(hidden) if output.rank() == 3 && hidden == hidden_size => Ok(()),
        Some(hidden) if output.rank() == 3 => Err(Error::ModelMismatch(format!(
            "{GRAPH_FILE} outputs vectors of {hidden} dimensions, dotfind-model.json says hidden_size {hidden_size}"
        ))),
        _ => Err(invalid_model(
            "unexpected output",
            format!("first output must be last_hidden_state [batch, sequence, hidden], found {output:?}"),
        )),
    }
}

impl Encoder {
    /// Reads and optimizes the bundle's graph with the fastest plans for this target and
    /// checks it against the descriptor.
    pub fn new(bundle: &ModelBundle) -> Result<Self> {
        Self::with_plans(bundle, Plans::for_this_target())
    }

    /// As [`Encoder::new`], from a bundle it may consume: the graph bytes are freed as soon
    /// as the graph is read, so the plan's allocations reuse their memory (in the browser,
    /// the first touch of fresh wasm memory costs time per MB).
    pub fn from_bundle(mut bundle: ModelBundle) -> Result<Self> {
        let plans = Plans::for_this_target();
        let graph = plan::read_graph(&std::mem::take(&mut bundle.graph), plans.batch)?;
        Self::from_graph(&bundle, graph, plans)
    }

    /// As [`Encoder::new`], with the plans chosen (for tests, benchmarks, and `dotfind
    /// compile`, which builds the browser's plan).
    pub fn with_plans(bundle: &ModelBundle, plans: Plans) -> Result<Self> {
        let graph = plan::read_graph(&bundle.graph, plans.batch)?;
        Self::from_graph(bundle, graph, plans)
    }

    /// The encoder of `bundle`'s descriptor and tokenizer running `graph` (decluttered, with
    /// a symbolic or fixed `batch`): the bundle's own graph, or one read from elsewhere
    /// (e.g. the ONNX a bundle was compiled from, natively).
    pub fn from_graph(bundle: &ModelBundle, graph: TypedModel, plans: Plans) -> Result<Self> {
        let manifest = bundle.manifest.clone();
        let query_tokenizer =
            TextTokenizer::from_json(&bundle.tokenizer_json, manifest.max_query_tokens)?;
        let (input_order, rows_input) = input_order(&graph)?;
        let token_rows = match (rows_input, &manifest.token_embeddings) {
            (Some(at), _) => Some((at, RwLock::new(token_table(bundle)?))),
            (None, None) => None,
            (None, Some(_)) => {
                return Err(invalid_model(
                    "unexpected inputs",
                    format!("the bundle keeps its token embeddings apart, but the graph takes no {TOKEN_ROWS}"),
                ))
            }
        };
        let mut graph = graph;
        if manifest.linear_compute == LinearCompute::Int8PerToken {
            crate::ops::int8_per_token::fuse(&mut graph)
                .map_err(|e| invalid_model("cannot plan int8 linear layers", format!("{e:#}")))?;
        }
        let typed = plan::optimize(graph, plans)
            .map_err(|e| invalid_model("cannot optimize the graph", format!("{e:#}")))?;
        check_output(&typed, manifest.hidden_size)?;
        let plan = typed
            .into_runnable()
            .map_err(|e| invalid_model("cannot plan the graph", format!("{e:#}")))?;
        Ok(Self {
            plan,
            input_order,
            token_rows,
            query_tokenizer,
            passage_tokenizer: std::sync::OnceLock::new(),
            manifest,
            bundle_sha256: bundle.bundle_sha256.clone(),
            batch: plans.batch,
        })
    }

    pub fn manifest(&self) -> &BundleManifest {
        &self.manifest
    }

    /// sha256 of the bundle descriptor this encoder was built from.
    pub fn bundle_sha256(&self) -> &str {
        &self.bundle_sha256
    }

    /// Vector length of every embedding this encoder returns.
    pub fn dims(&self) -> usize {
        self.manifest.hidden_size
    }

    /// Token ids of a query as the model will see them (prefix added, truncated).
    pub fn tokenize_query(&self, query: &str) -> Result<TokenizedText> {
        if query.len() > MAX_QUERY_BYTES {
            return Err(Error::InvalidInput(format!(
                "query is {} bytes, the limit is {MAX_QUERY_BYTES}",
                query.len()
            )));
        }
        if query.trim().is_empty() {
            return Err(Error::InvalidInput("query is empty".into()));
        }
        let text = format!("{}{query}", self.manifest.query_prefix);
        let tokens = self.query_tokenizer.tokenize(&text)?;
        // Only [CLS] + [SEP] left: the normalizer removed everything (e.g. only control characters).
        if tokens.len() <= 2 {
            return Err(Error::InvalidInput("query has no searchable text".into()));
        }
        Ok(tokens)
    }

    /// Embeds one query: the vector search scores passages against.
    pub fn encode_query(&self, query: &str) -> Result<Vec<f32>> {
        let tokens = self.tokenize_query(query)?;
        let mut vectors = self.run_batch(&[tokens])?;
        Ok(vectors.swap_remove(0))
    }

    /// The token-embedding chunk files (paths relative to the bundle) that encoding `query`
    /// needs and that were not added yet; empty for bundles whose graph holds the table.
    pub fn missing_token_chunks(&self, query: &str) -> Result<Vec<String>> {
        if self.token_rows.is_none() {
            return Ok(Vec::new());
        }
        self.missing_chunks_of(&[self.tokenize_query(query)?])
    }

    /// As [`Encoder::missing_token_chunks`], for passages.
    pub fn missing_passage_token_chunks(&self, passages: &[&str]) -> Result<Vec<String>> {
        if self.token_rows.is_none() {
            return Ok(Vec::new());
        }
        let tokens = passages
            .iter()
            .map(|p| self.tokenize_passage(p))
            .collect::<Result<Vec<_>>>()?;
        self.missing_chunks_of(&tokens)
    }

    fn missing_chunks_of(&self, texts: &[TokenizedText]) -> Result<Vec<String>> {
        let Some((_, table)) = &self.token_rows else {
            return Ok(Vec::new());
        };
        let table = table
            .read()
            .map_err(|_| Error::Inference("token table lock poisoned".into()))?;
        let ids: Vec<i64> = texts.iter().flat_map(|t| t.ids.iter().copied()).collect();
        Ok(table
            .missing_chunks(&ids)?
            .into_iter()
            .map(TokenTableSpec::chunk_path)
            .collect())
    }

    /// Adds a token-embedding chunk file (`path` as [`Encoder::missing_token_chunks`] names
    /// it), verified against the bundle's checksums.
    pub fn add_token_chunk(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        let Some((_, table)) = &self.token_rows else {
            return Err(Error::InvalidInput(format!(
                "{path}: this model keeps its token embeddings in its graph"
            )));
        };
        let mut table = table
            .write()
            .map_err(|_| Error::Inference("token table lock poisoned".into()))?;
        let chunk = table.chunk_at(path).ok_or_else(|| {
            Error::InvalidInput(format!(
                "{path} is not a token-embedding chunk of this model"
            ))
        })?;
        table.add_chunk(chunk, bytes)
    }

    /// Token ids of a passage as the model will see them (prefix added, truncated).
    pub fn tokenize_passage(&self, passage: &str) -> Result<TokenizedText> {
        let text = format!("{}{passage}", self.manifest.passage_prefix);
        let tokenizer = match self.passage_tokenizer.get() {
            Some(tokenizer) => tokenizer,
            None => {
                let made = self
                    .query_tokenizer
                    .with_max_tokens(self.manifest.max_passage_tokens)?;
                self.passage_tokenizer.get_or_init(|| made)
            }
        };
        tokenizer.tokenize(&text)
    }

    /// Embeds passages: one by one with the default plan, as one padded batch with a
    /// [`PlanBatch::Any`] plan (where callers wanting speed sort by length first).
    pub fn encode_passages(&self, passages: &[&str]) -> Result<Vec<Vec<f32>>> {
        let tokens = passages
            .iter()
            .map(|p| self.tokenize_passage(p))
            .collect::<Result<Vec<_>>>()?;
        self.run_batch(&tokens)
    }

    /// Runs the graph on already-tokenized texts, padding them to the longest one (one by
    /// one if the plan takes one text per run).
    pub fn run_batch(&self, texts: &[TokenizedText]) -> Result<Vec<Vec<f32>>> {
        if self.batch == PlanBatch::One && texts.len() > 1 {
            let mut vectors = Vec::with_capacity(texts.len());
            for text in texts {
                vectors.extend(self.run_batch(std::slice::from_ref(text))?);
            }
            return Ok(vectors);
        }
        let batch = texts.len();
        let seq = texts.iter().map(TokenizedText::len).max().unwrap_or(0);
        if batch == 0 {
            return Ok(Vec::new());
        }
        if seq == 0 {
            return Err(Error::InvalidInput(
                "cannot encode a text with no tokens".into(),
            ));
        }
        let pad = self.query_tokenizer.pad_id();
        let mut ids = Vec::with_capacity(batch * seq);
        let mut mask = Vec::with_capacity(batch * seq);
        for t in texts {
            ids.extend_from_slice(&t.ids);
            ids.resize(ids.len() + seq - t.len(), pad);
            mask.extend_from_slice(&t.attention_mask);
            mask.resize(mask.len() + seq - t.len(), 0);
        }
        let to_tensor = |v: Vec<i64>| {
            tract_ndarray::Array2::from_shape_vec((batch, seq), v)
                .map(|a| a.into_tensor().into_tvalue())
                .map_err(|e| Error::Inference(e.to_string()))
        };
        let mut inputs: TVec<TValue> = (0..2 + usize::from(self.token_rows.is_some()))
            .map(|_| TValue::from(Tensor::default()))
            .collect();
        let ids = match &self.token_rows {
            Some((at, table)) => {
                let (local, rows) = self.token_rows_of(&ids, table)?;
                inputs[*at] = rows;
                local
            }
            None => ids,
        };
        inputs[self.input_order[0]] = to_tensor(ids)?;
        inputs[self.input_order[1]] = to_tensor(mask)?;
        let outputs = self
            .plan
            .run(inputs)
            .map_err(|e| Error::Inference(format!("{e:#}")))?;
        let hidden = outputs[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| Error::Inference(format!("output is not f32: {e}")))?
            .into_dimensionality::<tract_ndarray::Ix3>()
            .map_err(|e| Error::Inference(e.to_string()))?;
        Ok(hidden
            .outer_iter()
            .zip(texts)
            .map(|(tokens, text)| self.pool(tokens, &text.attention_mask))
            .collect())
    }

    /// For a graph taking token rows: `ids` as positions among the distinct tokens (in order
    /// of first use), and those tokens' rows (`[distinct, hidden]`).
    fn token_rows_of(&self, ids: &[i64], table: &RwLock<TokenTable>) -> Result<(Vec<i64>, TValue)> {
        let mut distinct: Vec<i64> = Vec::new();
        let mut position = std::collections::HashMap::new();
        let local = ids
            .iter()
            .map(|&id| {
                *position.entry(id).or_insert_with(|| {
                    distinct.push(id);
                    distinct.len() as i64 - 1
                })
            })
            .collect();
        let table = table
            .read()
            .map_err(|_| Error::Inference("token table lock poisoned".into()))?;
        let rows = table.rows(&distinct)?;
        let rows = tract_ndarray::Array2::from_shape_vec((distinct.len(), table.spec().dims), rows)
            .map_err(|e| Error::Inference(e.to_string()))?;
        Ok((local, rows.into_tensor().into_tvalue()))
    }

    /// One text's vector from its token vectors (`[sequence, hidden]`): the CLS row or the
    /// masked mean, L2-normalized for cosine bundles.
    fn pool(&self, tokens: tract_ndarray::ArrayView2<f32>, mask: &[i64]) -> Vec<f32> {
        let mut v = match self.manifest.pooling {
            Pooling::Cls => tokens.row(0).to_vec(),
            Pooling::Mean => {
                let mut sum = vec![0f32; self.dims()];
                let mut count = 0f32;
                for (token, &m) in tokens.outer_iter().zip(mask) {
                    if m != 0 {
                        count += 1.0;
                        for (s, x) in sum.iter_mut().zip(token.iter()) {
                            *s += x;
                        }
                    }
                }
                sum.iter_mut().for_each(|s| *s /= count.max(1.0));
                sum
            }
        };
        if self.manifest.similarity == Similarity::Cosine {
            l2_normalize(&mut v);
        }
        v
    }
}

/// Scales to unit length so that dot product equals cosine; zero vectors stay zero.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Cosine similarity, for parity checks against reference embeddings.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_and_normalize() {
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }
}
