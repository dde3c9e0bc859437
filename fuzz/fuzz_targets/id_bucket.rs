//! Id buckets (`ids/NNNNN.bin`: ids and URLs → passages), for an index of any size: the
//! first four bytes are the passage count, the rest the file.
#![no_main]
use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((count, file)) = data.split_first_chunk::<4>() else {
        return;
    };
    let passages = (u32::from_le_bytes(*count) % (1 << 21)) as usize;
    let mut map = HashMap::new();
    if dotfind::index::ids::read_bucket("ids/00000.bin", file, passages, &mut map).is_ok() {
        assert!(map.values().flatten().all(|&n| n < passages));
    }
});
