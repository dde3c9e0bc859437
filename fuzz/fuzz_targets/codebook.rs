//! The codebook (`vectors/codebook.bin`) of an index of any width: the first four bytes
//! are the manifest's dims, the rest the file; a query's table and a residual's codes.
#![no_main]
use dotfind::index::Codebook;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((dims, file)) = data.split_first_chunk::<4>() else {
        return;
    };
    let dims = (u32::from_le_bytes(*dims) % 4097) as usize;
    let Ok(codebook) = Codebook::from_bytes(file, dims) else {
        return;
    };
    let query: Vec<f32> = (0..dims).map(|j| (j % 7) as f32 - 3.0).collect();
    assert_eq!(codebook.table(&query).len(), codebook.m * 256);
    let codes = codebook.encode(&query);
    assert_eq!(codebook.decode(&codes).len(), dims);
});
