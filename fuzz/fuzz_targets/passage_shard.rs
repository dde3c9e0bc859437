//! Passage fragments (`passages/NNNNN.bin`): parsed whole, every record read; and as byte
//! ranges bring them: the directory, then one record.
#![no_main]
use dotfind::index::PassageShard;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut lazy) = PassageShard::directory("passages/00000.bin", data, data.len()) {
        if !lazy.is_empty() {
            let last = lazy.len() - 1;
            let range = lazy.records_bytes(last..last + 1);
            if let Some(bytes) = data.get(range.clone()) {
                if lazy.add_records(range, bytes).is_ok() {
                    let _ = lazy.record(last);
                }
            }
        }
    }
    let Ok(shard) = PassageShard::from_bytes("passages/00000.bin", data) else {
        return;
    };
    for i in 0..shard.len() {
        if let Ok(record) = shard.record(i) {
            let _ = record.encoded_text();
        }
    }
});
