//! Any query text through tokenize and encode, with the stand-in's query bundle
//! (`DOTFIND_MODEL_DIR` names the prepared models; `./build.sh fuzz` sets it).
#![no_main]
use std::sync::OnceLock;

use dotfind::{Encoder, ModelBundle};
use libfuzzer_sys::fuzz_target;

fn encoder() -> &'static Encoder {
    static ENCODER: OnceLock<Encoder> = OnceLock::new();
    ENCODER.get_or_init(|| {
        let models = std::env::var_os("DOTFIND_MODEL_DIR")
            .expect("DOTFIND_MODEL_DIR names the prepared models (./build.sh fuzz sets it)");
        let bundle = ModelBundle::open(&std::path::PathBuf::from(models).join("query"))
            .expect("model bundle");
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
