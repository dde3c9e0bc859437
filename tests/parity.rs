//! The native encoder against PyTorch: embeddings of every bundle kind equal the reference
//! the preparation tool computed (and the independent one in ../shared when present), and
//! bad queries get named errors. Needs the prepared default model (`./build.sh test`).

mod common;

use std::process::{Command, Stdio};

use common::{
    bundle, encoder, int8_floor, open_bundle, own_reference, shared_reference, Reference,
};
use dotfind::model::{cosine, Int8Plan, PlanBatch, Plans};
use dotfind::{Encoder, Pooling, Similarity};

/// The same bundle with another pooling/similarity: exercises both code paths on real weights.
fn encoder_with(kind: &str, pooling: Pooling, similarity: Similarity) -> Encoder {
    let mut b = open_bundle(kind);
    b.manifest.pooling = pooling;
    b.manifest.similarity = similarity;
    Encoder::new(&b).unwrap()
}

/// The query bundle's floor per query and on average: per-column 7-bit weight grids and int8
/// compute with per-token activation scales keep retrieval within ~0.005 nDCG@10 of f32 (BENCHMARKS.md, Quality), which is what these bounds stand for; the
/// per-tensor int8 bundle reaches 0.9905 on average here.
const QUERY_FLOOR: f32 = 0.99;
const QUERY_MEAN_FLOOR: f32 = 0.994;

fn check_parity(reference: &Reference, name: &str) {
    let f32_mean = encoder("f32");
    let int8_mean = encoder("int8");
    let f32_cls = encoder_with("f32", Pooling::Cls, Similarity::Dot);
    // The query model the demo ships: compact weights, int8 per-token compute.
    let query_mean = encoder("query");
    let (mut int8_sum, mut query_sum) = (0f32, 0f32);
    for item in &reference.items {
        let tokens = f32_mean.tokenize_query(&item.query).unwrap();
        assert_eq!(
            tokens.ids, item.input_ids,
            "{name}: token ids of {:?}",
            item.query
        );

        let v = f32_mean.encode_query(&item.query).unwrap();
        let c = cosine(&v, &item.mean);
        assert!(c >= 0.9999, "{name}: f32 mean cos {c} for {:?}", item.query);
        assert!(
            (v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4,
            "cosine bundle is normalized"
        );

        // CLS + dot: raw vector, compared element-wise too.
        let v = f32_cls.encode_query(&item.query).unwrap();
        let c = cosine(&v, &item.cls);
        let diff = v
            .iter()
            .zip(&item.cls)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            c >= 0.9999 && diff < 1e-3,
            "{name}: f32 cls cos {c} diff {diff} for {:?}",
            item.query
        );

        let v = int8_mean.encode_query(&item.query).unwrap();
        let c = cosine(&v, &item.mean);
        assert!(
            c >= int8_floor(item),
            "{name}: int8 mean cos {c} for {:?}",
            item.query
        );
        int8_sum += c;

        let v = query_mean.encode_query(&item.query).unwrap();
        let c = cosine(&v, &item.mean);
        assert!(
            c >= QUERY_FLOOR,
            "{name}: query bundle mean cos {c} for {:?}",
            item.query
        );
        query_sum += c;
    }
    let n = reference.items.len() as f32;
    eprintln!(
        "{name}: mean cos int8 {:.4}, query {:.4}",
        int8_sum / n,
        query_sum / n
    );
    assert!(
        query_sum / n >= QUERY_MEAN_FLOOR,
        "{name}: query bundle mean cos {}",
        query_sum / n
    );
}

#[test]
fn embeddings_equal_pytorch_reference_of_the_preparation_tool() {
    let reference = own_reference();
    assert!(reference.items.len() >= 5);
    check_parity(&reference, "own reference");
}

#[test]
fn embeddings_equal_independent_shared_reference() {
    match shared_reference() {
        Some(reference) => check_parity(&reference, "shared reference"),
        None => eprintln!("../shared/models/minilm-l6-distilbert/reference.json absent: covered by the own reference"),
    }
}

#[test]
fn batched_passages_equal_passages_encoded_alone() {
    // The padded-batch plan: what padding could leak into (the default plan runs one text
    // per run).
    let plans = Plans::exact(Int8Plan::for_this_target(), PlanBatch::Any);
    let e = Encoder::with_plans(&open_bundle("f32"), plans).unwrap();
    let texts = [
        "short",
        "a considerably longer passage about vaccines, the immune system and how antibodies form",
        "東京は日本の首都です",
    ];
    let batch = e.encode_passages(&texts).unwrap();
    assert_eq!(batch.len(), 3);
    // Passages truncate at their own limit (the passage tokenizer is made on first use).
    let long = "word ".repeat(2000);
    assert_eq!(
        e.tokenize_passage(&long).unwrap().len(),
        e.manifest().max_passage_tokens
    );
    assert_eq!(
        e.tokenize_query(&long).unwrap().len(),
        e.manifest().max_query_tokens
    );
    for (text, v) in texts.iter().zip(&batch) {
        let alone = e.encode_passages(&[text]).unwrap().remove(0);
        assert_eq!(v.len(), e.dims());
        assert!(cosine(v, &alone) > 0.99999, "padding leaked into {text:?}");
    }
}

#[test]
fn bad_queries_get_named_errors() {
    let e = encoder("int8");
    assert_eq!(
        e.encode_query("").unwrap_err().to_string(),
        "invalid input: query is empty"
    );
    assert_eq!(
        e.encode_query(" \t\n").unwrap_err().to_string(),
        "invalid input: query is empty"
    );
    assert_eq!(
        e.encode_query("\u{0}\u{1}").unwrap_err().to_string(),
        "invalid input: query has no searchable text"
    );
    let huge = "word ".repeat(20_000);
    assert_eq!(
        e.encode_query(&huge).unwrap_err().to_string(),
        "invalid input: query is 100000 bytes, the limit is 65536"
    );
    // Long but allowed: truncated to the bundle's limit, still a vector.
    let long = "word ".repeat(10_000);
    assert_eq!(
        e.tokenize_query(&long).unwrap().len(),
        e.manifest().max_query_tokens
    );
    assert_eq!(e.encode_query(&long).unwrap().len(), e.dims());
}

#[test]
fn cli_encode_matches_the_library() {
    let texts = "what is the capital of france\nhow do vaccines train the immune system\n";
    let run = |args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dotfind"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        // A run that fails on its arguments exits without reading stdin: a broken pipe
        // here is expected, and the exit status and stderr are what the test checks.
        let _ = child.stdin.take().unwrap().write_all(texts.as_bytes());
        child.wait_with_output().unwrap()
    };
    let model = bundle("int8");
    let out = run(&["encode", "--model", model.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vectors: Vec<Vec<f32>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let e = encoder("int8");
    assert_eq!(vectors.len(), 2);
    for (line, v) in texts.lines().zip(&vectors) {
        assert_eq!(v, &e.encode_query(line).unwrap());
    }

    let out = run(&["encode", "--model", "/nonexistent/bundle"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "dotfind: error: model bundle /nonexistent/bundle: missing file dotfind-model.json\n"
    );
}

/// The query bundle ranks the demo site's passages as its f32 twin does (the report
/// `dotfind prepare --check` prints; the f32 twin embeds like PyTorch, above).
#[test]
fn query_bundle_ranks_like_its_f32_twin() {
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/site");
    let report =
        dotfind::build::prepare::report::compare(&bundle("query"), &bundle("f32"), &demo).unwrap();
    eprintln!("{report}");
    assert_eq!((report.queries, report.passages), (100, 300));
    assert!(report.mean_cosine >= QUERY_MEAN_FLOOR, "{report}");
    assert!(report.min_cosine >= QUERY_FLOOR, "{report}");
    assert!(report.top10_overlap >= 9.5, "{report}");
    assert!(report.top1_agreement >= 0.9, "{report}");
}

/// A check corpus with no documents is a named error (the corpus reader's), not a report of
/// nothing.
#[test]
fn an_empty_check_corpus_is_named() {
    let dir = std::env::temp_dir().join(format!("dotfind-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let err = dotfind::build::prepare::report::compare(&bundle("query"), &bundle("f32"), &empty)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("invalid input: {}: no documents", empty.display())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
