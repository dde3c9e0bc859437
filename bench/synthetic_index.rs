//! Writes a synthetic dotfind index of N passages for the scale benchmark
//! (`./build.sh bench-browser`): each vector is a real passage's vector from `--like` plus
//! Gaussian noise (`--spread`: noise norm ÷ the vector's norm; 0.5 keeps a cosine of about
//! 0.9 to it), so the index has the structure of real text embeddings at any size, and each
//! record carries its source passage's text, so fragments have real sizes. Written by the
//! indexer's own code (lists, centroids, fragments), as `dotfind index` would.
//!
//! usage: cargo run --release --example synthetic_index -- --like INDEX --passages N --out DIR [--spread 0.5]

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use dotfind::build::index_writer::{write_index_folder, IndexOptions};
use dotfind::index::{EncodedRow, PassageRecord};
use dotfind::search::Searcher;
use dotfind::ModelBundle;

/// splitmix64: a fixed, seedable stream, so the same arguments write the same bytes.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A standard normal draw (Box–Muller).
    fn normal(&mut self) -> f32 {
        let u = ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let v = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut like, mut passages, mut out, mut spread) = (None, None, None, 0.5f32);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--like" => like = Some(PathBuf::from(value)),
            "--passages" => passages = Some(value.parse::<usize>()?),
            "--out" => out = Some(PathBuf::from(value)),
            "--spread" => spread = value.parse()?,
            _ => bail!("unknown option {flag} (see the header of bench/synthetic_index.rs)"),
        }
    }
    let (Some(like), Some(n), Some(out)) = (like, passages, out) else {
        bail!("usage: synthetic_index --like INDEX --passages N --out DIR [--spread 0.5]");
    };
    let real = Searcher::open(&like).with_context(|| format!("reading {}", like.display()))?;
    let index = real.index();
    let records = index.records()?;
    let vectors: Vec<Vec<f32>> = (0..index.len())
        .map(|i| index.vector(i))
        .collect::<dotfind::Result<_>>()?;
    if vectors.is_empty() {
        bail!("{}: no passages to draw around", like.display());
    }
    let cosine = index.manifest.model.similarity == dotfind::model::Similarity::Cosine;
    let encoding = index.manifest.vector_encoding;
    let mut rng = Rng(0x5eed);
    let mut out_records = Vec::with_capacity(n);
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        let base = &vectors[i % vectors.len()];
        let norm = base.iter().map(|x| x * x).sum::<f32>().sqrt();
        let sigma = spread * norm / (base.len() as f32).sqrt();
        let mut v: Vec<f32> = base.iter().map(|x| x + sigma * rng.normal()).collect();
        if cosine {
            let len = v
                .iter()
                .map(|x| x * x)
                .sum::<f32>()
                .sqrt()
                .max(f32::MIN_POSITIVE);
            v.iter_mut().for_each(|x| *x /= len);
        }
        rows.push(EncodedRow::encode(encoding, &v));
        let source = &records[i % records.len()];
        out_records.push(PassageRecord {
            id: format!("syn-{i}"),
            doc_id: format!("syn-{i}"),
            url: format!("#syn-{i}"),
            title: source.title.clone(),
            heading: source.heading.clone(),
            text: source.text.clone(),
        });
    }
    let bundle = ModelBundle::open(&like.join("model"))?;
    let opts = IndexOptions {
        encoding,
        ..IndexOptions::default()
    };
    let started = std::time::Instant::now();
    let manifest = write_index_folder(
        &bundle,
        index.manifest.model.passage_bundle_sha256.clone(),
        &out_records,
        &rows,
        &out,
        &opts,
    )?;
    eprintln!(
        "wrote {n} synthetic passages around {} real ones into {} ({} lists, probe {}, {} fragments) in {:.1} s",
        vectors.len(),
        out.display(),
        manifest.layout.lists,
        manifest.layout.probe,
        manifest.layout.fragments,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
