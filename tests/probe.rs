//! The default probe depth the indexer measures on its corpus (src/build/probe.rs), on the
//! fixture corpus with the prepared default model (`./build.sh test` prepares it).

mod common;

use std::collections::HashSet;

use common::{bundle, fixture, run_cli, stderr};
use dotfind::build::corpus::read_corpus;
use dotfind::build::index_writer::{build_index, IndexOptions};
use dotfind::build::partition::default_probe;
use dotfind::build::probe::{pseudo_queries, PSEUDO_QUERIES, TARGET_RECALL};
use dotfind::index::loader::read_folder;
use dotfind::search::{Probe, Searcher};

fn options(lists: usize, probe: Option<usize>) -> IndexOptions {
    IndexOptions {
        lists: Some(lists),
        probe,
        ..IndexOptions::default()
    }
}

/// Mean recall@10 at `depth` of the pseudo-queries the indexer cut from the corpus, of the
/// kind that found less, recomputed here through the search API.
fn recall_at(searcher: &Searcher, pseudo: &[(usize, Vec<f32>)], depth: usize) -> f64 {
    let kinds: HashSet<usize> = pseudo.iter().map(|(kind, _)| *kind).collect();
    kinds
        .iter()
        .map(|&kind| {
            let vectors: Vec<&Vec<f32>> = pseudo
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, v)| v)
                .collect();
            mean_recall(searcher, &vectors, depth)
        })
        .fold(1.0, f64::min)
}

fn mean_recall(searcher: &Searcher, vectors: &[&Vec<f32>], depth: usize) -> f64 {
    let index = searcher.index();
    let mut sum = 0.0;
    for v in vectors {
        let exact: HashSet<usize> = index
            .search(v, 10, Probe::Exact)
            .unwrap()
            .iter()
            .map(|h| h.passage)
            .collect();
        let hits = index.search(v, 10, Probe::Lists(depth)).unwrap();
        sum +=
            hits.iter().filter(|h| exact.contains(&h.passage)).count() as f64 / exact.len() as f64;
    }
    sum / vectors.len() as f64
}

#[test]
fn the_default_probe_is_the_smallest_depth_whose_pseudo_queries_reach_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    let corpus = fixture("corpus.jsonl");
    let lists = 12;
    let stats = build_index(&bundle("int8"), &corpus, &out, &options(lists, None)).unwrap();
    let choice = stats
        .probe_choice
        .expect("several lists: the probe is measured");
    let manifest = read_folder(&out).unwrap().manifest;
    assert_eq!(manifest.layout.lists, lists);
    assert_eq!(
        (manifest.layout.probe, stats.probe),
        (choice.probe, choice.probe)
    );

    let (records, _) = read_corpus(&corpus, false).unwrap();
    let searcher = Searcher::open(&out).unwrap();
    let vectors: Vec<(usize, Vec<f32>)> = pseudo_queries(&records, PSEUDO_QUERIES)
        .iter()
        .map(|(kind, q)| (*kind, searcher.encoder().encode_query(q).unwrap()))
        .collect();
    assert_eq!(choice.queries, vectors.len());
    let floor = default_probe(lists);
    assert!((floor..=lists).contains(&choice.probe), "{choice:?}");
    // What it reported is what the search does at that depth, and the depth is the smallest
    // reaching the target: the floor falls short of it here (with 24 passages a top 10 holds
    // nearly half the corpus, and a probe keeps within its depth's share of the passages).
    assert_eq!(recall_at(&searcher, &vectors, choice.probe), choice.recall);
    assert!(choice.recall >= TARGET_RECALL, "{choice:?}");
    assert!(choice.probe > floor, "{choice:?}");
    assert!(recall_at(&searcher, &vectors, choice.probe - 1) < TARGET_RECALL);
}

#[test]
fn a_probe_given_or_a_single_list_is_not_measured() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    let stats = build_index(
        &bundle("int8"),
        &fixture("corpus.jsonl"),
        &out,
        &options(12, Some(3)),
    )
    .unwrap();
    assert_eq!((stats.probe, stats.probe_choice), (3, None));
    let stats = build_index(
        &bundle("int8"),
        &fixture("corpus.jsonl"),
        &out,
        &IndexOptions::default(),
    )
    .unwrap();
    assert_eq!((stats.lists, stats.probe, stats.probe_choice), (1, 1, None));
}

#[test]
fn the_cli_reports_the_measured_depth() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    let args = [
        "index",
        "--model",
        bundle("int8").to_str().unwrap(),
        "--input",
        fixture("corpus.jsonl").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--lists",
        "12",
    ]
    .map(str::to_string);
    let o = run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let probe = read_folder(&out).unwrap().manifest.layout.probe;
    let expected = format!("(12 lists, probe {probe} (recall@10 ");
    assert!(stderr(&o).contains(&expected), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(" vs the exact scan on 24 pseudo-queries), "),
        "{}",
        stderr(&o)
    );
}
