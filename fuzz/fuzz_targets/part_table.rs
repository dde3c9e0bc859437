//! `parts.bin`, the table of every part fetched on demand, for an index of any size: the
//! first four bytes are the manifest's passage count, the rest the file.
#![no_main]
use dotfind::index::PartTable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((count, file)) = data.split_first_chunk::<4>() else {
        return;
    };
    let passages = (u32::from_le_bytes(*count) % (1 << 21)) as usize;
    let Ok(table) = PartTable::from_bytes(file, passages) else {
        return;
    };
    for n in [0, passages / 2, passages.saturating_sub(1), passages] {
        if let Some((list, place)) = table.list_runs.locate(n) {
            assert_eq!(table.list_runs.range(list).nth(place), Some(n));
        }
        if let Some(fragment) = table.fragment_runs.part_of(n) {
            assert!(table.fragment_runs.range(fragment).contains(&n));
        }
    }
});
