//! Native query-encoding latency, the floor `tools/bench_encoders.mjs` compares the browser
//! runtimes with: `cargo run --release --example encode_latency -- BUNDLE QUERIES.json [ROUNDS]`.
//!
//! Times exactly what the browser's `QueryEncoder` does, on one thread (tract runs a plan on
//! the calling thread): start-up = verify the bundle bytes (already read, as the browser has
//! them in memory) + build the tract plan; then `encode_query` (tokenize + model + pooling)
//! once per query as warm-up and `ROUNDS` (default 3) timed passes. A bundle with token
//! embeddings apart (the query bundle) starts from its checksums file, as the browser does;
//! the chunks the queries need are added before the warm-up, untimed (the browser fetches
//! them). Prints one JSON object:
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

    const CHECKSUMS: &str = dotfind::model::token_table::CHECKSUMS_FILE;
    let checksums = dir
        .join(CHECKSUMS)
        .is_file()
        .then(|| read(CHECKSUMS))
        .transpose()?;

    let t = Instant::now();
    let mut bundle = ModelBundle::from_bytes(&manifest, graph, tokenizer)?;
    if let Some(checksums) = checksums {
        bundle = bundle.with_token_checksums(checksums)?;
    }
    let encoder = Encoder::from_bundle(bundle)?;
    let startup_ms = t.elapsed().as_secs_f64() * 1e3;

    for q in &queries {
        for chunk in encoder.missing_token_chunks(q)? {
            encoder.add_token_chunk(&chunk, read(&chunk)?)?;
        }
    }

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
