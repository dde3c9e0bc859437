//! The native encoder against PyTorch and the Python tokenizer, and its behaviour on bad
//! bundles and bad queries. Needs the prepared default model (`./build.sh test` does it).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{bundle, int8_floor, own_reference, shared_reference, Reference};
use dotfind::bundle::{xxh3_128_hex, FileEntry};
use dotfind::encode::cosine;
use dotfind::tokenize::TextTokenizer;
use dotfind::{Encoder, ModelBundle, Pooling, Similarity};

fn encoder(kind: &str) -> Encoder {
    Encoder::new(&ModelBundle::open(&bundle(kind)).expect("bundle opens")).expect("encoder builds")
}

/// The same bundle with another pooling/similarity: exercises both code paths on real weights.
fn encoder_with(kind: &str, pooling: Pooling, similarity: Similarity) -> Encoder {
    let mut b = ModelBundle::open(&bundle(kind)).unwrap();
    b.manifest.pooling = pooling;
    b.manifest.similarity = similarity;
    Encoder::new(&b).unwrap()
}

#[test]
fn token_ids_equal_python_tokenizers_on_hard_strings() {
    let reference = own_reference();
    assert!(
        reference.tokenization.len() >= 20,
        "reference lacks tokenization cases"
    );
    let tokenizer_json = std::fs::read(bundle("int8").join("tokenizer.json")).unwrap();
    let manifest = ModelBundle::open(&bundle("int8")).unwrap().manifest;
    let query = TextTokenizer::from_json(&tokenizer_json, manifest.max_query_tokens).unwrap();
    let passage = TextTokenizer::from_json(&tokenizer_json, manifest.max_passage_tokens).unwrap();
    for case in &reference.tokenization {
        let t = if case.kind == "query" {
            &query
        } else {
            &passage
        };
        let ids = t.tokenize(&case.text).unwrap().ids;
        assert_eq!(
            ids, case.input_ids,
            "{} tokenization of {:?}",
            case.kind, case.text
        );
    }
    // The 2,000-word case really hit truncation at both limits.
    assert!(reference
        .tokenization
        .iter()
        .any(|c| c.kind == "passage" && c.input_ids.len() == manifest.max_passage_tokens));
}

fn check_parity(reference: &Reference, name: &str) {
    let f32_mean = encoder("f32");
    let int8_mean = encoder("int8");
    let f32_cls = encoder_with("f32", Pooling::Cls, Similarity::Dot);
    // The query model the demo ships: int8 but for the feed-forward MatMuls.
    let mixed_mean = encoder("int8-ffn-f32");
    let (mut int8_sum, mut mixed_sum) = (0f32, 0f32);
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

        let v = mixed_mean.encode_query(&item.query).unwrap();
        let c = cosine(&v, &item.mean);
        assert!(
            c >= 0.995,
            "{name}: int8-ffn-f32 mean cos {c} for {:?}",
            item.query
        );
        mixed_sum += c;
    }
    // Keeping the feed-forward MatMuls in f32 is what buys the quality back (BENCHMARKS.md).
    assert!(
        mixed_sum > int8_sum,
        "{name}: int8-ffn-f32 mean cos {mixed_sum} should beat int8's {int8_sum}"
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
    let bundle = ModelBundle::open(&bundle("f32")).unwrap();
    let plan = dotfind::encode::Int8Plan::for_this_target();
    let e = Encoder::with_plan(&bundle, plan, dotfind::encode::PlanBatch::Any).unwrap();
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

/// The bundle's graph as `Encoder` types it (symbolic batch × sequence), decluttered:
/// parsed from `model.onnx`, or loaded from the compiled `model.graph`.
fn decluttered_graph(kind: &str, file: &str) -> tract_onnx::prelude::TypedModel {
    let bytes = std::fs::read(bundle(kind).join(file)).unwrap();
    dotfind::encode::decluttered_graph(file, &bytes).unwrap()
}

/// The bundle as `tools/prepare_model.py` writes it, before `dotfind compile`: no
/// `model.graph`, and sha256 the only checksum recorded.
fn onnx_only_bundle(kind: &str) -> ModelBundle {
    let dir = bundle(kind);
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&read("dotfind-model.json")).unwrap();
    let files = m["files"].as_object_mut().unwrap();
    files.remove("model.graph");
    for entry in files.values_mut() {
        entry.as_object_mut().unwrap().remove("xxh3_128");
    }
    let json = serde_json::to_vec(&m).unwrap();
    ModelBundle::from_bytes(&json, read("model.onnx"), read("tokenizer.json")).unwrap()
}

#[test]
fn prepared_bundles_are_compiled() {
    for kind in ["int8", "int8-ffn-f32", "f32"] {
        let b = ModelBundle::open(&bundle(kind)).unwrap();
        assert_eq!(b.manifest.model_file(), "model.graph", "{kind}");
        assert!(dotfind::compiled_graph::is_compiled(&b.model), "{kind}");
    }
}

#[test]
fn compiled_graphs_give_the_same_bits_as_onnx() {
    let long = "The immune system protects the body against disease. ".repeat(40);
    let passages = ["short", "東京は日本の首都です", long.as_str()];
    for kind in ["int8", "int8-ffn-f32", "f32"] {
        let compiled = encoder(kind);
        let onnx = Encoder::new(&onnx_only_bundle(kind)).unwrap();
        for item in own_reference().items.iter().take(6) {
            assert_eq!(
                compiled.encode_query(&item.query).unwrap(),
                onnx.encode_query(&item.query).unwrap(),
                "{kind}: query {:?}",
                item.query
            );
        }
        assert_eq!(
            compiled.encode_passages(&passages).unwrap(),
            onnx.encode_passages(&passages).unwrap(),
            "{kind}: passages"
        );
        // And as padded batches, with both plans taking any number of texts.
        let plan = dotfind::encode::Int8Plan::for_this_target();
        let batched = |b: &ModelBundle| {
            Encoder::with_plan(b, plan, dotfind::encode::PlanBatch::Any)
                .unwrap()
                .encode_passages(&passages)
                .unwrap()
        };
        assert_eq!(
            batched(&ModelBundle::open(&bundle(kind)).unwrap()),
            batched(&onnx_only_bundle(kind)),
            "{kind}: padded passage batch"
        );
    }
}

#[test]
fn compiling_is_deterministic_and_recorded_in_the_descriptor() {
    let dir = scratch_bundle();
    let before = ModelBundle::open(dir.path()).unwrap();
    assert_eq!(before.manifest.model_file(), "model.onnx");
    let entry = dotfind::compiled_graph::compile_bundle(dir.path()).unwrap();
    // The same bytes as `./build.sh model` compiled for the prepared bundle, another run.
    let prepared = ModelBundle::open(&bundle("int8")).unwrap().manifest;
    assert_eq!(entry, prepared.files["model.graph"]);
    let after = ModelBundle::open(dir.path()).unwrap();
    assert_eq!(after.manifest.model_file(), "model.graph");
    // Every file is recorded with both checksums; the sha256 already recorded is kept.
    assert_eq!(before.manifest.files["model.onnx"].xxh3_128, None);
    for file in ["model.onnx", "model.graph", "tokenizer.json"] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap();
        assert_eq!(after.manifest.files[file], FileEntry::of(&bytes), "{file}");
    }
    assert_eq!(
        after.manifest.files["model.onnx"].sha256,
        before.manifest.files["model.onnx"].sha256
    );
    assert_ne!(after.bundle_sha256, before.bundle_sha256);
    // Compiling again changes nothing.
    assert_eq!(
        dotfind::compiled_graph::compile_bundle(dir.path()).unwrap(),
        entry
    );
    assert_eq!(
        ModelBundle::open(dir.path()).unwrap().bundle_sha256,
        after.bundle_sha256
    );
    Encoder::new(&after).unwrap();
}

#[test]
fn int8_rewrites_apply_to_every_quantized_matmul() {
    use dotfind::int8_graph::{drop_zero_weight_offsets, fuse_dequantize_tails};
    // 6 layers × (q, k, v, out, ffn1, ffn2); int8-ffn-f32 keeps the two FFN MatMuls in f32.
    // The int8 bundle's weights are 7-bit (the relaxed build's one-plane kernel), the
    // int8-ffn-f32 bundle's 8-bit.
    for (kind, int8_matmuls, seven_bit) in
        [("int8", 36, 36), ("int8-ffn-f32", 24, 0), ("f32", 0, 0)]
    {
        for (own_kernel, file) in [
            (false, "model.onnx"),
            (true, "model.onnx"),
            (false, "model.graph"),
            (true, "model.graph"),
        ] {
            let mut graph = decluttered_graph(kind, file);
            let ops = |g: &tract_core::prelude::TypedModel, name: &str| {
                g.nodes().iter().filter(|n| n.op.name() == name).count()
            };
            let (muls, einsums) = (ops(&graph, "Mul"), ops(&graph, "EinSum"));
            assert_eq!(
                fuse_dequantize_tails(&mut graph, own_kernel).unwrap(),
                int8_matmuls,
                "{kind} {file}: dequantization tails fused (own kernel: {own_kernel})"
            );
            // Each tail's Cast → Mul → Add becomes one op; with our kernel the MatMulInteger
            // too, and the Mul computing the column scales (activation · weight scales) and the
            // unit axes tract adds around it are folded in.
            assert_eq!(
                (muls - ops(&graph, "Mul"), einsums - ops(&graph, "EinSum")),
                if own_kernel {
                    (2 * int8_matmuls, int8_matmuls)
                } else {
                    (int8_matmuls, 0)
                },
                "{kind} {file}: Muls and MatMuls fused (own kernel: {own_kernel})"
            );
            if own_kernel {
                let scale_nodes: Vec<_> = graph
                    .nodes()
                    .iter()
                    .filter(|n| n.name.contains("quant_output_scale_mul"))
                    .map(|n| &n.name)
                    .collect();
                assert!(scale_nodes.is_empty(), "{kind} {file}: {scale_nodes:?}");
            }
            let own_ops: Vec<_> = graph
                .nodes()
                .iter()
                .filter_map(|n| n.op_as::<dotfind::int8_linear::Int8Linear>())
                .collect();
            assert_eq!(
                own_ops.len(),
                if own_kernel { int8_matmuls } else { 0 },
                "{kind} {file}"
            );
            let seven_bit_ops = own_ops
                .iter()
                .filter(|op| op.weights.seven_bit_columns())
                .count();
            assert_eq!(
                seven_bit_ops,
                if own_kernel { seven_bit } else { 0 },
                "{kind} {file}: 7-bit weights"
            );
            assert!(
                own_ops.iter().all(|op| op.weight_scales.is_some()),
                "{kind} {file}: weight scales folded"
            );
            graph.optimize().unwrap();
            // tract's MatMuls: two zero terms each (b0·ΣA and a0·b0·k); none with our kernel.
            assert_eq!(
                drop_zero_weight_offsets(&mut graph).unwrap(),
                if own_kernel { 0 } else { 2 * int8_matmuls },
                "{kind} {file}: weight-offset terms dropped (own kernel: {own_kernel})"
            );
        }
    }
}

/// The browser's plan (compiled graph read with `batch` fixed to 1) encodes every text as
/// the batched plan encodes it alone, and several texts one by one.
#[test]
fn one_text_plan_gives_the_same_bits_as_the_batched_plan() {
    use dotfind::encode::{Int8Plan, PlanBatch};
    let long = "The immune system protects the body against disease. ".repeat(40);
    let passages = ["short", "東京は日本の首都です", long.as_str()];
    for kind in ["int8", "int8-ffn-f32", "f32"] {
        let b = ModelBundle::open(&bundle(kind)).unwrap();
        for int8_plan in [Int8Plan::Rewritten, Int8Plan::OwnKernel] {
            let batched = Encoder::with_plan(&b, int8_plan, PlanBatch::Any).unwrap();
            let one = Encoder::with_plan(&b, int8_plan, PlanBatch::One).unwrap();
            for item in own_reference().items.iter().take(6) {
                assert_eq!(
                    one.encode_query(&item.query).unwrap(),
                    batched.encode_query(&item.query).unwrap(),
                    "{kind} {int8_plan:?}: query {:?}",
                    item.query
                );
            }
            let alone: Vec<Vec<f32>> = passages
                .iter()
                .flat_map(|p| batched.encode_passages(&[p]).unwrap())
                .collect();
            assert_eq!(
                one.encode_passages(&passages).unwrap(),
                alone,
                "{kind} {int8_plan:?}: passages"
            );
        }
    }
}

#[test]
fn int8_plans_give_the_same_bits_as_stock_tract() {
    use dotfind::encode::Int8Plan;
    let long = "The immune system protects the body against disease. ".repeat(40);
    let passages = [
        "short",
        "東京は日本の首都です",
        "a considerably longer passage about vaccines, the immune system and how antibodies form",
        long.as_str(),
    ];
    for kind in ["int8", "int8-ffn-f32"] {
        // tract's own plan of the ONNX graph is the reference for the compiled graph's plans.
        let b = ModelBundle::open(&bundle(kind)).unwrap();
        assert_eq!(b.manifest.model_file(), "model.graph");
        let stock = Encoder::with_int8_plan(&onnx_only_bundle(kind), Int8Plan::Stock).unwrap();
        for plan in [Int8Plan::Rewritten, Int8Plan::OwnKernel] {
            let fast = Encoder::with_int8_plan(&b, plan).unwrap();
            for item in own_reference().items.iter().take(8) {
                assert_eq!(
                    fast.encode_query(&item.query).unwrap(),
                    stock.encode_query(&item.query).unwrap(),
                    "{kind} {plan:?}: query {:?}",
                    item.query
                );
            }
            for p in passages {
                assert_eq!(
                    fast.encode_passages(&[p]).unwrap(),
                    stock.encode_passages(&[p]).unwrap(),
                    "{kind} {plan:?}: passage {:.30?}",
                    p
                );
            }
            // A padded batch too (the zero point then covers the padding rows).
            assert_eq!(
                fast.encode_passages(&passages).unwrap(),
                stock.encode_passages(&passages).unwrap(),
                "{kind} {plan:?}: padded batch"
            );
        }
    }
}

/// dotfind's f32 ops replace every layer's attention and, on AMX-BF16 CPUs, every f32
/// linear layer in every bundle, and encode as tract's plan does within rounding (fused
/// attention: f32's; the bf16 linear layers: ~2⁻¹⁶). The int8 bundles requantize those
/// outputs, where a rounding step moves some int8 activations by one, and six layers compound
/// that (measured: worst cosine 0.9998 with f32 feed-forwards, 0.9995 all-int8 — still far
/// closer than either int8 bundle is to f32, which the parity tests bound).
#[test]
fn own_f32_ops_replace_every_layer_and_agree_with_tract() {
    use dotfind::encode::{F32Plan, Int8Plan, PlanBatch};
    let bf16 = dotfind::bf16_linear::available();
    if !dotfind::attention::kernel_available() && !bf16 {
        eprintln!("neither AVX-512F nor AMX-BF16 here: encoders leave f32 work to tract");
        assert_eq!(F32Plan::for_this_target(), F32Plan::Tract);
        return;
    }
    assert_eq!(F32Plan::for_this_target(), F32Plan::OwnKernels);
    let long = "The immune system protects the body against disease. ".repeat(40);
    let passages = [
        "short",
        "東京は日本の首都です",
        "a considerably longer passage about vaccines, the immune system and how antibodies form",
        long.as_str(),
    ];
    for (kind, floor, f32_linears) in [
        ("f32", 0.999_99, 36),
        ("int8-ffn-f32", 0.999, 12),
        ("int8", 0.999, 0),
    ] {
        let mut graph = decluttered_graph(kind, "model.graph");
        if dotfind::attention::kernel_available() {
            let fused = dotfind::attention::fuse(&mut graph).unwrap();
            assert_eq!(fused, 6, "{kind}: attention fused in every layer");
        }
        if bf16 {
            let linears = dotfind::bf16_linear::fuse(&mut graph).unwrap();
            assert_eq!(
                linears, f32_linears,
                "{kind}: f32 linear layers on bf16 tiles"
            );
        }
        let b = ModelBundle::open(&bundle(kind)).unwrap();
        let plan = Int8Plan::for_this_target();
        let tract = Encoder::with_plans(&b, plan, F32Plan::Tract, PlanBatch::One).unwrap();
        let own = Encoder::with_plans(&b, plan, F32Plan::OwnKernels, PlanBatch::One).unwrap();
        let reference = own_reference();
        let queries = reference.items.iter().take(8).map(|i| i.query.clone());
        let texts: Vec<String> = queries.chain(passages.map(String::from)).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (a, b) = (
            tract.encode_passages(&texts).unwrap(),
            own.encode_passages(&texts).unwrap(),
        );
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| cosine(x, y))
            .fold(1.0f32, f32::min);
        eprintln!("{kind}: worst cosine, dotfind's f32 ops vs tract's: {worst}");
        assert!(worst >= floor && a != b, "{kind}: worst cosine {worst}");
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

/// Copies the int8 bundle, uncompiled (see [`onnx_only_bundle`]), into a temp dir so a
/// test can damage it.
fn scratch_bundle() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let b = onnx_only_bundle("int8");
    std::fs::write(dir.path().join("dotfind-model.json"), &b.manifest_json).unwrap();
    std::fs::write(dir.path().join("model.onnx"), &b.model).unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), &b.tokenizer_json).unwrap();
    dir
}

/// The int8 bundle, compiled, in a temp dir.
fn compiled_scratch_bundle() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "dotfind-model.json",
        "model.onnx",
        "model.graph",
        "tokenizer.json",
    ] {
        std::fs::copy(bundle("int8").join(f), dir.path().join(f)).unwrap();
    }
    dir
}

/// Rewrites a bundle file and records its new checksum, so only the content is wrong.
fn replace_consistently(
    dir: &Path,
    file: &str,
    bytes: &[u8],
    edit: impl FnOnce(&mut serde_json::Value),
) {
    std::fs::write(dir.join(file), bytes).unwrap();
    let path = dir.join("dotfind-model.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["files"][file] = serde_json::to_value(FileEntry::of(bytes)).unwrap();
    edit(&mut m);
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
}

fn load_error(dir: &Path) -> String {
    match ModelBundle::open(dir).and_then(|b| Encoder::new(&b)) {
        Ok(_) => panic!("bundle at {} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_file_is_named() {
    let dir = scratch_bundle();
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    assert_eq!(
        load_error(dir.path()),
        format!(
            "model bundle {}: missing file tokenizer.json",
            dir.path().display()
        )
    );
}

/// A descriptor recording only sha256 (written before dotfind recorded xxh3-128) is checked
/// by sha256.
#[test]
fn tampered_model_is_a_checksum_error() {
    let dir = scratch_bundle();
    let path = dir.path().join("model.onnx");
    let mut bytes = std::fs::read(&path).unwrap();
    let expected = dotfind::bundle::sha256_hex(&bytes);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(
        load_error(dir.path()),
        format!(
            "model.onnx: sha256 mismatch: manifest says {expected}, file has {}",
            dotfind::bundle::sha256_hex(&bytes)
        )
    );
}

#[test]
fn truncated_model_is_data_corruption() {
    let dir = scratch_bundle();
    let path = dir.path().join("model.onnx");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..1000]).unwrap();
    assert_eq!(
        load_error(dir.path()),
        format!(
            "data corruption in model.onnx: 1000 bytes, manifest says {}",
            bytes.len()
        )
    );
}

#[test]
fn hidden_size_mismatch_is_reported() {
    let dir = scratch_bundle();
    let tok = std::fs::read(dir.path().join("tokenizer.json")).unwrap();
    replace_consistently(dir.path(), "tokenizer.json", &tok, |m| {
        m["hidden_size"] = 768.into()
    });
    assert_eq!(
        load_error(dir.path()),
        "model mismatch: model.onnx outputs vectors of 384 dimensions, dotfind-model.json says hidden_size 768"
    );
}

#[test]
fn text_file_renamed_model_onnx_is_rejected() {
    let dir = scratch_bundle();
    replace_consistently(
        dir.path(),
        "model.onnx",
        b"this is a README, not a model\n",
        |_| {},
    );
    let err = load_error(dir.path());
    assert!(
        err.starts_with("model.onnx: not a valid ONNX model:"),
        "{err}"
    );
}

#[test]
fn damaged_compiled_graphs_get_named_errors() {
    let dir = compiled_scratch_bundle();
    let path = dir.path().join("model.graph");
    let mut bytes = std::fs::read(&path).unwrap();
    // Compiled descriptors record xxh3-128 too, and that is what is checked.
    let expected = xxh3_128_hex(&bytes);
    bytes[1000] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(
        load_error(dir.path()),
        format!(
            "model.graph: xxh3-128 mismatch: manifest says {expected}, file has {}",
            xxh3_128_hex(&bytes)
        )
    );
    // Right checksum, wrong content: model.onnx renamed, and a text file.
    let onnx = std::fs::read(dir.path().join("model.onnx")).unwrap();
    replace_consistently(dir.path(), "model.graph", &onnx, |_| {});
    let err = load_error(dir.path());
    assert!(
        err.starts_with("model.graph: not a valid compiled model:"),
        "{err}"
    );
    replace_consistently(dir.path(), "model.graph", b"not a compiled graph\n", |_| {});
    let err = load_error(dir.path());
    assert!(
        err.starts_with("model.graph: not a valid compiled model:"),
        "{err}"
    );
    // Listed in the descriptor but absent.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        load_error(dir.path()),
        format!(
            "model bundle {}: missing file model.graph",
            dir.path().display()
        )
    );
    // Compiling checks the graph against the descriptor, and writes nothing when they disagree.
    let tok = std::fs::read(dir.path().join("tokenizer.json")).unwrap();
    replace_consistently(dir.path(), "tokenizer.json", &tok, |m| {
        m["hidden_size"] = 768.into()
    });
    let descriptor = std::fs::read(dir.path().join("dotfind-model.json")).unwrap();
    assert_eq!(
        dotfind::compiled_graph::compile_bundle(dir.path()).unwrap_err().to_string(),
        "model mismatch: model.graph outputs vectors of 384 dimensions, dotfind-model.json says hidden_size 768"
    );
    assert!(!path.exists());
    assert_eq!(
        std::fs::read(dir.path().join("dotfind-model.json")).unwrap(),
        descriptor
    );
    // Compiling needs model.onnx.
    std::fs::remove_file(dir.path().join("model.onnx")).unwrap();
    assert_eq!(
        dotfind::compiled_graph::compile_bundle(dir.path())
            .unwrap_err()
            .to_string(),
        format!(
            "model bundle {}: missing file model.onnx",
            dir.path().display()
        )
    );
}

#[test]
fn empty_tokenizer_is_rejected() {
    let dir = scratch_bundle();
    replace_consistently(dir.path(), "tokenizer.json", b"", |_| {});
    assert_eq!(load_error(dir.path()), "tokenizer.json: empty file");
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
