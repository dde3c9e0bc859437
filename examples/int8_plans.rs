//! Passage encoding speed of each int8 plan on this CPU, one thread, one passage per call
//! (as `dotfind index` runs each of its threads): what `Int8Plan::for_this_target` is
//! chosen by. `cargo run --release --example int8_plans -- BUNDLE CORPUS.jsonl [N]` (an int8
//! bundle; the first N documents, default 20, title + text). Prints passages/s per plan and
//! round, and whether every plan gave the same vectors.
use std::time::Instant;

use dotfind::model::{F32Plan, Int8Plan, PlanBatch, Plans};
use dotfind::{Encoder, ModelBundle};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bundle, corpus, rest @ ..] = args.as_slice() else {
        return Err("usage: int8_plans BUNDLE CORPUS.jsonl [N]".into());
    };
    let n: usize = rest.first().map_or(Ok(20), |r| r.parse())?;
    let bundle = ModelBundle::open(std::path::Path::new(bundle))?;
    let mut texts = Vec::new();
    for line in std::fs::read_to_string(corpus)?.lines().take(n) {
        let doc: serde_json::Value = serde_json::from_str(line)?;
        let field = |f: &str| doc[f].as_str().unwrap_or_default().to_string();
        texts.push(format!("{} {}", field("title"), field("text")));
    }
    let mut vectors: Vec<Vec<Vec<f32>>> = Vec::new();
    for round in 0..2 {
        for int8 in [Int8Plan::Rewritten, Int8Plan::OwnKernel] {
            let plans = Plans {
                int8,
                f32: F32Plan::for_this_target(),
                batch: PlanBatch::One,
            };
            let encoder = Encoder::with_plans(&bundle, plans)?;
            let t = Instant::now();
            let mut out = Vec::new();
            for text in &texts {
                out.extend(encoder.encode_passages(&[text.as_str()])?);
            }
            let rate = texts.len() as f64 / t.elapsed().as_secs_f64();
            println!("round {round}: {int8:?} {rate:.1} passages/s");
            vectors.push(out);
        }
    }
    let same = vectors.windows(2).all(|w| w[0] == w[1]);
    println!("same vectors from every plan: {same}");
    Ok(())
}
