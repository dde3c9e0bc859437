//! `dotfind compile`: a bundle's `model.onnx` → `model.graph`, the compiled graph every
//! loader reads ([`crate::model::graph`]). The ONNX parser and tract's type analysis run
//! here, natively, once; browsers never link them.

use std::path::Path;

use tract_core::internal::*;
use tract_onnx::prelude::{Framework, InferenceFact, InferenceModelExt};

use crate::checksum::FileEntry;
use crate::error::{Error, Result};
use crate::model::bundle::{
    read_bundle_file, BundleManifest, ModelBundle, GRAPH_FILE, MANIFEST_FILE, ONNX_FILE,
    TOKENIZER_FILE,
};
use crate::model::graph;
use crate::model::plan::BATCH_SYMBOL;
use crate::model::{Encoder, Int8Plan, PlanBatch, Plans};
use crate::ops::dynamic_quantize::use_fast_dynamic_quantize;

/// Parses an ONNX graph and types it with symbolic `batch` and `sequence` axes (the names
/// the exporter and `quantize_dynamic` use), decluttered, with tract-onnx's own ops: the
/// reference the compiled graph's plans are tested against.
pub fn onnx_graph(bytes: &[u8]) -> Result<TypedModel> {
    let invalid = |what: &str, e: String| Error::InvalidModel {
        file: ONNX_FILE.into(),
        reason: format!("{what}: {e}"),
    };
    if bytes.is_empty() {
        return Err(invalid("empty file", String::new()));
    }
    let mut model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .map_err(|e| invalid("not a valid ONNX model", format!("{e:#}")))?;
    let batch = model.sym(BATCH_SYMBOL);
    let sequence = model.sym("sequence");
    for ix in 0..model.inputs.len() {
        let fact: InferenceFact = i64::fact([batch.to_dim(), sequence.to_dim()]).into();
        model
            .set_input_fact(ix, fact)
            .map_err(|e| invalid("cannot set input shapes", format!("{e:#}")))?;
    }
    model
        .into_typed()
        .and_then(|m| m.into_decluttered())
        .map_err(|e| invalid("cannot type the graph", format!("{e:#}")))
}

/// Compiles the bundle in `dir`: writes `model.graph` from its (verified) `model.onnx`
/// and records both, with the tokenizer, in `dotfind-model.json`. Idempotent: the same
/// bundle and dotfind version give the same bytes. Returns the new graph's entry.
pub fn compile_bundle(dir: &Path) -> Result<FileEntry> {
    let previous = BundleManifest::from_json_uncompiled(&read_bundle_file(dir, MANIFEST_FILE)?)?;
    let onnx = read_bundle_file(dir, ONNX_FILE)?;
    let tokenizer = read_bundle_file(dir, TOKENIZER_FILE)?;
    // Inputs are checked against what the descriptor recorded, if it did.
    for (file, bytes) in [(ONNX_FILE, &onnx), (TOKENIZER_FILE, &tokenizer)] {
        if let Some(entry) = previous.files.get(file) {
            entry.verify(file, bytes)?;
        }
    }
    let mut decluttered = onnx_graph(&onnx)?;
    // tract-onnx's activation quantizer is not in the compiled op set; dotfind's drop-in is.
    use_fast_dynamic_quantize(&mut decluttered);
    let invalid = |e: TractError| Error::InvalidModel {
        file: ONNX_FILE.into(),
        reason: format!("cannot compile: {e:#}"),
    };
    let compiled = graph::write(&decluttered).map_err(invalid)?;
    graph::read(&compiled)
        .and_then(|back| graph::check_same_graph(&decluttered, &back))
        .map_err(invalid)?;
    let mut manifest = previous.clone();
    let entry = FileEntry::of(&compiled);
    manifest.files.insert(GRAPH_FILE.into(), entry.clone());
    manifest
        .files
        .insert(ONNX_FILE.into(), FileEntry::of(&onnx));
    manifest
        .files
        .insert(TOKENIZER_FILE.into(), FileEntry::of(&tokenizer));
    let descriptor = descriptor_bytes(dir, &manifest)?;
    // What browsers will load must load, as the bundle it will be: encoders are built from
    // it here (inputs, output, hidden size checked), natively and as the browser plans it,
    // so a bad graph fails now, not on a visitor's page, and nothing is written.
    let bundle = ModelBundle::from_bytes(&descriptor, compiled, tokenizer)?;
    Encoder::new(&bundle)?;
    Encoder::with_plans(&bundle, Plans::exact(Int8Plan::OwnKernel, PlanBatch::One))?;
    write_in_order(dir, &previous, &bundle.graph, &descriptor)?;
    Ok(entry)
}

/// The descriptor as dotfind writes it: pretty JSON, one trailing newline.
fn descriptor_bytes(dir: &Path, manifest: &BundleManifest) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(manifest)
        .map_err(|e| Error::io(dir.join(MANIFEST_FILE), std::io::Error::other(e)))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes each file by rename, in an order where a crash at any point leaves a bundle that
/// loads or says it is not compiled: a descriptor vouching for no compiled graph (when the
/// old one vouched for one, whose bytes are about to change), the graph, then the
/// descriptor that vouches for it.
fn write_in_order(
    dir: &Path,
    previous: &BundleManifest,
    compiled: &[u8],
    descriptor: &[u8],
) -> Result<()> {
    let write_file = |file: &str, bytes: &[u8]| -> Result<()> {
        let path = dir.join(file);
        let tmp = dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    };
    if previous.files.contains_key(GRAPH_FILE) {
        let mut uncompiled = previous.clone();
        uncompiled.files.remove(GRAPH_FILE);
        write_file(MANIFEST_FILE, &descriptor_bytes(dir, &uncompiled)?)?;
    }
    write_file(GRAPH_FILE, compiled)?;
    write_file(MANIFEST_FILE, descriptor)
}
