//! Passage fragments (`passages/NNNNN.bin`): parsed, every record read.
#![no_main]
use dotfind::index::PassageShard;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(shard) = PassageShard::from_bytes("passages/00000.bin", data) else {
        return;
    };
    for i in 0..shard.len() {
        if let Ok(record) = shard.record(i) {
            let _ = record.encoded_text();
        }
    }
});
