//! Damaged bundles and damaged compile inputs: each a named error, never a panic, and a
//! failed compile writes nothing. Needs the prepared default model (`./build.sh test`);
//! the compile tests need the `onnx` feature, which `./build.sh test` turns on.

mod common;

use std::path::Path;

use common::{bundle, fixture};
#[cfg(feature = "onnx")]
use dotfind::build::compile::compile_bundle;
use dotfind::checksum::{xxh3_128_hex, FileEntry};
use dotfind::{Encoder, ModelBundle};

/// The prepared int8 bundle in a temp dir.
fn scratch_bundle() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["dotfind-model.json", "model.graph", "tokenizer.json"] {
        std::fs::copy(bundle("int8").join(f), dir.path().join(f)).unwrap();
    }
    dir
}

/// A tiny ONNX bundle (tests/fixtures/tiny-onnx/int8), compiled, in a temp dir.
#[cfg(feature = "onnx")]
fn scratch_onnx_bundle() -> tempfile::TempDir {
    common::compiled_tiny_onnx("int8")
}

/// Rewrites a bundle file and records its new checksum, so only the content is wrong.
fn replace_consistently(
    dir: &Path,
    file: &str,
    bytes: &[u8],
    edit: impl FnOnce(&mut serde_json::Value),
) {
    std::fs::write(dir.join(file), bytes).unwrap();
    let path = dir.join("dotfind-model.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["files"][file] = serde_json::to_value(FileEntry::of(bytes)).unwrap();
    edit(&mut m);
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
}

fn load_error(dir: &Path) -> String {
    match ModelBundle::open(dir).and_then(|b| Encoder::new(&b)) {
        Ok(_) => panic!("bundle at {} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_files_are_named() {
    for file in ["tokenizer.json", "model.graph", "dotfind-model.json"] {
        let dir = scratch_bundle();
        std::fs::remove_file(dir.path().join(file)).unwrap();
        assert_eq!(
            load_error(dir.path()),
            format!("model bundle {}: missing file {file}", dir.path().display())
        );
    }
}

#[test]
fn tampered_and_truncated_graphs_are_named() {
    let dir = scratch_bundle();
    let path = dir.path().join("model.graph");
    let good = std::fs::read(&path).unwrap();
    let mut bytes = good.clone();
    bytes[good.len() / 2] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(
        load_error(dir.path()),
        format!(
            "model.graph: xxh3-128 mismatch: manifest says {}, file has {}",
            xxh3_128_hex(&good),
            xxh3_128_hex(&bytes)
        )
    );
    std::fs::write(&path, &good[..1000]).unwrap();
    assert_eq!(
        load_error(dir.path()),
        format!(
            "data corruption in model.graph: 1000 bytes, manifest says {}",
            good.len()
        )
    );
}

#[test]
fn right_checksum_wrong_content_is_not_a_compiled_graph() {
    let dir = scratch_bundle();
    let onnx = std::fs::read(fixture("tiny-onnx/int8/model.onnx")).unwrap();
    for bytes in [&onnx[..], b"this is a README, not a model\n"] {
        replace_consistently(dir.path(), "model.graph", bytes, |_| {});
        assert_eq!(
            load_error(dir.path()),
            "model.graph: not a valid compiled model: not a dotfind compiled graph (`dotfind compile` writes this file)"
        );
    }
}

#[test]
fn hidden_size_mismatch_is_reported() {
    let dir = scratch_bundle();
    let tok = std::fs::read(dir.path().join("tokenizer.json")).unwrap();
    replace_consistently(dir.path(), "tokenizer.json", &tok, |m| {
        m["hidden_size"] = 768.into()
    });
    let mismatch = "model mismatch: model.graph outputs vectors of 384 dimensions, dotfind-model.json says hidden_size 768";
    assert_eq!(load_error(dir.path()), mismatch);
}

/// Compiling checks the graph against the descriptor, and writes nothing when they disagree.
#[cfg(feature = "onnx")]
#[test]
fn compiling_a_hidden_size_mismatch_writes_nothing() {
    let dir = scratch_onnx_bundle();
    let tok = std::fs::read(dir.path().join("tokenizer.json")).unwrap();
    replace_consistently(dir.path(), "tokenizer.json", &tok, |m| {
        m["hidden_size"] = 768.into()
    });
    let files = ["dotfind-model.json", "model.graph"];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(dir.path().join(f)).unwrap())
        .collect();
    assert_eq!(
        compile_bundle(dir.path()).unwrap_err().to_string(),
        "model mismatch: model.graph outputs vectors of 32 dimensions, dotfind-model.json says hidden_size 768"
    );
    let after: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(dir.path().join(f)).unwrap())
        .collect();
    assert!(before == after, "a failed compile changed the bundle");
}

#[test]
fn empty_tokenizer_is_rejected() {
    let dir = scratch_bundle();
    replace_consistently(dir.path(), "tokenizer.json", b"", |_| {});
    assert_eq!(load_error(dir.path()), "tokenizer.json: empty file");
}

#[cfg(feature = "onnx")]
#[test]
fn compiling_needs_a_valid_onnx_model() {
    let dir = scratch_onnx_bundle();
    replace_consistently(dir.path(), "model.onnx", b"not onnx\n", |_| {});
    let err = compile_bundle(dir.path()).unwrap_err().to_string();
    assert!(
        err.starts_with("model.onnx: not a valid ONNX model:"),
        "{err}"
    );
    // A model.onnx that is not the one the descriptor recorded.
    std::fs::write(dir.path().join("model.onnx"), b"not onnx either\n").unwrap();
    let err = compile_bundle(dir.path()).unwrap_err().to_string();
    assert!(err.starts_with("data corruption in model.onnx:"), "{err}");
    std::fs::remove_file(dir.path().join("model.onnx")).unwrap();
    assert_eq!(
        compile_bundle(dir.path()).unwrap_err().to_string(),
        format!(
            "model bundle {}: missing file model.onnx",
            dir.path().display()
        )
    );
}
