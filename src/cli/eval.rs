//! `dotfind eval`: a TREC run scored against qrels with trec_eval's definitions.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use dotfind::build::eval;

pub fn eval(qrels: &Path, run: &Path, rel_level: i64, complete: bool, json: bool) -> Result<()> {
    let qrels = eval::read_qrels(qrels)?;
    let run_scores = eval::read_run(run)?;
    let m = eval::evaluate(&qrels, &run_scores, rel_level, complete);
    let missing = qrels
        .keys()
        .filter(|q| !run_scores.contains_key(*q))
        .count();
    let mut out = super::stdout();
    if json {
        writeln!(out, "{}", serde_json::to_string(&m)?)?;
    } else {
        for (name, value) in [
            ("MRR@10", m.mrr_10),
            ("nDCG@10", m.ndcg_10),
            ("Recall@100", m.recall_100),
            ("Recall@1000", m.recall_1000),
            ("MAP", m.map),
        ] {
            writeln!(out, "{name:<12} {value:.4}")?;
        }
        writeln!(out, "{:<12} {}", "queries", m.queries)?;
    }
    out.flush()?;
    if missing > 0 && !complete {
        eprintln!("note: {missing} judged queries are not in the run and were not averaged (--complete counts them as 0)");
    }
    Ok(())
}
