//! `model.graph`, the compiled encoder: its header, ops and stored constants (f16 and
//! group codes expanded at load).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dotfind::model::graph::read(data);
});
