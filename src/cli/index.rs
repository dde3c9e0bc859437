//! `dotfind compile` and `dotfind index`: bundles and corpora into what browsers load.

use std::path::Path;

use anyhow::Result;
use dotfind::build::index_writer::{build_index, IndexOptions};

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

pub fn index(model: &Path, input: &Path, out: &Path, opts: &IndexOptions) -> Result<()> {
    let started = std::time::Instant::now();
    let stats = build_index(model, input, out, opts)?;
    if !stats.skipped.is_empty() {
        eprintln!(
            "skipped {} empty documents: {}",
            stats.skipped.len(),
            stats.skipped.join(", ")
        );
    }
    eprintln!(
        "indexed {} passages from {} documents into {} ({} shards): {} encoded, {} reused, {:.1} s",
        stats.passages,
        stats.documents,
        out.display(),
        stats.shards,
        stats.encoded,
        stats.reused,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
