//! Native query-encoding latency, the floor `tools/bench_encoders.mjs` compares the browser
//! runtimes with: `cargo run --release --example encode_latency -- BUNDLE QUERIES.json [ROUNDS]`.
//!
//! Times exactly what the browser's `QueryEncoder` does, on one thread (tract runs a plan on
//! the calling thread): start-up = verify the bundle bytes (already read, as the browser has
//! them in memory) + build the tract plan; then `encode_query` (tokenize + model + pooling)
//! once per query as warm-up and `ROUNDS` (default 3) timed passes. Prints one JSON object:
//! `{startup_ms, times_ms: [...], vectors: [[...] per query]}`.
use std::time::Instant;

use dotfind::{Encoder, ModelBundle};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bundle, queries, rest @ ..] = args.as_slice() else {
        return Err("usage: encode_latency BUNDLE QUERIES.json [ROUNDS]".into());
    };
    let rounds: usize = rest.first().map_or(Ok(3), |r| r.parse())?;
    let queries: Vec<String> = serde_json::from_slice(&std::fs::read(queries)?)?;
    let dir = std::path::Path::new(bundle);
    let read = |f: &str| std::fs::read(dir.join(f));
    let manifest = read("dotfind-model.json")?;
    let graph = read("model.graph")?;
    let tokenizer = read("tokenizer.json")?;

    let t = Instant::now();
    let encoder = Encoder::from_bundle(ModelBundle::from_bytes(&manifest, graph, tokenizer)?)?;
    let startup_ms = t.elapsed().as_secs_f64() * 1e3;

    let mut vectors = Vec::with_capacity(queries.len());
    for q in &queries {
        vectors.push(encoder.encode_query(q)?); // warm-up; also the vectors parity is checked on
    }
    let mut times_ms = Vec::with_capacity(rounds * queries.len());
    for _ in 0..rounds {
        for q in &queries {
            let t = Instant::now();
            std::hint::black_box(encoder.encode_query(q)?);
            times_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let out =
        serde_json::json!({ "startup_ms": startup_ms, "times_ms": times_ms, "vectors": vectors });
    println!("{out}");
    Ok(())
}
