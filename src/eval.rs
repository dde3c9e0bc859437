//! Batch retrieval for evaluation: queries in, TREC run files out.
//!
//! Runs are per document: a document split into several passages scores as its best
//! passage (MaxP), since relevance judgments are per corpus `_id`.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use rayon::prelude::*;
use serde::Deserialize;

use crate::encode::Encoder;
use crate::error::{Error, Result};
use crate::search::SearchIndex;

/// One query of a `queries.jsonl` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: String,
    pub text: String,
}

/// Ranked documents per query, best first.
pub type Run = Vec<(String, Vec<(String, f32)>)>;

#[derive(Deserialize)]
struct QueryLine {
    #[serde(rename = "_id")]
    id: serde_json::Value,
    text: String,
}

/// Reads BEIR `queries.jsonl` (`{"_id","text"}` per line).
pub fn read_queries(path: &Path) -> Result<Vec<Query>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at =
            |reason: String| Error::InvalidInput(format!("{}:{}: {reason}", path.display(), n + 1));
        let q: QueryLine =
            serde_json::from_str(line).map_err(|e| at(format!("invalid JSON: {e}")))?;
        let id = match q.id {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(at("\"_id\" must be a string or a number".into())),
        };
        out.push(Query { id, text: q.text });
    }
    Ok(out)
}

/// Scores every query against the whole index and keeps the `k` best documents each.
pub fn retrieve(
    index: &SearchIndex,
    encoder: &Encoder,
    queries: &[Query],
    k: usize,
) -> Result<Run> {
    let records = index.records()?;
    let mut doc_number: HashMap<&str, usize> = HashMap::new();
    let mut doc_names: Vec<&str> = Vec::new();
    let passage_doc: Vec<usize> = records
        .iter()
        .map(|r| {
            *doc_number.entry(r.doc_id.as_str()).or_insert_with(|| {
                doc_names.push(r.doc_id.as_str());
                doc_names.len() - 1
            })
        })
        .collect();
    queries
        .par_iter()
        .map(|q| {
            let v = encoder
                .encode_query(&q.text)
                .map_err(|e| Error::InvalidInput(format!("query {}: {e}", q.id)))?;
            let scores = index.score_all(&v)?;
            let mut best = vec![f32::NEG_INFINITY; doc_names.len()];
            for (p, s) in scores.into_iter().enumerate() {
                let d = passage_doc[p];
                best[d] = best[d].max(s);
            }
            let hits = best
                .into_iter()
                .enumerate()
                .map(|(passage, score)| crate::search::Hit { passage, score })
                .collect();
            let top = crate::search::top_k(hits, k);
            Ok((
                q.id.clone(),
                top.into_iter()
                    .map(|h| (doc_names[h.passage].to_string(), h.score))
                    .collect(),
            ))
        })
        .collect()
}

/// Writes a TREC run (`qid Q0 docid rank score tag`), atomically.
pub fn write_run(path: &Path, run: &Run, tag: &str) -> Result<()> {
    let mut text = Vec::new();
    for (qid, docs) in run {
        for (rank, (doc, score)) in docs.iter().enumerate() {
            let _ = writeln!(text, "{qid} Q0 {doc} {} {score:.6} {tag}", rank + 1);
        }
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
