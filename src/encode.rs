//! Token ids → one vector per text, with tract running the bundle's ONNX graph.
//!
//! The graph is typed with symbolic `batch` and `sequence` axes (the names the exporter and
//! `quantize_dynamic` use) and optimized once, so one plan serves every text length. The
//! plans dotfind runs fix `batch` to 1 (one text per run: tract optimizes a graph with one
//! symbol fewer in half the time, and runs it faster); [`PlanBatch::Any`] keeps padded
//! batches for tests. Pooling happens here, not in the graph, so a single export supports
//! both CLS (the reference model) and mean (sentence-transformers) pooling.

use std::borrow::Cow;
use std::sync::Arc;

use tract_core::prelude::*;

use crate::bundle::{BundleManifest, ModelBundle, Pooling, Similarity};
use crate::error::{Error, Result};
use crate::tokenize::{TextTokenizer, TokenizedText, MAX_QUERY_BYTES};

/// Input names every bundle's graph must have (the reference DistilBERT graph's inputs).
pub const INPUT_IDS: &str = "input_ids";
pub const ATTENTION_MASK: &str = "attention_mask";

/// How an int8 bundle's MatMuls are planned; all three give the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Plan {
    /// tract's stock plan: the reference the rewrites are tested against.
    Stock,
    /// dotfind's graph rewrites ([`crate::int8_graph`]) around tract's int8 matmul kernels
    /// (natively its VNNI/AVX2 ones, the fastest where AMX is missing).
    Rewritten,
    /// The rewrites, with dotfind's own int8 matmul kernels ([`crate::int8_linear`]; the
    /// wasm default, and the native one where the CPU has AMX).
    OwnKernel,
}

impl Int8Plan {
    /// The fastest plan on the target this is compiled for (measured in Chromium: dotfind's
    /// kernels in both wasm builds, which also start faster than tract's int8 plan; natively,
    /// dotfind's AMX kernel where the CPU has AMX, else tract's VNNI/AVX2 kernels).
    pub fn for_this_target() -> Self {
        if cfg!(target_arch = "wasm32") || crate::int8_amx::available() {
            Int8Plan::OwnKernel
        } else {
            Int8Plan::Rewritten
        }
    }
}

/// How an encoder plans the f32 work: self-attention and f32 linear layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F32Plan {
    /// tract's ops, as the graph has them: the same bits as tract's own plan.
    Tract,
    /// dotfind's own ops where this CPU runs their kernels (native builds): fused attention
    /// (`crate::attention`, AVX-512; within f32 rounding of tract) and f32 linear layers on
    /// AMX bf16 tiles with split operands (`crate::bf16_linear`; sums good to ~2⁻¹⁶ of their
    /// terms). Not bit-identical to tract; passage vectors within cosine 0.99999 (tested).
    OwnKernels,
}

impl F32Plan {
    /// dotfind's kernels where one of them runs here (native x86-64 with AVX-512F or
    /// AMX-BF16), tract's elsewhere.
    pub fn for_this_target() -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        if crate::attention::kernel_available() || crate::bf16_linear::available() {
            return F32Plan::OwnKernels;
        }
        F32Plan::Tract
    }
}

/// How many texts one run of an encoder's plan takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanBatch {
    /// Any number, padded to the longest (for tests and benchmarks of padded batches).
    Any,
    /// One: `batch` is fixed to 1 before tract optimizes the graph, which it then does in
    /// about half the time (one symbol fewer in every shape), and the plan runs 10–20 %
    /// faster natively; several texts run one by one. What every encoder dotfind builds
    /// uses: queries come one at a time, and the indexer encodes one passage per call so
    /// that no vector depends on its batchmates.
    One,
}

/// The name of the batch axis' symbol in every graph dotfind plans.
pub const BATCH_SYMBOL: &str = "batch";

/// The graph in `bytes` (the bundle file `file`: `model.onnx`, or `model.graph` that
/// [`crate::compiled_graph`] compiles from it), typed with symbolic `batch` and `sequence` axes and
/// decluttered: what every plan starts from.
pub fn decluttered_graph(file: &str, bytes: &[u8]) -> Result<TypedModel> {
    decluttered_graph_for(file, bytes, PlanBatch::Any)
}

/// As [`decluttered_graph`], for a plan taking `batch` texts per run. A compiled graph is
/// read with `batch` fixed to 1 for [`PlanBatch::One`]; an ONNX graph (a bundle never
/// compiled, natively only) keeps it symbolic, and its encoder still runs one text per run.
pub fn decluttered_graph_for(file: &str, bytes: &[u8], batch: PlanBatch) -> Result<TypedModel> {
    if bytes.is_empty() {
        return Err(Error::InvalidModel {
            file: file.into(),
            reason: "empty file".into(),
        });
    }
    if file == crate::bundle::COMPILED_MODEL_FILE {
        let fixed: &[(&str, i64)] = match batch {
            PlanBatch::Any => &[],
            PlanBatch::One => &[(BATCH_SYMBOL, 1)],
        };
        return crate::compiled_graph::read_fixing(bytes, fixed)
            .map_err(|e| invalid_model(file, "not a valid compiled model", format!("{e:#}")));
    }
    onnx_graph(file, bytes)
}

/// Parses and types an ONNX graph: native builds only (`dotfind compile` and the CLI).
#[cfg(not(target_arch = "wasm32"))]
fn onnx_graph(file: &str, bytes: &[u8]) -> Result<TypedModel> {
    use tract_onnx::prelude::{Framework, InferenceFact, InferenceModelExt};
    let mut model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .map_err(|e| invalid_model(file, "not a valid ONNX model", format!("{e:#}")))?;
    let batch = model.sym(BATCH_SYMBOL);
    let sequence = model.sym("sequence");
    for ix in 0..model.inputs.len() {
        let fact: InferenceFact = i64::fact([batch.to_dim(), sequence.to_dim()]).into();
        model
            .set_input_fact(ix, fact)
            .map_err(|e| invalid_model(file, "cannot set input shapes", e))?;
    }
    model
        .into_typed()
        .and_then(|m| m.into_decluttered())
        .map_err(|e| invalid_model(file, "cannot type the graph", format!("{e:#}")))
}

/// The browser build leaves the ONNX parser and tract's type analysis out (about a fifth of
/// the module): it loads compiled bundles.
#[cfg(target_arch = "wasm32")]
fn onnx_graph(file: &str, _bytes: &[u8]) -> Result<TypedModel> {
    Err(Error::InvalidModel {
        file: file.into(),
        reason: format!(
            "the browser loads compiled bundles only: run `dotfind compile --model BUNDLE`, \
             which adds {} to the bundle",
            crate::bundle::COMPILED_MODEL_FILE
        ),
    })
}

/// [`F32Plan::OwnKernels`]'s rewrites, each where its kernel runs (native builds only; wasm
/// builds never ask for them): attention first, whose output the output projection reads.
#[cfg(not(target_arch = "wasm32"))]
fn use_own_f32_kernels(model: &mut TypedModel) -> tract_core::internal::TractResult<()> {
    if crate::attention::kernel_available() {
        crate::attention::fuse(model)?;
    }
    if crate::bf16_linear::available() {
        crate::bf16_linear::fuse(model)?;
    }
    Ok(())
}

#[cfg(target_arch = "wasm32")]
fn use_own_f32_kernels(_: &mut TypedModel) -> tract_core::internal::TractResult<()> {
    Ok(())
}

/// A loaded bundle: tokenizers + optimized tract plan + pooling. Cheap to share across
/// threads (`&self` everywhere), expensive to build (parse + optimize), so build it once.
pub struct Encoder {
    plan: Arc<TypedRunnableModel>,
    /// Position of `input_ids` and `attention_mask` among the graph's inputs.
    input_order: [usize; 2],
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

fn invalid_model(file: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidModel {
        file: file.into(),
        reason: format!("{what}: {e}"),
    }
}

impl Encoder {
    /// Parses, types and optimizes the graph and checks it against the descriptor.
    pub fn new(bundle: &ModelBundle) -> Result<Self> {
        Self::build(bundle, Cow::Borrowed(&bundle.model), Self::target_plans())
    }

    /// The plans every encoder dotfind builds uses: the fastest on this target, one text per
    /// run.
    fn target_plans() -> (Int8Plan, F32Plan, PlanBatch) {
        (
            Int8Plan::for_this_target(),
            F32Plan::for_this_target(),
            PlanBatch::One,
        )
    }

    /// As [`Encoder::new`], choosing how int8 MatMuls are planned, with a plan that takes
    /// padded batches (for tests and benchmarks: every choice gives the same bits).
    pub fn with_int8_plan(bundle: &ModelBundle, int8_plan: Int8Plan) -> Result<Self> {
        Self::with_plan(bundle, int8_plan, PlanBatch::Any)
    }

    /// As [`Encoder::new`], choosing how int8 MatMuls are planned and how many texts a run
    /// of the plan takes (for tests and `dotfind compile`, which builds the browser's plan).
    /// The f32 work stays tract's ([`F32Plan::Tract`]), so that plans built this way compare
    /// bit for bit.
    pub fn with_plan(bundle: &ModelBundle, int8_plan: Int8Plan, batch: PlanBatch) -> Result<Self> {
        Self::with_plans(bundle, int8_plan, F32Plan::Tract, batch)
    }

    /// As [`Encoder::with_plan`], choosing how the f32 work is planned too.
    pub fn with_plans(
        bundle: &ModelBundle,
        int8_plan: Int8Plan,
        f32_plan: F32Plan,
        batch: PlanBatch,
    ) -> Result<Self> {
        let plans = (int8_plan, f32_plan, batch);
        Self::build(bundle, Cow::Borrowed(&bundle.model), plans)
    }

    /// As [`Encoder::new`], from a bundle it may consume: the graph bytes are freed as soon
    /// as the graph is read, so the plan's allocations reuse their memory (in the browser,
    /// the first touch of fresh wasm memory costs about 0.5 ms per MB).
    pub fn from_bundle(mut bundle: ModelBundle) -> Result<Self> {
        let model = std::mem::take(&mut bundle.model);
        let model = Cow::Owned(model);
        Self::build(&bundle, model, Self::target_plans())
    }

    fn build(
        bundle: &ModelBundle,
        model: Cow<'_, [u8]>,
        (int8_plan, f32_plan, batch): (Int8Plan, F32Plan, PlanBatch),
    ) -> Result<Self> {
        let manifest = bundle.manifest.clone();
        let query_tokenizer =
            TextTokenizer::from_json(&bundle.tokenizer_json, manifest.max_query_tokens)?;

        let file = manifest.model_file();
        let mut typed = decluttered_graph_for(file, &model, batch)?;
        drop(model);
        let names: Vec<String> = typed
            .input_outlets()
            .map_err(|e| invalid_model(file, "cannot list inputs", e))?
            .iter()
            .map(|o| typed.node(o.node).name.clone())
            .collect();
        let position = |name: &str| names.iter().position(|n| n == name);
        let input_order = match (position(INPUT_IDS), position(ATTENTION_MASK), names.len()) {
            (Some(ids), Some(mask), 2) => [ids, mask],
            _ => {
                return Err(Error::InvalidModel {
                    file: file.into(),
                    reason: format!(
                    "expected exactly the inputs [{INPUT_IDS}, {ATTENTION_MASK}], found {names:?}"
                ),
                })
            }
        };
        if f32_plan == F32Plan::OwnKernels {
            // An optimization, never a reason not to load: a graph the rewrites trip on runs
            // as tract plans it (the constants are shared, so the copy is cheap).
            let before = typed.clone();
            if use_own_f32_kernels(&mut typed).is_err() {
                typed = before;
            }
        }
        let typed = match int8_plan {
            Int8Plan::Stock => typed.into_optimized(),
            Int8Plan::Rewritten => crate::int8_graph::optimize(typed, false),
            Int8Plan::OwnKernel => crate::int8_graph::optimize(typed, true),
        }
        .map_err(|e| invalid_model(file, "cannot optimize the graph", format!("{e:#}")))?;

        let output = typed
            .output_fact(0)
            .map_err(|e| invalid_model(file, "no output", e))?;
        let hidden = output
            .shape
            .iter()
            .last()
            .and_then(|d| d.as_i64())
            .and_then(|d| usize::try_from(d).ok());
        if output.rank() != 3 || hidden.is_none() {
            return Err(Error::InvalidModel {
                file: file.into(),
                reason: format!(
                    "first output must be last_hidden_state [batch, sequence, hidden], found {output:?}"
                ),
            });
        }
        if hidden != Some(manifest.hidden_size) {
            return Err(Error::ModelMismatch(format!(
                "{file} outputs vectors of {} dimensions, dotfind-model.json says hidden_size {}",
                hidden.unwrap_or_default(),
                manifest.hidden_size
            )));
        }
        let plan = typed
            .into_runnable()
            .map_err(|e| invalid_model(file, "cannot plan the graph", format!("{e:#}")))?;
        Ok(Self {
            plan,
            input_order,
            query_tokenizer,
            passage_tokenizer: std::sync::OnceLock::new(),
            manifest,
            bundle_sha256: bundle.bundle_sha256.clone(),
            batch,
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
        let mut inputs: TVec<TValue> = tvec![
            TValue::from(Tensor::default()),
            TValue::from(Tensor::default())
        ];
        inputs[self.input_order[0]] = to_tensor(ids)?;
        inputs[self.input_order[1]] = to_tensor(mask.clone())?;
        let outputs = self
            .plan
            .run(inputs)
            .map_err(|e| Error::Inference(format!("{e:#}")))?;
        let hidden = outputs[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| Error::Inference(format!("output is not f32: {e}")))?
            .into_dimensionality::<tract_ndarray::Ix3>()
            .map_err(|e| Error::Inference(e.to_string()))?;
        let dims = self.dims();
        let mut vectors = Vec::with_capacity(batch);
        for (row, t) in hidden.outer_iter().zip(texts) {
            let mut v = match self.manifest.pooling {
                Pooling::Cls => row.row(0).to_vec(),
                Pooling::Mean => {
                    let mut sum = vec![0f32; dims];
                    let mut count = 0f32;
                    for (token, &m) in row.outer_iter().zip(&t.attention_mask) {
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
            vectors.push(v);
        }
        Ok(vectors)
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
