//! `dotfind prepare`, `compile` and `index`: checkpoints, bundles and corpora into what
//! browsers load.

use std::path::Path;

use anyhow::Result;
use dotfind::build::index_parts::{encode_part, merge_parts, PartSpec};
use dotfind::build::index_writer::{build_index, IndexOptions, IndexStats};
use dotfind::build::prepare::PrepareOptions;

/// Prepares the bundles; with `check`, reports how the query bundle compares with the f32
/// one on that corpus.
pub fn prepare(from: &Path, out: &Path, opts: &PrepareOptions, check: Option<&Path>) -> Result<()> {
    let started = std::time::Instant::now();
    let written = dotfind::build::prepare::prepare(from, out, opts)?;
    let has = |name: &str| written.iter().any(|(bundle, _)| bundle == name);
    for (bundle, entry) in &written {
        eprintln!(
            "{}: wrote {} ({} bytes, xxh3-128 {})",
            out.join(bundle).display(),
            dotfind::model::bundle::GRAPH_FILE,
            entry.bytes,
            entry.xxh3_128
        );
    }
    eprintln!("prepared in {:.1} s", started.elapsed().as_secs_f64());
    if let Some(corpus) = check {
        anyhow::ensure!(
            has("query") && has("f32"),
            "--check compares the query and f32 bundles: prepare both"
        );
        let report =
            dotfind::build::prepare::report::compare(&out.join("query"), &out.join("f32"), corpus)?;
        eprintln!("{report}");
    }
    Ok(())
}

#[cfg(feature = "onnx")]
pub fn compile(model: &Path) -> Result<()> {
    let entry = dotfind::build::compile::compile_bundle(model)?;
    eprintln!(
        "{}: wrote {} ({} bytes, xxh3-128 {})",
        model.display(),
        dotfind::model::bundle::GRAPH_FILE,
        entry.bytes,
        entry.xxh3_128
    );
    Ok(())
}

#[cfg(not(feature = "onnx"))]
pub fn compile(model: &Path) -> Result<()> {
    anyhow::bail!(
        "cannot compile {}: this dotfind was built without ONNX support (build it with \
         `cargo build --release --features onnx`; `./build.sh model-onnx` does)",
        model.display()
    )
}

pub fn index(model: &Path, input: &Path, out: &Path, opts: &IndexOptions) -> Result<()> {
    let started = std::time::Instant::now();
    let stats = build_index(model, input, out, opts)?;
    report(&stats, out, started)
}

/// `--part i/N`: one share of the corpus encoded into the parts folder `dir`.
pub fn part(
    model: &Path,
    input: &Path,
    dir: &Path,
    spec: PartSpec,
    reuse: Option<&Path>,
    opts: &IndexOptions,
) -> Result<()> {
    let started = std::time::Instant::now();
    let stats = encode_part(model, input, dir, spec, reuse, opts)?;
    eprintln!(
        "part {}/{}: passages {}..{} into {} ({} encoded, {} reused), {:.1} s",
        spec.index,
        spec.count,
        stats.passages.start,
        stats.passages.end,
        stats.file.display(),
        stats.encoded,
        stats.passages.len() - stats.encoded,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `--merge DIR`: the parts in `dir` joined into the index at `out`.
pub fn merge(
    model: &Path,
    input: &Path,
    dir: &Path,
    out: &Path,
    opts: &IndexOptions,
) -> Result<()> {
    let started = std::time::Instant::now();
    let stats = merge_parts(model, input, dir, out, opts)?;
    report(&stats, out, started)
}

fn report(stats: &IndexStats, out: &Path, started: std::time::Instant) -> Result<()> {
    if !stats.skipped.is_empty() {
        eprintln!(
            "skipped {} empty documents: {}",
            stats.skipped.len(),
            stats.skipped.join(", ")
        );
    }
    eprintln!(
        "indexed {} passages from {} documents into {} ({} lists, probe {}{}, {} fragments): {} encoded, {} reused, {:.1} s",
        stats.passages,
        stats.documents,
        out.display(),
        stats.lists,
        stats.probe,
        stats.probe_choice.map_or(String::new(), |c| format!(
            " (recall@10 {:.3} vs the exact scan on {} pseudo-queries)",
            c.recall, c.queries
        )),
        stats.fragments,
        stats.encoded,
        stats.reused,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
