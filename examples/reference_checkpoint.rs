//! Writes the reference model's shape as a checkpoint folder: DistilBERT-base's config with
//! the random weights PyTorch's reference (tests/fixtures/reference/random-distilbert-base.json)
//! was computed from, and the stand-in's tokenizer. The Hugging Face hub is out of reach
//! here, so this is how the browser test and `./build.sh bench-bytes` take the reference
//! model's 768-dimension, CLS-pooled path end to end (`./build.sh reference-shape`).
//!
//! `cargo run --release --example reference_checkpoint -- OUT_DIR TOKENIZER_JSON`
use std::error::Error;
use std::path::Path;

#[path = "../tests/common/checkpoint.rs"]
mod checkpoint;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, tokenizer] = args.as_slice() else {
        return Err("usage: reference_checkpoint OUT_DIR TOKENIZER_JSON".into());
    };
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference/random-distilbert-base.json");
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture)?)?;
    let tensors = checkpoint::random_distilbert(&reference["config"]);
    // The weights PyTorch's reference was computed from, or the parity checks mean nothing.
    if checkpoint::weights_sha256(&tensors) != reference["weights_sha256"] {
        return Err("the generated weights differ from the reference fixture's".into());
    }
    checkpoint::write_checkpoint(
        Path::new(out),
        &reference["config"],
        &tensors,
        Path::new(tokenizer),
    )
}
