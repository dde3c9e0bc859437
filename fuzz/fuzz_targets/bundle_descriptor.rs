//! `dotfind-model.json`, the model bundle's descriptor (compiled and uncompiled readers).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = dotfind::BundleManifest::from_json(data) {
        let _ = a.check_same_space(&a);
    }
    let _ = dotfind::BundleManifest::from_json_uncompiled(data);
});
