//! Batch retrieval for evaluation: queries in, TREC run files out.
//!
//! Runs are per document: a document split into several passages scores as its best
//! passage (MaxP), since relevance judgments are per corpus `_id`.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use rayon::prelude::*;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::search::{top_k, Hit, Mode, Probe, Searcher};

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

/// The `k` best documents per query in `mode`: dense scores every passage of the lists
/// `probe` selects (every list: the exact scan); lexical and hybrid rank passages first (the
/// `k` best), then documents by their best passage.
pub fn retrieve_in(
    searcher: &Searcher,
    queries: &[Query],
    k: usize,
    probe: Probe,
    mode: Mode,
) -> Result<Run> {
    if mode == Mode::Dense {
        return retrieve(searcher, queries, k, probe);
    }
    let passages = queries
        .par_iter()
        .map(|q| {
            searcher
                .search_in(&q.text, k, probe, mode)
                .map_err(|e| Error::InvalidInput(format!("query {}: {e}", q.id)))
        })
        .collect::<Result<Vec<_>>>()?;
    let records = searcher.index().records()?;
    Ok(queries
        .iter()
        .zip(passages)
        .map(|(q, hits)| {
            let mut best: Vec<(String, f32)> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for hit in hits {
                let doc = &records[hit.passage].doc_id;
                if seen.insert(doc.as_str()) {
                    best.push((doc.clone(), hit.score));
                }
            }
            (q.id.clone(), best)
        })
        .collect())
}

/// Scores every query against the lists `probe` selects (every list: the exact scan) and
/// keeps the `k` best documents each.
pub fn retrieve(searcher: &Searcher, queries: &[Query], k: usize, probe: Probe) -> Result<Run> {
    let (index, encoder) = (searcher.index(), searcher.encoder());
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
            let mut best = vec![f32::NEG_INFINITY; doc_names.len()];
            index.score_probed(&v, k, probe, |start, scores| {
                for (p, &s) in (start..).zip(scores) {
                    let d = passage_doc[p];
                    best[d] = best[d].max(s);
                }
            })?;
            // Documents no probed list holds are not retrieved.
            let hits = best
                .into_iter()
                .enumerate()
                .filter(|(_, score)| score.is_finite())
                .map(|(passage, score)| Hit { passage, score })
                .collect();
            let top = top_k(hits, k);
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

/// Relevance judgments: query → document → grade.
pub type Qrels = HashMap<String, HashMap<String, i64>>;

/// A run read back from a file: query → (document, score), in file order.
pub type RunScores = HashMap<String, Vec<(String, f64)>>;

/// Reads qrels: `query-id corpus-id score` (BEIR TSV, optional header) or the 4-column TREC
/// form `qid 0 docid rel`.
pub fn read_qrels(path: &Path) -> Result<Qrels> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut qrels: Qrels = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        let (qid, doc, grade) = match f.len() {
            3 => (f[0], f[1], f[2]),
            4 => (f[0], f[2], f[3]),
            _ => {
                return Err(Error::InvalidInput(format!(
                "{}:{}: expected `query-id corpus-id score` or `qid 0 docid rel`, found {} fields",
                path.display(),
                n + 1,
                f.len()
            )))
            }
        };
        let Ok(grade) = grade.parse::<i64>() else {
            if n == 0 {
                continue; // header line
            }
            return Err(Error::InvalidInput(format!(
                "{}:{}: relevance {grade:?} is not an integer",
                path.display(),
                n + 1
            )));
        };
        qrels
            .entry(qid.to_string())
            .or_default()
            .insert(doc.to_string(), grade);
    }
    Ok(qrels)
}

/// Reads a TREC run (`qid Q0 docid rank score tag`). The rank column is ignored, as in
/// trec_eval: documents are ordered by score.
pub fn read_run(path: &Path) -> Result<RunScores> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut run: RunScores = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        let at =
            |reason: String| Error::InvalidInput(format!("{}:{}: {reason}", path.display(), n + 1));
        if f.len() != 6 {
            return Err(at(format!(
                "expected `qid Q0 docid rank score tag`, found {} fields",
                f.len()
            )));
        }
        let score: f64 = f[4]
            .parse()
            .map_err(|_| at(format!("score {:?} is not a number", f[4])))?;
        if !score.is_finite() {
            return Err(at(format!("score {:?} is not finite", f[4])));
        }
        run.entry(f[0].to_string())
            .or_default()
            .push((f[2].to_string(), score));
    }
    Ok(run)
}

/// The measures the reference model reports, averaged over evaluated queries.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Metrics {
    #[serde(rename = "mrr@10")]
    pub mrr_10: f64,
    #[serde(rename = "ndcg@10")]
    pub ndcg_10: f64,
    #[serde(rename = "recall@100")]
    pub recall_100: f64,
    #[serde(rename = "recall@1000")]
    pub recall_1000: f64,
    pub map: f64,
    /// Queries averaged over.
    pub queries: usize,
}

/// trec_eval's ranking of one query's run: score descending, then document id descending;
/// a document listed twice keeps its highest score.
pub fn trec_order(docs: &[(String, f64)]) -> Vec<(String, f64)> {
    let mut best: HashMap<&str, f64> = HashMap::new();
    for (d, s) in docs {
        let e = best.entry(d.as_str()).or_insert(f64::NEG_INFINITY);
        *e = e.max(*s);
    }
    let mut ranked: Vec<(String, f64)> =
        best.into_iter().map(|(d, s)| (d.to_string(), s)).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    ranked
}

/// One query's measures, with trec_eval's definitions: binary relevance is grade ≥
/// `rel_level` (MRR, recall, MAP); nDCG uses the grades as gains (grade > 0) with a log2
/// discount and the ideal ordering of all judged documents.
pub fn query_metrics(
    judged: &HashMap<String, i64>,
    ranked: &[(String, f64)],
    rel_level: i64,
) -> Metrics {
    let relevant = |d: &str| judged.get(d).is_some_and(|&g| g >= rel_level);
    let num_rel = judged.values().filter(|&&g| g >= rel_level).count();
    let mrr_10 = ranked
        .iter()
        .take(10)
        .position(|(d, _)| relevant(d))
        .map_or(0.0, |i| 1.0 / (i as f64 + 1.0));
    let dcg: f64 = ranked
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, (d, _))| {
            let g = judged.get(d).copied().unwrap_or(0);
            if g > 0 {
                g as f64 / (i as f64 + 2.0).log2()
            } else {
                0.0
            }
        })
        .sum();
    let mut ideal: Vec<i64> = judged.values().copied().filter(|&g| g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, &g)| g as f64 / (i as f64 + 2.0).log2())
        .sum();
    let recall = |k: usize| {
        if num_rel == 0 {
            0.0
        } else {
            ranked.iter().take(k).filter(|(d, _)| relevant(d)).count() as f64 / num_rel as f64
        }
    };
    let mut hits = 0usize;
    let mut precision_sum = 0.0;
    for (i, (d, _)) in ranked.iter().enumerate() {
        if relevant(d) {
            hits += 1;
            precision_sum += hits as f64 / (i as f64 + 1.0);
        }
    }
    Metrics {
        mrr_10,
        ndcg_10: if idcg > 0.0 { dcg / idcg } else { 0.0 },
        recall_100: recall(100),
        recall_1000: recall(1000),
        map: if num_rel == 0 {
            0.0
        } else {
            precision_sum / num_rel as f64
        },
        queries: 1,
    }
}

/// Averages over the judged queries the run answers (trec_eval's default), or over every
/// judged query with missing ones scoring 0 when `complete` (trec_eval -c).
pub fn evaluate(qrels: &Qrels, run: &RunScores, rel_level: i64, complete: bool) -> Metrics {
    let mut total = Metrics::default();
    let empty = Vec::new();
    for (qid, judged) in qrels {
        let docs = match run.get(qid) {
            Some(d) => d,
            None if complete => &empty,
            None => continue,
        };
        let m = query_metrics(judged, &trec_order(docs), rel_level);
        total.mrr_10 += m.mrr_10;
        total.ndcg_10 += m.ndcg_10;
        total.recall_100 += m.recall_100;
        total.recall_1000 += m.recall_1000;
        total.map += m.map;
        total.queries += 1;
    }
    let n = total.queries.max(1) as f64;
    Metrics {
        mrr_10: total.mrr_10 / n,
        ndcg_10: total.ndcg_10 / n,
        recall_100: total.recall_100 / n,
        recall_1000: total.recall_1000 / n,
        map: total.map / n,
        queries: total.queries,
    }
}

/// Re-scores each query's first-stage candidates (its top `depth` in trec_eval order) with
/// the model: the reference model's re-ranking mode. Candidates the index does not hold are
/// dropped and counted.
pub fn rerank_run(
    searcher: &Searcher,
    queries: &[Query],
    candidates: &RunScores,
    depth: usize,
) -> Result<(Run, usize)> {
    type Reranked = Result<((String, Vec<(String, f32)>), usize)>;
    let results: Vec<Reranked> = queries
        .par_iter()
        .filter_map(|q| candidates.get(&q.id).map(|docs| (q, docs)))
        .map(|(q, docs)| {
            let ids: Vec<String> = trec_order(docs)
                .into_iter()
                .take(depth)
                .map(|(d, _)| d)
                .collect();
            let (ranked, unknown) = searcher
                .rerank(&q.text, &ids)
                .map_err(|e| Error::InvalidInput(format!("query {}: {e}", q.id)))?;
            Ok(((q.id.clone(), ranked), unknown.len()))
        })
        .collect();
    let mut run = Vec::new();
    let mut missing = 0;
    for r in results {
        let (entry, unknown) = r?;
        run.push(entry);
        missing += unknown;
    }
    Ok((run, missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, i64)]) -> HashMap<String, i64> {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    fn ranked(docs: &[&str]) -> Vec<(String, f64)> {
        docs.iter()
            .enumerate()
            .map(|(i, d)| (d.to_string(), 100.0 - i as f64))
            .collect()
    }

    #[test]
    fn hand_computed_measures() {
        let j = judged(&[("a", 2), ("b", 1), ("c", 0), ("z", 3)]);
        let m = query_metrics(&j, &ranked(&["c", "a", "x", "b"]), 1);
        assert_eq!(m.mrr_10, 0.5);
        assert!((m.map - (1.0 / 2.0 + 2.0 / 4.0) / 3.0).abs() < 1e-12);
        assert!((m.recall_100 - 2.0 / 3.0).abs() < 1e-12);
        let dcg = 2.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let idcg = 3.0 + 2.0 / 3f64.log2() + 1.0 / 2.0;
        assert!((m.ndcg_10 - dcg / idcg).abs() < 1e-12);
        // Binarized at 2: only a and z are relevant.
        let m = query_metrics(&j, &ranked(&["c", "a", "x", "b"]), 2);
        assert_eq!((m.mrr_10, m.recall_100), (0.5, 0.5));
    }

    #[test]
    fn ties_break_by_docid_descending_and_duplicates_keep_their_best_score() {
        let docs = vec![
            ("a".to_string(), 1.0),
            ("c".to_string(), 1.0),
            ("b".to_string(), 2.0),
            ("a".to_string(), 3.0),
        ];
        let order: Vec<String> = trec_order(&docs).into_iter().map(|(d, _)| d).collect();
        assert_eq!(order, vec!["a", "b", "c"]);
        let docs = vec![("a".to_string(), 1.0), ("c".to_string(), 1.0)];
        assert_eq!(trec_order(&docs)[0].0, "c");
    }

    #[test]
    fn queries_without_relevant_documents_score_zero_and_missing_ones_are_optional() {
        let mut qrels: Qrels = HashMap::new();
        qrels.insert("q1".into(), judged(&[("a", 1)]));
        qrels.insert("q2".into(), judged(&[("b", 0)]));
        qrels.insert("q3".into(), judged(&[("c", 1)]));
        let mut run: RunScores = HashMap::new();
        run.insert("q1".into(), vec![("a".into(), 1.0)]);
        run.insert("q2".into(), vec![("b".into(), 1.0)]);
        let m = evaluate(&qrels, &run, 1, false);
        assert_eq!((m.queries, m.mrr_10), (2, 0.5));
        let m = evaluate(&qrels, &run, 1, true);
        assert_eq!(m.queries, 3);
        assert!((m.mrr_10 - 1.0 / 3.0).abs() < 1e-12);
    }
}
