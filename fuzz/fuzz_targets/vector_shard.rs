//! Vector shards (`vectors/centroids.bin`, and list rows as held): parsed, every row
//! decoded and scored.
#![no_main]
use dotfind::index::VectorShard;
use dotfind::kernels::score::QuantizedQuery;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(shard) = VectorShard::from_bytes("vectors/centroids.bin", data) else {
        return;
    };
    let rows = shard.count;
    let dims = shard.dims;
    let query: Vec<f32> = (0..dims).map(|j| (j % 7) as f32 - 3.0).collect();
    let quantized = QuantizedQuery::new(&query);
    let mut out = Vec::new();
    shard.score_rows(&query, &quantized, 0..rows, &mut out);
    assert_eq!(out.len(), rows);
    for i in 0..rows {
        assert_eq!(shard.vector(i).len(), dims);
    }
});
