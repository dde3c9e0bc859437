//! `manifest.json`, the first file a visit fetches: parsed, then handed to the loader,
//! which lists the files it will fetch.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = dotfind::index::IndexManifest::from_json(data) {
        let _ = manifest.entry("parts.bin");
    }
    if let Ok(loader) = dotfind::index::IndexLoader::new(data) {
        let _ = loader.files().count();
        // Finishing without any file must name what is missing, whatever the manifest says.
        assert!(loader.finish().is_err());
    }
});
