//! `dotfind search`, `run` and `rerank`: the browser's search, natively.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use dotfind::build::eval;
use dotfind::search::{Mode, Probe, Searcher};

/// Characters of passage text printed per result.
const SNIPPET_CHARS: usize = 100;

pub fn search(
    index: &Path,
    k: usize,
    json: bool,
    probe: Probe,
    mode: Mode,
    query: &str,
) -> Result<()> {
    let searcher = Searcher::open(index)?;
    let mut results = Vec::new();
    for hit in searcher.search_in(query, k, probe, mode)? {
        results.push(searcher.result(&hit, SNIPPET_CHARS)?);
    }
    let mut out = super::stdout();
    if json {
        let brief: Vec<_> = results
            .iter()
            .map(|r| serde_json::json!({"id": r.id, "url": r.url, "title": r.title, "score": r.score}))
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&brief)?)?;
    } else {
        for r in &results {
            writeln!(out, "{:.4}\t{}\t{}\t{}", r.score, r.id, r.title, r.snippet)?;
        }
    }
    out.flush()?;
    Ok(())
}

pub fn run(
    index: &Path,
    queries: &Path,
    k: usize,
    out: &Path,
    tag: &str,
    probe: Probe,
    mode: Mode,
) -> Result<()> {
    let searcher = Searcher::open(index)?;
    let queries = eval::read_queries(queries)?;
    let run = eval::retrieve_in(&searcher, &queries, k, probe, mode)?;
    eval::write_run(out, &run, tag)?;
    eprintln!("wrote {} queries to {}", queries.len(), out.display());
    Ok(())
}

pub fn rerank(
    index: &Path,
    first_stage: &Path,
    queries: &Path,
    depth: usize,
    out: &Path,
    tag: &str,
) -> Result<()> {
    let searcher = Searcher::open(index)?;
    let queries = eval::read_queries(queries)?;
    let candidates = eval::read_run(first_stage)?;
    let (reranked, unknown) = eval::rerank_run(&searcher, &queries, &candidates, depth)?;
    eval::write_run(out, &reranked, tag)?;
    eprintln!(
        "re-ranked {} queries into {}",
        reranked.len(),
        out.display()
    );
    if unknown > 0 {
        eprintln!("warning: {unknown} candidates are not in the index and were dropped");
    }
    Ok(())
}
