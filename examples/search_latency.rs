//! Splits search latency into its parts on a real index: `cargo run --release --example
//! search_latency -- INDEX_DIR`. A profiling aid; BENCHMARKS.md figures come from the
//! bench commands.
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: search_latency INDEX_DIR")?;
    let (index, encoder) = dotfind::index_files::open_index(std::path::Path::new(&dir))?;
    let q = encoder.encode_query("how do I store key value pairs")?;
    for _ in 0..3 {
        let t = Instant::now();
        let scores = index.score_all(&q)?;
        let scored = t.elapsed();
        let t = Instant::now();
        let hits: Vec<dotfind::search::Hit> = scores
            .into_iter()
            .enumerate()
            .map(|(passage, score)| dotfind::search::Hit { passage, score })
            .collect();
        let top = dotfind::search::top_k(hits, 10);
        let ranked = t.elapsed();
        let t = Instant::now();
        for h in &top {
            index.record(h.passage)?;
        }
        let recorded = t.elapsed();
        let t = Instant::now();
        let streamed = index.search(&q, 10)?;
        let searched = t.elapsed();
        assert_eq!(
            streamed, top,
            "streaming top-k must equal sorting all scores"
        );
        println!(
            "score_all {scored:?}  top_k {ranked:?}  records {recorded:?}  search (streaming) {searched:?}  ({} passages)",
            index.len()
        );
    }
    Ok(())
}
