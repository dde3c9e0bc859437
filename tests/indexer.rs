//! Corpus → index → search, end to end through the library and the CLI, on fixtures in
//! tests/fixtures. Needs the prepared default model (`./build.sh test` does it).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::{all_files, bundle, fixture, run_cli, stderr};
use dotfind::build::html::{read_site, word_count};
use dotfind::build::index_writer::{build_index, IndexOptions};
use dotfind::index::loader::read_folder;
use dotfind::index::VectorEncoding;
use dotfind::model::cosine;
use dotfind::search::{Probe, Searcher};
use dotfind::ModelBundle;

/// `dotfind index --model M --input I --out O` through the CLI.
fn index_cli(model: &Path, input: &Path, out: &Path) -> std::process::Output {
    index_cli_with(model, input, out, &[])
}

/// The same with further options.
fn index_cli_with(model: &Path, input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "index",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_cli(&args)
}

/// `dotfind search --index INDEX --json EXTRA… QUERY` through the CLI: the hits it prints.
fn search_json(index: &Path, extra: &[&str], query: &str) -> Vec<serde_json::Value> {
    let mut args = vec!["search", "--index", index.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    args.push(query);
    let o = run_cli(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `dotfind run` of the fixture queries against `index` into `out` (top 5), with `extra`.
fn run_fixture_queries(index: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let queries = fixture("queries.jsonl");
    let mut args = vec![
        "run",
        "--index",
        index.to_str().unwrap(),
        "--queries",
        queries.to_str().unwrap(),
        "-k",
        "5",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_cli(&args)
}

fn options(encoding: VectorEncoding) -> IndexOptions {
    IndexOptions {
        encoding,
        ..IndexOptions::default()
    }
}

fn index_of(input: &Path, encoding: VectorEncoding) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("index");
    build_index(&bundle("int8"), input, &out, &options(encoding)).unwrap();
    (dir, out)
}

fn queries() -> Vec<(String, String, String)> {
    let texts: HashMap<String, String> =
        dotfind::build::eval::read_queries(&fixture("queries.jsonl"))
            .unwrap()
            .into_iter()
            .map(|q| (q.id, q.text))
            .collect();
    std::fs::read_to_string(fixture("expected.tsv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), texts[f[0]].clone(), f[1].to_string())
        })
        .collect()
}

/// The vectors of an index of one list (small corpora), as stored.
fn only_list(dir: &Path) -> dotfind::index::VectorShard {
    let loaded = read_folder(dir).unwrap();
    assert_eq!(loaded.manifest.layout.lists, 1);
    let (_, bytes) = loaded
        .parts_at_hand
        .iter()
        .find(|(p, _)| *p == dotfind::index::Part::List(0))
        .unwrap();
    let layout = dotfind::index::ListLayout {
        encoding: loaded.manifest.vector_encoding,
        dims: loaded.manifest.model.dims,
        count: loaded.parts.lists[0].count,
        code_bytes: 0,
    };
    let directory = dotfind::index::ListDirectory::from_bytes("v", bytes, layout).unwrap();
    directory
        .rows(
            "v",
            0..layout.count,
            &bytes[layout.rows_bytes(0..layout.count)],
        )
        .unwrap()
}

#[test]
fn round_trip_search_finds_expected_passages_with_brute_force_scores() {
    let (_d, int8_dir) = index_of(&fixture("corpus.jsonl"), VectorEncoding::Int8);
    let (_d2, f32_dir) = index_of(&fixture("corpus.jsonl"), VectorEncoding::F32);
    let int8_searcher = Searcher::open(&int8_dir).unwrap();
    let (int8, encoder) = (int8_searcher.index(), int8_searcher.encoder());
    let f32_searcher = Searcher::open(&f32_dir).unwrap();
    let (f32_index, _) = (f32_searcher.index(), f32_searcher.encoder());
    assert_eq!(int8.len(), 24);

    // Brute force: every passage encoded alone in f32 by the same bundle, plain dot product.
    let records = int8.records().unwrap();
    let passages: Vec<Vec<f32>> = records
        .iter()
        .map(|r| {
            encoder
                .encode_passages(&[&r.encoded_text()])
                .unwrap()
                .remove(0)
        })
        .collect();

    let mut overlap = 0.0;
    for (qid, text, expected) in queries() {
        let q = encoder.encode_query(&text).unwrap();
        let hits = int8.search(&q, 10, Probe::Default).unwrap();
        assert_eq!(records[hits[0].passage].doc_id, expected, "{qid} {text:?}");
        for h in &hits {
            let exact: f32 = q.iter().zip(&passages[h.passage]).map(|(a, b)| a * b).sum();
            // int8 per-vector scale: error ≤ ½ step per component, ‖q‖ = 1 → ≤ 0.5·max|v|/127·√dims.
            assert!(
                (h.score - exact).abs() < 0.01,
                "{qid}: int8 {} vs f32 {exact}",
                h.score
            );
        }
        let top_f32: Vec<usize> = f32_index
            .search(&q, 10, Probe::Default)
            .unwrap()
            .iter()
            .map(|h| h.passage)
            .collect();
        overlap += hits.iter().filter(|h| top_f32.contains(&h.passage)).count() as f64;
    }
    let mean = overlap / queries().len() as f64;
    assert!(mean >= 9.0, "mean top-10 overlap int8 vs f32 {mean}");

    // Query vectors from outside (the JS API's searchVector) are checked, not trusted.
    let mut bad = encoder.encode_query("spawn a thread").unwrap();
    bad[7] = f32::NAN;
    assert_eq!(
        int8.search(&bad, 3, Probe::Default)
            .unwrap_err()
            .to_string(),
        "invalid input: query vector component 7 is NaN"
    );
    assert_eq!(
        int8.search(&bad[..100], 3, Probe::Default)
            .unwrap_err()
            .to_string(),
        "model mismatch: query vector has 100 dimensions, the index has 384"
    );
}

#[test]
fn vectors_do_not_depend_on_other_passages() {
    let (_a, small) = index_of(&fixture("corpus.jsonl"), VectorEncoding::Int8);
    // Same documents plus unrelated ones before them: a different batch context for every passage.
    let dir = tempfile::tempdir().unwrap();
    let bigger = dir.path().join("corpus.jsonl");
    let mut text = String::from("{\"_id\": \"extra-1\", \"text\": \"a long unrelated passage about llamas and alpacas grazing\"}\n");
    text += &std::fs::read_to_string(fixture("corpus.jsonl")).unwrap();
    std::fs::write(&bigger, text).unwrap();
    let (_b, big) = index_of(&bigger, VectorEncoding::Int8);
    let (sv, bv) = (only_list(&small), only_list(&big));
    for i in 0..sv.count {
        assert_eq!(
            sv.row(i),
            bv.row(i + 1),
            "passage {i} changed with its neighbours"
        );
    }
}

#[test]
fn indexing_is_deterministic_and_incremental() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    copy_dir(&fixture("site"), &site);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let opts = options(VectorEncoding::Int8);
    let first = build_index(&bundle("int8"), &site, &a, &opts).unwrap();
    assert_eq!((first.encoded, first.reused), (first.passages, 0));
    build_index(&bundle("int8"), &site, &b, &opts).unwrap();
    assert_eq!(all_files(&a), all_files(&b), "two runs, identical bytes");

    // Unchanged input into the same folder: nothing re-encoded, same bytes.
    let again = build_index(&bundle("int8"), &site, &a, &opts).unwrap();
    assert_eq!((again.encoded, again.reused), (0, first.passages));
    assert_eq!(all_files(&a), all_files(&b));

    // One page changed: only its passages are encoded again.
    let page = site.join("ja/index.html");
    let html = std::fs::read_to_string(&page)
        .unwrap()
        .replace("トマト", "ナス");
    std::fs::write(&page, html).unwrap();
    let changed = build_index(&bundle("int8"), &site, &a, &opts).unwrap();
    assert_eq!((changed.encoded, changed.reused), (1, first.passages - 1));
    let names: Vec<String> = all_files(&a)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| !n.starts_with("model/"))
        .collect();
    assert_eq!(
        names,
        vec![
            "ids/00000.bin",
            "manifest.json",
            "parts.bin",
            "passages/00000.bin",
            "terms/00000.bin",
            "vectors/00000.bin"
        ]
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}

#[test]
fn html_pages_become_titled_anchored_passages() {
    let records = read_site(&fixture("site")).unwrap();
    let by_url = |prefix: &str| {
        records
            .iter()
            .filter(|r| r.doc_id == prefix)
            .collect::<Vec<_>>()
    };

    let home = by_url("/");
    assert_eq!(home.len(), 2, "{home:#?}");
    assert_eq!(home[0].title, "Garden Handbook");
    assert_eq!(
        (home[0].heading.as_str(), home[0].url.as_str()),
        ("Welcome to the garden handbook", "/#welcome")
    );
    assert!(home[0].text.starts_with("This handbook explains"));
    assert_eq!(
        (home[1].heading.as_str(), home[1].url.as_str()),
        ("Watering", "/#watering")
    );
    let all_home: String = home.iter().map(|r| r.text.as_str()).collect();
    for absent in [
        "Cookie banner",
        "tracking code",
        "navigation link",
        "enable JavaScript",
        "font-family",
        "Footer",
        "banner text",
    ] {
        assert!(
            !all_home.contains(absent),
            "{absent:?} leaked into {all_home:?}"
        );
    }

    let soil = by_url("/docs/soil.html");
    let headings: Vec<(&str, &str)> = soil
        .iter()
        .map(|r| (r.heading.as_str(), r.url.as_str()))
        .collect();
    assert_eq!(
        headings,
        vec![
            ("Soil and compost", "/docs/soil.html"),
            ("Making compost", "/docs/soil.html#compost"),
            ("Making compost", "/docs/soil.html#compost"),
            ("Soil pH", "/docs/soil.html#ph"),
            ("Testing pH", "/docs/soil.html#testing"),
        ]
    );
    // 330 words of compost text: cut at a sentence end into passages of at most 200 words.
    assert_eq!(word_count(&soil[1].text), 198);
    assert_eq!(word_count(&soil[2].text), 132);
    assert!(soil[1].text.ends_with("structure."));
    assert_eq!(
        soil[3].text,
        "Crop | Preferred pH Blueberries | 4.5 to 5.5 Tomatoes | 6.2 to 6.8"
    );
    assert_eq!(
        soil[4].text,
        "ph_meter.read() # returns 6.5 A cheap meter or a lab test tells you whether to add lime or sulfur."
    );
    assert!(soil
        .iter()
        .all(|r| !r.text.contains("script text") && !r.text.contains("Navigation")));

    let ja = by_url("/ja/");
    assert_eq!(ja.len(), 1);
    assert_eq!(
        (ja[0].title.as_str(), ja[0].url.as_str()),
        ("家庭菜園", "/ja/#intro")
    );
    assert_eq!(
        ja[0].text,
        "トマトは日当たりの良い場所で育てます。水やりは土が乾いてから行いましょう。"
    );
    assert!(
        by_url("/empty.html").is_empty(),
        "a page without text yields no passage"
    );

    let ids: std::collections::HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), records.len(), "passage ids are unique");
}

#[test]
fn html_site_search_links_to_the_right_anchor() {
    let (_d, dir) = index_of(&fixture("site"), VectorEncoding::Int8);
    let searcher = Searcher::open(&dir).unwrap();
    let (index, encoder) = (searcher.index(), searcher.encoder());
    let q = encoder
        .encode_query("what acidity do blueberries need")
        .unwrap();
    let top = index
        .record(index.search(&q, 1, Probe::Default).unwrap()[0].passage)
        .unwrap();
    assert_eq!(top.url, "/docs/soil.html#ph");
    let q = encoder.encode_query("how often should I water").unwrap();
    assert_eq!(
        index
            .record(index.search(&q, 1, Probe::Default).unwrap()[0].passage)
            .unwrap()
            .url,
        "/#watering"
    );
}

#[test]
fn cli_index_search_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    let model = bundle("int8");
    let o = index_cli(&model, &fixture("corpus.jsonl"), &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("indexed 24 passages from 24 documents"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("encoded 24/24 passages"),
        "plain progress lines off a terminal"
    );

    let hits = search_json(&out, &["-k", "3"], "who walked on the moon");
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0]["id"], "astro-1");
    assert_eq!(hits[0]["title"], "Moon landing");
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");

    let run = dir.path().join("run.trec");
    let o = run_fixture_queries(&out, &run, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&run).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 50);
    assert_eq!(&lines[0][..4], &["q1", "Q0", "astro-1", "1"]);
    assert_eq!(lines[0][5], "dotfind");
    for (qid, _, expected) in queries() {
        let first = lines.iter().find(|l| l[0] == qid).unwrap();
        assert_eq!(first[2], expected, "{qid}");
    }
}

#[test]
fn run_modes_rank_by_the_model_by_bm25_or_by_both_fused() {
    use dotfind::build::eval::{read_queries, retrieve_in};
    use dotfind::search::{Fusion, Mode};
    let (_d, dir) = index_of(&fixture("corpus.jsonl"), VectorEncoding::Int8);
    let searcher = Searcher::open(&dir).unwrap();
    let texts = read_queries(&fixture("queries.jsonl")).unwrap();
    let run = |mode| retrieve_in(&searcher, &texts, 10, Probe::Exact, mode).unwrap();
    let (dense, lexical, hybrid) = (
        run(Mode::Dense),
        run(Mode::Lexical),
        run(Mode::Hybrid(Fusion::Rrf)),
    );
    let first = |run: &dotfind::build::eval::Run, q: &str| {
        run.iter()
            .find(|(id, _)| id == q)
            .and_then(|(_, docs)| docs.first().cloned())
    };
    for (qid, _, expected) in queries() {
        // Fused, the model's answer stays in the first page, even where BM25 matches only
        // "of" elsewhere (q10, "capital of Japan", answered in Japanese); where both
        // rankings agree on the first document, so does the fusion.
        let (_, docs) = hybrid.iter().find(|(id, _)| *id == qid).unwrap();
        assert!(
            docs.iter().any(|(d, _)| *d == expected),
            "{qid}: hybrid {docs:?}"
        );
        let (d, l) = (
            first(&dense, &qid).unwrap().0,
            first(&lexical, &qid).map(|f| f.0),
        );
        if Some(&d) == l.as_ref() {
            assert_eq!(docs[0].0, d, "{qid}");
        }
        // RRF scores: a document both lists rank first scores 2/61, no document more.
        let (_, score) = first(&hybrid, &qid).unwrap();
        assert!(score > 0.0 && score <= 2.0 / 61.0 + 1e-7, "{qid}: {score}");
    }
    // BM25 ranks only documents sharing a word with the query, by its own scores.
    let (_, moon) = lexical.iter().find(|(id, _)| id == "q1").unwrap();
    assert_eq!(moon[0].0, "astro-1");
    assert!(moon.len() < 24 && moon[0].1 > 1.0, "{moon:?}");
    assert_ne!(dense, lexical);

    let out = dir.parent().unwrap().join("hybrid.trec");
    let cli =
        |fusion: &str| run_fixture_queries(&dir, &out, &["--mode", "hybrid", "--fusion", fusion]);
    let o = cli("convex:0.5");
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("q1 Q0 astro-1 1 "), "{text}");
    let hits = search_json(&dir, &["-k", "2", "--mode", "lexical"], "capital of Japan");
    assert_eq!(
        hits[0]["id"], "sport-2",
        "BM25 matches only \"of\" in English text"
    );
    let o = cli("convex:1.5");
    assert!(stderr(&o)
        .contains("unknown fusion \"convex:1.5\" (expected rrf, or convex:W with W from 0 to 1)"));
}

#[test]
fn run_scores_split_documents_by_their_best_passage() {
    let (_d, dir) = index_of(&fixture("site"), VectorEncoding::Int8);
    let searcher = Searcher::open(&dir).unwrap();
    let (index, encoder) = (searcher.index(), searcher.encoder());
    let queries = vec![dotfind::build::eval::Query {
        id: "q".into(),
        text: "compost and soil organisms".into(),
    }];
    let run = dotfind::build::eval::retrieve(&searcher, &queries, 10, Probe::Default).unwrap();
    let docs: Vec<&str> = run[0].1.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(
        docs.len(),
        3,
        "one line per document, not per passage: {docs:?}"
    );
    assert_eq!(docs[0], "/docs/soil.html");
    let q = encoder.encode_query("compost and soil organisms").unwrap();
    let best = index.search(&q, 1, Probe::Default).unwrap()[0].score;
    assert!((run[0].1[0].1 - best).abs() < 1e-6);
}

#[test]
fn bad_corpus_input_gets_named_errors_and_leaves_no_index() {
    let dir = tempfile::tempdir().unwrap();
    let model = bundle("int8");
    let out = dir.path().join("idx");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let cases: Vec<(PathBuf, String)> = vec![
        (
            write(
                "bad.jsonl",
                b"{\"_id\": \"a\", \"text\": \"x\"}\n{\"_id\": \"b\" \"text\": \"y\"}\n",
            ),
            ":2: invalid JSON: expected `,` or `}` at line 1 column 13".into(),
        ),
        (
            write(
                "dup.jsonl",
                b"{\"_id\": \"a\", \"text\": \"x\"}\n{\"_id\": \"a\", \"text\": \"y\"}\n",
            ),
            ":2: duplicate _id \"a\" (first on line 1)".into(),
        ),
        (
            write(
                "empty.jsonl",
                b"{\"_id\": \"a\", \"title\": \"\", \"text\": \"  \"}\n",
            ),
            ":1: document \"a\" has no title and no text (--skip-empty leaves such documents out)"
                .into(),
        ),
        (
            write("latin1.jsonl", b"{\"_id\": \"a\", \"text\": \"caf\xe9\"}\n"),
            ":1: not valid UTF-8 (invalid utf-8 sequence of 1 bytes from index 25)".into(),
        ),
        (
            write(
                "huge.jsonl",
                format!(
                    "{{\"_id\": \"a\", \"text\": \"x\"}}\n{{\"_id\": \"b\", \"text\": \"{}\"}}\n",
                    "word ".repeat(2 << 20)
                )
                .as_bytes(),
            ),
            ":2: a line of 10.0 MiB; a document may take at most 1 MiB (the model reads only its \
             first few hundred tokens: split long documents into several)"
                .into(),
        ),
    ];
    for (input, expected) in cases {
        let o = index_cli(&model, &input, &out);
        assert!(!o.status.success());
        assert_eq!(
            stderr(&o),
            format!(
                "dotfind: error: invalid input: {}{expected}\n",
                input.display()
            )
        );
        assert!(!out.exists(), "no index left behind");
    }

    // A query bundle never compiled: nothing could load the index, so none is written.
    let uncompiled = dir.path().join("uncompiled");
    std::fs::create_dir(&uncompiled).unwrap();
    std::fs::copy(
        model.join("tokenizer.json"),
        uncompiled.join("tokenizer.json"),
    )
    .unwrap();
    let mut descriptor: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("dotfind-model.json")).unwrap()).unwrap();
    descriptor["files"]
        .as_object_mut()
        .unwrap()
        .remove("model.graph");
    std::fs::write(
        uncompiled.join("dotfind-model.json"),
        serde_json::to_vec(&descriptor).unwrap(),
    )
    .unwrap();
    let o = index_cli(&uncompiled, &fixture("corpus.jsonl"), &out);
    assert_eq!(
        stderr(&o),
        format!(
            "dotfind: error: model bundle {0} is not compiled: run `dotfind compile --model {0}` \
             first (every loader reads its model.graph)\n",
            uncompiled.display()
        )
    );
    assert!(!out.exists(), "no index left behind");

    // A page that cannot be read (a dangling link) names the file.
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("ok.html"), "<p>fine</p>").unwrap();
    std::os::unix::fs::symlink(site.join("gone.html.target"), site.join("gone.html")).unwrap();
    let o = index_cli(&model, &site, &out);
    assert_eq!(
        stderr(&o),
        format!(
            "dotfind: error: {}: No such file or directory (os error 2)\n",
            site.join("gone.html").display()
        )
    );
    std::fs::remove_file(site.join("gone.html")).unwrap();
    std::fs::write(site.join("latin1.html"), b"<p>caf\xe9</p>").unwrap();
    let o = index_cli(&model, &site, &out);
    assert_eq!(
        stderr(&o),
        format!(
            "dotfind: error: invalid input: {}: not valid UTF-8\n",
            site.join("latin1.html").display()
        )
    );
    let o = index_cli(&model, Path::new("/nonexistent/site"), &out);
    assert_eq!(
        stderr(&o),
        "dotfind: error: /nonexistent/site: No such file or directory (os error 2)\n"
    );
    assert!(!out.exists());
}

#[test]
fn a_model_id_that_is_a_local_path_is_not_published() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("bundle");
    std::fs::create_dir(&local).unwrap();
    for f in ["model.graph", "tokenizer.json"] {
        std::fs::copy(bundle("int8").join(f), local.join(f)).unwrap();
    }
    let mut descriptor: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle("int8").join("dotfind-model.json")).unwrap())
            .unwrap();
    descriptor["model_id"] = "/home/builder/models/my-bert".into();
    std::fs::write(
        local.join("dotfind-model.json"),
        serde_json::to_vec(&descriptor).unwrap(),
    )
    .unwrap();
    let out = dir.path().join("idx");
    let o = index_cli(&local, &fixture("corpus.jsonl"), &out);
    assert_eq!(
        stderr(&o),
        "dotfind: error: invalid input: the model bundle's model_id \"/home/builder/models/my-bert\" \
         is a path on this machine, and an index is published: prepare the bundle again with \
         `dotfind prepare --model-id NAME`\n"
    );
    assert!(!out.exists(), "no index left behind");
}

#[test]
fn unwritable_output_fails_cleanly_and_keeps_the_previous_index() {
    let model = bundle("int8");
    // /sys refuses new entries even to root: a real write failure, like a full or read-only disk.
    let o = index_cli(
        &model,
        &fixture("corpus.jsonl"),
        Path::new("/sys/dotfind-index"),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.starts_with("dotfind: error: /sys/.dotfind-index.tmp-"),
        "{err}"
    );
    assert!(
        err.ends_with(": Operation not permitted (os error 1)\n"),
        "{err}"
    );

    // A failing re-index leaves the previous, valid index exactly as it was.
    let (_d, dir) = index_of(&fixture("corpus.jsonl"), VectorEncoding::Int8);
    let before = all_files(&dir);
    let bad = dir.parent().unwrap().join("bad.jsonl");
    std::fs::write(&bad, "{\"_id\": 1}\n{oops\n").unwrap();
    assert!(build_index(&model, &bad, &dir, &options(VectorEncoding::Int8)).is_err());
    assert_eq!(all_files(&dir), before);
    let leftovers: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temp folders left: {leftovers:?}");
}

#[test]
fn a_full_disk_fails_by_name_and_keeps_the_previous_index() {
    // RLIMIT_FSIZE makes every write past 1 MiB fail (EFBIG), as a full disk fails a write
    // halfway through a file: the model copy (megabytes) is cut short mid-file. SIGXFSZ is
    // ignored, so the write returns the error instead of killing the process.
    let (_d, dir) = index_of(&fixture("corpus.jsonl"), VectorEncoding::Int8);
    let before = all_files(&dir);
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 2048; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_dotfind"))
        .args(["index", "--model"])
        .arg(bundle("int8"))
        .arg("--input")
        .arg(fixture("corpus.jsonl"))
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    let temp = format!(
        "dotfind: error: {}/.index.tmp-",
        dir.parent().unwrap().display()
    );
    assert!(err.starts_with(&temp), "{err}");
    assert!(err.ends_with(": File too large (os error 27)\n"), "{err}");
    assert_eq!(all_files(&dir), before, "the previous index is intact");
    let leftovers: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temp folder left: {leftovers:?}");
}

#[test]
fn refuses_to_replace_a_folder_that_is_not_an_index() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
    let err = build_index(
        &bundle("int8"),
        &fixture("corpus.jsonl"),
        dir.path(),
        &options(VectorEncoding::Int8),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "invalid input: {}: exists and is not a dotfind index; refusing to replace it",
            dir.path().display()
        )
    );
    assert!(dir.path().join("precious.txt").exists());
}

#[test]
fn damaged_index_files_are_reported() {
    let (_d, dir) = index_of(&fixture("corpus.jsonl"), VectorEncoding::Int8);
    // Every file is recorded with its size and both checksums (xxh3-128 is the one checked).
    let files = read_folder(&dir).unwrap().manifest.files;
    assert!(
        files.keys().any(|f| f.starts_with("model/model.graph")),
        "{:?}",
        files.keys()
    );
    for (path, entry) in &files {
        let bytes = std::fs::read(dir.join(path)).unwrap();
        assert_eq!(*entry, dotfind::checksum::FileEntry::of(&bytes), "{path}");
    }
    let shard = dir.join("vectors/00000.bin");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 5]).unwrap();
    assert_eq!(
        Searcher::open(&dir).unwrap_err().to_string(),
        format!(
            "data corruption in vectors/00000.bin: {} bytes, manifest says {}",
            bytes.len() - 5,
            bytes.len()
        )
    );
    let mut flipped = bytes.clone();
    flipped[100] ^= 1;
    std::fs::write(&shard, &flipped).unwrap();
    assert!(Searcher::open(&dir)
        .unwrap_err()
        .to_string()
        .starts_with("vectors/00000.bin: xxh3-128 mismatch: manifest says "));
    std::fs::write(&shard, &bytes).unwrap();
    assert!(Searcher::open(&dir).is_ok());

    // The part table cut short: named, before any part is read.
    let table = dir.join("parts.bin");
    let table_bytes = std::fs::read(&table).unwrap();
    std::fs::write(&table, &table_bytes[..20]).unwrap();
    assert_eq!(
        Searcher::open(&dir).unwrap_err().to_string(),
        format!(
            "data corruption in parts.bin: 20 bytes, manifest says {}",
            table_bytes.len()
        )
    );
    std::fs::write(&table, &table_bytes).unwrap();

    // The model folder swapped for another bundle: refused by name.
    let manifest_path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sha = m["model"]["bundle_sha256"].as_str().unwrap().to_string();
    std::fs::write(&manifest_path, text.replace(&sha, &"0".repeat(64))).unwrap();
    let err = Searcher::open(&dir).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "model mismatch: index was built with bundle {} (",
            "0".repeat(64)
        )),
        "{err}"
    );
    std::fs::write(&manifest_path, "{}").unwrap();
    assert!(Searcher::open(&dir)
        .unwrap_err()
        .to_string()
        .starts_with("manifest.json: not a valid index manifest: missing field"));
}

#[test]
fn large_models_are_split_under_the_file_cap_and_still_load() {
    // The compiled graph (20.6 MB int8, its codes deflated) is what an index ships: in two
    // parts under a 12 MiB cap (the default, 20 MiB, holds it whole).
    let cap = 12 * 1024 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("index");
    let opts = IndexOptions {
        max_file_bytes: cap,
        ..options(VectorEncoding::Int8)
    };
    build_index(&bundle("int8"), &fixture("corpus.jsonl"), &dir, &opts).unwrap();
    let files = read_folder(&dir).unwrap();
    let parts = &files.manifest.model.graph_parts;
    assert_eq!(
        parts,
        &vec![
            "model/model.graph.000".to_string(),
            "model/model.graph.001".to_string()
        ]
    );
    for f in files.manifest.files.keys() {
        assert!(
            std::fs::metadata(dir.join(f)).unwrap().len() <= cap as u64,
            "{f} over 12 MiB"
        );
    }
    let searcher = Searcher::open(&dir).unwrap();
    let (_, encoder) = (searcher.index(), searcher.encoder());
    let direct =
        dotfind::Encoder::new(&dotfind::ModelBundle::open(&bundle("int8")).unwrap()).unwrap();
    let q = "who walked on the moon";
    assert!(
        cosine(
            &encoder.encode_query(q).unwrap(),
            &direct.encode_query(q).unwrap()
        ) > 0.999999
    );

    // Small caps give many fragments, and lists instead of one over the cap; the exact
    // search finds the same passages.
    let dir2 = tempfile::tempdir().unwrap();
    let out = dir2.path().join("idx");
    let opts = IndexOptions {
        max_file_bytes: 2048,
        ..options(VectorEncoding::Int8)
    };
    let stats = build_index(&bundle("int8"), &fixture("corpus.jsonl"), &out, &opts).unwrap();
    assert!(stats.fragments > 1 && stats.lists > 1, "{stats:?}");
    let small_searcher = Searcher::open(&out).unwrap();
    let (small, _) = (small_searcher.index(), small_searcher.encoder());
    let one_searcher = Searcher::open(&dir).unwrap();
    let (one, _) = (one_searcher.index(), one_searcher.encoder());
    let v = encoder.encode_query(q).unwrap();
    let ids = |index: &dotfind::search::SearchIndex, probe| -> Vec<(String, f32)> {
        let hits = index.search(&v, 24, probe).unwrap();
        hits.iter()
            .map(|h| (index.record(h.passage).unwrap().id, h.score))
            .collect()
    };
    assert_eq!(ids(small, Probe::Exact), ids(one, Probe::Default));
    // A probe of some lists scans a subset of the passages, scored the same.
    let probed = ids(small, Probe::Lists(2));
    assert!(probed.len() < 24);
    assert!(probed
        .iter()
        .all(|hit| ids(one, Probe::Default).contains(hit)));
}

#[test]
fn skip_empty_leaves_out_and_reports_empty_documents() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("corpus.jsonl");
    std::fs::write(
        &input,
        "{\"_id\": \"471\", \"title\": \"\", \"text\": \"\"}\n{\"_id\": \"ok\", \"text\": \"wings in a slipstream\"}\n",
    )
    .unwrap();
    let out = dir.path().join("idx");
    let o = index_cli_with(&bundle("int8"), &input, &out, &["--skip-empty"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("skipped 1 empty documents: 471\n"),
        "{}",
        stderr(&o)
    );
    let searcher = Searcher::open(&out).unwrap();
    let (index, _) = (searcher.index(), searcher.encoder());
    assert_eq!(
        index
            .records()
            .unwrap()
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        vec!["ok"]
    );
}

#[test]
fn passages_can_be_encoded_by_the_f32_twin_of_the_query_model() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = fixture("corpus.jsonl");
    let twin_opts = IndexOptions {
        passage_model: Some(bundle("f32")),
        ..options(VectorEncoding::Int8)
    };
    let twin = dir.path().join("twin");
    let stats = build_index(&bundle("int8"), &corpus, &twin, &twin_opts).unwrap();
    assert_eq!((stats.encoded, stats.reused), (24, 0));

    // The stored vectors are the f32 model's, bit for bit ...
    let f32_model = dir.path().join("f32-model");
    build_index(
        &bundle("f32"),
        &corpus,
        &f32_model,
        &options(VectorEncoding::Int8),
    )
    .unwrap();
    let read = |d: &Path| std::fs::read(d.join("vectors/00000.bin")).unwrap();
    assert_eq!(read(&twin), read(&f32_model));
    // ... while the model the index ships (what browsers download for queries) is the int8 one.
    let searcher = Searcher::open(&twin).unwrap();
    let (index, encoder) = (searcher.index(), searcher.encoder());
    let sha = |kind: &str| ModelBundle::open(&bundle(kind)).unwrap().bundle_sha256;
    assert_eq!(index.manifest.model.bundle_sha256, sha("int8"));
    assert_eq!(index.manifest.model.passage_bundle_sha256, Some(sha("f32")));
    assert_ne!(encoder.manifest().quantization, "none");
    for (qid, text, expected) in queries() {
        let hits = index
            .search(&encoder.encode_query(&text).unwrap(), 1, Probe::Default)
            .unwrap();
        assert_eq!(
            index.record(hits[0].passage).unwrap().doc_id,
            expected,
            "{qid}"
        );
    }

    // Reuse is keyed by the passage encoder: same options reuse all, the int8 model none.
    let again = build_index(&bundle("int8"), &corpus, &twin, &twin_opts).unwrap();
    assert_eq!((again.encoded, again.reused), (0, 24));
    let plain = build_index(
        &bundle("int8"),
        &corpus,
        &twin,
        &options(VectorEncoding::Int8),
    )
    .unwrap();
    assert_eq!((plain.encoded, plain.reused), (24, 0));
    assert_eq!(
        Searcher::open(&twin)
            .unwrap()
            .index()
            .manifest
            .model
            .passage_bundle_sha256,
        None
    );

    // A passage model that embeds into another space is refused, by field, before encoding.
    let other = dir.path().join("cls-bundle");
    copy_dir(&bundle("f32"), &other);
    let descriptor = other.join("dotfind-model.json");
    let text = std::fs::read_to_string(&descriptor).unwrap();
    std::fs::write(&descriptor, text.replace("\"mean\"", "\"cls\"")).unwrap();
    let refused = dir.path().join("refused");
    let passage_model = ["--passage-model", other.to_str().unwrap()];
    let out = index_cli_with(&bundle("int8"), &corpus, &refused, &passage_model);
    assert_eq!(
        stderr(&out),
        "dotfind: error: model mismatch: the passage model's pooling is \"cls\", the query model's is \"mean\"\n"
    );
    assert!(!refused.exists());
}

/// The query bundle (token embeddings apart): the index lists its checksums file and copies
/// the chunk files beside it unlisted (browsers fetch those a query needs); natively every
/// chunk is read, so search finds the expected passages; a missing or damaged chunk is
/// refused by name.
#[test]
fn query_bundles_ship_their_token_chunks_beside_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("index");
    let opts = IndexOptions {
        passage_model: Some(bundle("f32")),
        ..options(VectorEncoding::Int8)
    };
    build_index(&bundle("query"), &fixture("corpus.jsonl"), &out, &opts).unwrap();
    let files = read_folder(&out).unwrap().manifest.files;
    assert!(files.contains_key("model/token-embeddings/checksums.bin"));
    assert!(
        !files.keys().any(|f| f.ends_with("00000.bin")),
        "chunks are not listed"
    );
    let chunks = std::fs::read_dir(out.join("model/token-embeddings"))
        .unwrap()
        .count()
        - 1;
    assert_eq!(chunks, 30522_usize.div_ceil(32));

    let searcher = Searcher::open(&out).unwrap();
    for (qid, text, expected) in queries() {
        let hits = searcher.search(&text, 1, Probe::Default).unwrap();
        let doc = searcher.index().record(hits[0].passage).unwrap().doc_id;
        assert_eq!(doc, expected, "{qid}");
    }

    // [CLS] (101) lives in chunk 3: every query needs it.
    let chunk = out.join("model/token-embeddings/00003.bin");
    let bytes = std::fs::read(&chunk).unwrap();
    std::fs::write(&chunk, &bytes[..bytes.len() - 1]).unwrap();
    assert_eq!(
        Searcher::open(&out).unwrap_err().to_string(),
        format!(
            "data corruption in token-embeddings/00003.bin: {} bytes, a chunk of this table has {}",
            bytes.len() - 1,
            bytes.len()
        )
    );
    let mut flipped = bytes.clone();
    flipped[7] ^= 1;
    std::fs::write(&chunk, &flipped).unwrap();
    let err = Searcher::open(&out).unwrap_err().to_string();
    assert!(
        err.starts_with("token-embeddings/00003.bin: xxh3-128 mismatch"),
        "{err}"
    );
    std::fs::remove_file(&chunk).unwrap();
    let err = Searcher::open(&out).unwrap_err().to_string();
    assert!(
        err.ends_with("model/token-embeddings/00003.bin: No such file or directory (os error 2)"),
        "{err}"
    );
}

#[test]
fn missing_parent_folders_of_the_output_are_made() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("site/search/index");
    build_index(
        &bundle("int8"),
        &fixture("corpus.jsonl"),
        &out,
        &options(VectorEncoding::Int8),
    )
    .unwrap();
    assert!(out.join("manifest.json").is_file());
}
