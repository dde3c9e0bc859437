//! Term buckets (`terms/NNNNN.bin`: BM25 postings by term), for an index of any size: the
//! first four bytes are the passage count, the rest the file. Whatever parses is searched.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((count, file)) = data.split_first_chunk::<4>() else {
        return;
    };
    let passages = (u32::from_le_bytes(*count) % (1 << 21)) as usize;
    let mut postings = dotfind::search::lexical::LexicalPostings::new(passages);
    if postings.add_bucket("terms/00000.bin", file).is_ok() {
        let keys: Vec<u64> = file
            .chunks(8)
            .filter_map(|c| c.try_into().ok())
            .map(u64::from_le_bytes)
            .collect();
        for hit in postings.search(&keys, 10) {
            assert!(hit.passage < passages && hit.score.is_finite());
        }
    }
});
