//! Any query text through tokenize and encode: the stand-in's query bundle where
//! `DOTFIND_MODEL_DIR` names it (`./build.sh fuzz` does), else the tiny test bundle.
#![no_main]
use std::sync::OnceLock;

use dotfind::{Encoder, ModelBundle};
use libfuzzer_sys::fuzz_target;

fn encoder() -> &'static Encoder {
    static ENCODER: OnceLock<Encoder> = OnceLock::new();
    ENCODER.get_or_init(|| {
        let dir = match std::env::var_os("DOTFIND_MODEL_DIR") {
            Some(models) => std::path::PathBuf::from(models).join("query"),
            None => {
                let fixture = concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../tests/fixtures/tiny-onnx/f32"
                );
                let dir = std::env::temp_dir().join(format!("dotfind-fuzz-{}", std::process::id()));
                std::fs::create_dir_all(&dir).expect("temp dir");
                for f in ["dotfind-model.json", "model.onnx", "tokenizer.json"] {
                    std::fs::copy(format!("{fixture}/{f}"), dir.join(f)).expect("fixture");
                }
                dotfind::build::compile::compile_bundle(&dir).expect("compile the tiny bundle");
                dir
            }
        };
        let bundle = ModelBundle::open(&dir).expect("model bundle");
        Encoder::new(&bundle).expect("encoder")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let encoder = encoder();
    match encoder.encode_query(&text) {
        Ok(v) => {
            assert_eq!(v.len(), encoder.dims());
            assert!(v.iter().all(|x| x.is_finite()));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
