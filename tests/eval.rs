//! `dotfind rerank` and `dotfind eval` through the CLI. Metric equality with trec_eval is
//! checked by tests/eval_parity.py (pytrec_eval); this covers the commands' contracts.

mod common;

use std::path::Path;

use common::{fixture, ok, run_cli};

#[test]
fn rerank_reorders_a_first_stage_run_and_eval_scores_it() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("idx");
    let model = common::bundle("int8");
    ok(&run_cli(&[
        "index",
        "--model",
        model.to_str().unwrap(),
        "--input",
        fixture("corpus.jsonl").to_str().unwrap(),
        "--out",
        index.to_str().unwrap(),
    ]));
    // A poor first stage: for every query, all documents in corpus order, plus an unknown id.
    let corpus = std::fs::read_to_string(fixture("corpus.jsonl")).unwrap();
    let ids: Vec<String> = corpus
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut first = String::new();
    for q in 1..=10 {
        for (rank, id) in ids
            .iter()
            .chain(std::iter::once(&"not-indexed".to_string()))
            .enumerate()
        {
            first += &format!("q{q} Q0 {id} {} {} bm25\n", rank + 1, 100 - rank);
        }
    }
    let first_path = dir.path().join("first.trec");
    std::fs::write(&first_path, first).unwrap();
    let qrels = fixture("expected.tsv");
    let before = ok(&run_cli(&[
        "eval",
        "--qrels",
        qrels.to_str().unwrap(),
        "--run",
        first_path.to_str().unwrap(),
        "--json",
    ]));
    let before: serde_json::Value = serde_json::from_str(&before).unwrap();

    let out = dir.path().join("reranked.trec");
    let o = run_cli(&[
        "rerank",
        "--index",
        index.to_str().unwrap(),
        "--run",
        first_path.to_str().unwrap(),
        "--queries",
        fixture("queries.jsonl").to_str().unwrap(),
        "--depth",
        "30",
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("warning: 10 candidates are not in the index and were dropped"));
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 10 * 24);
    assert!(text.lines().next().unwrap().ends_with(" dotfind-rerank"));
    let after = ok(&run_cli(&[
        "eval",
        "--qrels",
        qrels.to_str().unwrap(),
        "--run",
        out.to_str().unwrap(),
        "--json",
    ]));
    let after: serde_json::Value = serde_json::from_str(&after).unwrap();
    assert_eq!(after["queries"], 10);
    assert_eq!(
        after["mrr@10"], 1.0,
        "the model puts every expected document first"
    );
    assert!(before["mrr@10"].as_f64().unwrap() < 0.5);

    let table = ok(&run_cli(&[
        "eval",
        "--qrels",
        qrels.to_str().unwrap(),
        "--run",
        out.to_str().unwrap(),
    ]));
    assert_eq!(table.lines().next().unwrap(), "MRR@10       1.0000");
    assert_eq!(table.lines().last().unwrap(), "queries      10");
}

#[test]
fn eval_input_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let qrels = write("qrels.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n");
    let run = write("run.trec", "q1 Q0 d1 1 2.5 t\n");
    let err = |q: &Path, r: &Path| {
        let o = run_cli(&[
            "eval",
            "--qrels",
            q.to_str().unwrap(),
            "--run",
            r.to_str().unwrap(),
        ]);
        assert!(!o.status.success());
        String::from_utf8(o.stderr).unwrap()
    };
    let bad_run = write("bad.trec", "q1 Q0 d1 1 2.5 t\nq1 Q0 d2 2 high t\n");
    assert_eq!(
        err(&qrels, &bad_run),
        format!(
            "dotfind: error: invalid input: {}:2: score \"high\" is not a number\n",
            bad_run.display()
        )
    );
    let short = write("short.trec", "q1 Q0 d1 1\n");
    assert_eq!(
        err(&qrels, &short),
        format!("dotfind: error: invalid input: {}:1: expected `qid Q0 docid rank score tag`, found 4 fields\n", short.display())
    );
    let bad_qrels = write("bad-qrels.tsv", "q1\td1\t1\nq1\td2\tyes\n");
    assert_eq!(
        err(&bad_qrels, &run),
        format!(
            "dotfind: error: invalid input: {}:2: relevance \"yes\" is not an integer\n",
            bad_qrels.display()
        )
    );
    let missing = dir.path().join("missing.trec");
    assert_eq!(
        err(&qrels, &missing),
        format!(
            "dotfind: error: {}: No such file or directory (os error 2)\n",
            missing.display()
        )
    );

    // Judged queries absent from the run: reported, and counted as 0 with --complete.
    let two = write("two.tsv", "q1 0 d1 1\nq2 0 d9 1\n");
    let o = run_cli(&[
        "eval",
        "--qrels",
        two.to_str().unwrap(),
        "--run",
        run.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("note: 1 judged queries are not in the run")
    );
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (m["queries"].as_u64(), m["mrr@10"].as_f64()),
        (Some(1), Some(1.0))
    );
    let o = run_cli(&[
        "eval",
        "--qrels",
        two.to_str().unwrap(),
        "--run",
        run.to_str().unwrap(),
        "--json",
        "--complete",
    ]);
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (m["queries"].as_u64(), m["mrr@10"].as_f64()),
        (Some(2), Some(0.5))
    );
}
