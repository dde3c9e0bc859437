//! An index read as the browser reads it: the always-loaded files first, then only the
//! parts each search step names — natively, through the same core the wasm build runs.
//! Needs the prepared default model (`./build.sh test` does it).

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{bundle, fixture};
use dotfind::build::index_writer::{build_index, IndexOptions};
use dotfind::index::IndexLoader;
use dotfind::search::{Probe, Searcher};

/// The fixture corpus in 6 lists probed 2 at a time, in small fragments and term buckets.
fn lists_index(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("index");
    let opts = IndexOptions {
        lists: Some(6),
        probe: Some(2),
        fragment_bytes: 1024,
        term_bucket_bytes: 512,
        ..IndexOptions::default()
    };
    build_index(&bundle("query"), &fixture("corpus.jsonl"), &out, &opts).unwrap();
    out
}

/// The searcher of `dir` built from its always-loaded files only (the manifest's list).
fn open_lazily(dir: &Path) -> Searcher {
    let read = |rel: &str| std::fs::read(dir.join(rel)).unwrap();
    let mut loader = IndexLoader::new(&read("manifest.json")).unwrap();
    let paths: Vec<String> = loader.files().map(|(p, _)| p.to_string()).collect();
    assert!(paths
        .iter()
        .all(|p| !p.starts_with("vectors/0") && !p.starts_with("passages/")));
    for path in paths {
        loader.add_file(&path, read(&path)).unwrap();
    }
    let mut loaded = loader.finish().unwrap();
    let spec = loaded.bundle.manifest.token_embeddings.clone().unwrap();
    for chunk in 0..spec.chunk_count() {
        let path = format!(
            "model/{}",
            dotfind::model::token_table::TokenTableSpec::chunk_path(chunk)
        );
        loaded.bundle.token_chunks.push((chunk, read(&path)));
    }
    Searcher::new(loaded).unwrap()
}

/// The bytes a part path names: a file of the index in `dir`, or a byte range of it
/// (`#bytes=first-last`, as a `Range` request brings it).
fn read_part(dir: &Path, path: &str) -> Vec<u8> {
    let (file, range) = path.split_once("#bytes=").unwrap_or((path, ""));
    let bytes = std::fs::read(dir.join(file)).unwrap();
    match range.split_once('-') {
        Some((first, last)) => {
            bytes[first.parse::<usize>().unwrap()..=last.parse::<usize>().unwrap()].to_vec()
        }
        None => bytes,
    }
}

/// Adds the parts `paths` of the index in `dir` to `lazy`, as the browser does once fetched,
/// noting each in `fetched`.
fn add_parts(lazy: &mut Searcher, dir: &Path, paths: Vec<String>, fetched: &mut BTreeSet<String>) {
    for path in paths {
        lazy.index_mut()
            .add_part(&path, &read_part(dir, &path))
            .unwrap();
        fetched.insert(path);
    }
}

/// Runs the steps of a dense search of `vector` for `k` results as the browser does —
/// the probed lists' codes, then the candidates' rows — checking that searching before
/// each step names what it misses. Returns the paths fetched, step by step.
fn fetch_for_search(
    lazy: &mut Searcher,
    dir: &Path,
    vector: &[f32],
    k: usize,
    probe: Probe,
    fetched: &mut BTreeSet<String>,
) -> Vec<Vec<String>> {
    let mut steps = Vec::new();
    loop {
        let missing = lazy.index().missing_lists(vector, k, probe).unwrap();
        let Some(first) = missing.first() else {
            return steps;
        };
        assert_eq!(
            lazy.index()
                .search(vector, k, probe)
                .unwrap_err()
                .to_string(),
            not_loaded(first)
        );
        add_parts(lazy, dir, missing.clone(), fetched);
        steps.push(missing);
        assert!(steps.len() <= 2, "{steps:?}");
    }
}

/// The message of a step run before the part `first` it needs was added.
fn not_loaded(first: &str) -> String {
    format!("{first}: not loaded (index parts are fetched on demand, as a query needs them)")
}

#[test]
fn searches_fetch_only_the_parts_they_name_and_match_the_whole_index() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = lists_index(tmp.path());
    let whole = Searcher::open(&dir).unwrap();
    let mut lazy = open_lazily(&dir);
    let manifest = &lazy.index().manifest;
    assert_eq!((manifest.layout.lists, manifest.layout.probe), (6, 2));
    assert!(manifest.layout.fragments > 2, "{:?}", manifest.layout);
    assert!(lazy.index().parts_every_query_needs().is_empty());

    let mut fetched = BTreeSet::new();
    for query in [
        "who walked on the moon",
        "spawn a thread",
        "blueberries and soil acidity",
    ] {
        let vector = lazy.encoder().encode_query(query).unwrap();
        let steps = fetch_for_search(&mut lazy, &dir, &vector, 5, Probe::Default, &mut fetched);
        // The probed lists' directories and codes (not their rows), then rows.
        if let Some(heads) = steps.first().filter(|s| s[0].contains("#bytes=0-")) {
            assert!(heads.len() <= 2, "{heads:?}");
            assert!(
                heads.iter().all(|p| p.starts_with("vectors/0")),
                "{heads:?}"
            );
        }
        for rows in steps.iter().skip(1) {
            assert!(rows.iter().all(|p| !p.contains("#bytes=0-")), "{rows:?}");
        }
        let hits = lazy.index().search(&vector, 5, Probe::Default).unwrap();
        assert_eq!(
            hits,
            whole.index().search(&vector, 5, Probe::Default).unwrap()
        );
        let passages: Vec<usize> = hits.iter().map(|h| h.passage).collect();
        // The directories of fragments not seen yet (and records of those seen), then the
        // hits' records alone: never a whole fragment.
        let directories = lazy.index().missing_fragments(&passages);
        assert!(
            directories.iter().all(|p| p.contains("#bytes=")),
            "{directories:?}"
        );
        add_parts(&mut lazy, &dir, directories, &mut fetched);
        let records = lazy.index().missing_fragments(&passages);
        assert!(
            records.iter().all(|p| !p.contains("#bytes=0-")),
            "{records:?}"
        );
        if !records.is_empty() {
            // A record not added yet is named by its own range.
            let missing = passages
                .iter()
                .find_map(|&n| lazy.index().record(n).err())
                .unwrap()
                .to_string();
            assert!(
                missing.starts_with("passages/") && missing.ends_with(&not_loaded("")),
                "{missing}"
            );
        }
        add_parts(&mut lazy, &dir, records, &mut fetched);
        for h in &hits {
            assert_eq!(lazy.result(h, 80).unwrap(), whole.result(h, 80).unwrap());
        }
        assert!(lazy.index().missing_fragments(&passages).is_empty());
    }
    // Lists and fragments alike arrive by byte range: never a whole file.
    assert!(fetched
        .iter()
        .all(|p| !(p.starts_with("vectors/") || p.starts_with("passages/")) || p.contains('#')));

    // A memory budget of about one list: older lists are dropped as new ones arrive (never
    // those of the search under way), and searches stay right, fetching again what they need.
    let list_bytes = (0..6)
        .map(|i| {
            std::fs::metadata(dir.join(format!("vectors/{i:05}.bin")))
                .unwrap()
                .len()
        })
        .max()
        .unwrap();
    lazy.index_mut().set_list_budget(Some(list_bytes));
    // The last search's lists stay (two at most, the probe depth); all others are dropped.
    assert!(lazy.index().list_bytes_held() <= 2 * list_bytes);
    let mut refetched = 0;
    for query in [
        "moon landing",
        "spawn a thread",
        "water the garden",
        "who walked on the moon",
    ] {
        let vector = lazy.encoder().encode_query(query).unwrap();
        let mut now = BTreeSet::new();
        fetch_for_search(&mut lazy, &dir, &vector, 5, Probe::Default, &mut now);
        refetched += now.iter().filter(|p| fetched.contains(*p)).count();
        assert_eq!(
            lazy.index().search(&vector, 5, Probe::Default).unwrap(),
            whole.index().search(&vector, 5, Probe::Default).unwrap()
        );
        // Within the budget, or the search's own lists where they pass it (never dropped; two
        // at most, the probe depth).
        assert!(lazy.index().list_bytes_held() <= 2 * list_bytes, "{query}");
    }
    assert!(refetched > 0, "an evicted list was fetched again");

    // The exact scan needs every list; re-ranking by id needs every fragment first.
    lazy.index_mut().set_list_budget(None);
    let vector = lazy.encoder().encode_query("moon landing").unwrap();
    let all_lists = lazy
        .index()
        .missing_lists(&vector, 24, Probe::Exact)
        .unwrap();
    // Whole files: every row is scored.
    assert_eq!(
        all_lists,
        (0..6)
            .map(|i| format!("vectors/{i:05}.bin"))
            .collect::<Vec<_>>()
    );
    add_parts(&mut lazy, &dir, all_lists, &mut fetched);
    assert_eq!(
        lazy.index().search(&vector, 24, Probe::Exact).unwrap(),
        whole.index().search(&vector, 24, Probe::Exact).unwrap()
    );

    // Re-ranking by id: the candidates' id buckets (no passage fragment), then their lists
    // (all held by now).
    let ids: Vec<String> = ["astro-1", "no-such-id", "astro-2"]
        .map(String::from)
        .into();
    let needed = lazy.index().missing_for_rerank(&ids).unwrap();
    assert!(
        !needed.is_empty() && needed.iter().all(|p| p.starts_with("ids/")),
        "{needed:?}"
    );
    assert_eq!(
        lazy.index().rerank(&vector, &ids).unwrap_err().to_string(),
        not_loaded(&needed[0])
    );
    add_parts(&mut lazy, &dir, needed, &mut fetched);
    assert_eq!(
        lazy.index().missing_for_rerank(&ids).unwrap(),
        Vec::<String>::new()
    );
    let reranked = lazy.index().rerank(&vector, &ids).unwrap();
    assert_eq!(reranked, whole.index().rerank(&vector, &ids).unwrap());
    assert_eq!(reranked.0.len(), 2);
    assert_eq!(reranked.1, vec!["no-such-id".to_string()]);

    // On a fresh page: the id buckets, then the directories of the candidates' lists (not
    // their codes), then the candidates' rows alone.
    let mut fresh = open_lazily(&dir);
    let vector = fresh.encoder().encode_query("moon landing").unwrap();
    let mut steps = Vec::new();
    loop {
        let needed = fresh.index().missing_for_rerank(&ids).unwrap();
        if needed.is_empty() {
            break;
        }
        add_parts(&mut fresh, &dir, needed.clone(), &mut BTreeSet::new());
        steps.push(needed);
    }
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert!(steps[0].iter().all(|p| p.starts_with("ids/")));
    for path in &steps[1] {
        let (file, range) = path.split_once('#').unwrap();
        let list: usize = file["vectors/".len()..][..5].parse().unwrap();
        let directory = 36 + 4 * fresh.index().parts().lists[list].count;
        assert_eq!(range, format!("bytes=0-{}", directory - 1), "{steps:?}");
    }
    let rows: usize = steps[2]
        .iter()
        .map(|p| {
            let (first, last) = p.split_once("#bytes=").unwrap().1.split_once('-').unwrap();
            last.parse::<usize>().unwrap() + 1 - first.parse::<usize>().unwrap()
        })
        .sum();
    assert_eq!(
        rows,
        2 * 388,
        "two candidates' rows, nothing more: {steps:?}"
    );
    assert_eq!(fresh.index().rerank(&vector, &ids).unwrap(), reranked);
}

#[test]
fn lexical_searches_fetch_their_terms_buckets_only_and_match_the_whole_index() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = lists_index(tmp.path());
    let whole = Searcher::open(&dir).unwrap();
    let mut lazy = open_lazily(&dir);
    let buckets = lazy.index().manifest.layout.term_buckets;
    assert!(buckets > 4, "{:?}", lazy.index().manifest.layout);
    let mut fetched = BTreeSet::new();
    for query in [
        "moon landing",
        "Spawn a THREAD",
        "bread flour yeast",
        "zzzz",
    ] {
        let needed = lazy.index().missing_term_buckets(query);
        assert!(
            needed.iter().all(|p| p.starts_with("terms/")) && needed.len() <= 3,
            "{query}: {needed:?}"
        );
        if let Some(first) = needed.first() {
            assert_eq!(
                lazy.index()
                    .lexical_search(query, 5)
                    .unwrap_err()
                    .to_string(),
                not_loaded(first)
            );
        }
        add_parts(&mut lazy, &dir, needed, &mut fetched);
        let hits = lazy.index().lexical_search(query, 5).unwrap();
        assert_eq!(
            hits,
            whole.index().lexical_search(query, 5).unwrap(),
            "{query}"
        );
        assert_eq!(hits.is_empty(), query == "zzzz", "{query}: {hits:?}");
    }
    // Nine words, a fraction of the buckets.
    assert!(fetched.len() < buckets, "{fetched:?} of {buckets}");

    // Another engine's ranking (ids or URLs, with its scores) as passage hits: what a
    // site's own lexical search brings to a hybrid search.
    let keys: Vec<String> = ["astro-2", "not-in-index", "astro-1"]
        .map(String::from)
        .into();
    let scores = [3.0, 2.5, 1.0];
    let needed = lazy.index().missing_id_buckets(&keys);
    assert!(!needed.is_empty() && needed.iter().all(|p| p.starts_with("ids/")));
    assert_eq!(
        lazy.index()
            .candidate_hits(&keys, &scores, 5)
            .unwrap_err()
            .to_string(),
        not_loaded(&needed[0])
    );
    add_parts(&mut lazy, &dir, needed, &mut fetched);
    let hits = lazy.index().candidate_hits(&keys, &scores, 5).unwrap();
    let ids: Vec<String> = hits
        .iter()
        .map(|h| whole.index().record(h.passage).unwrap().id)
        .collect();
    assert_eq!(ids, ["astro-2", "astro-1"]);
    assert_eq!(hits.iter().map(|h| h.score).collect::<Vec<_>>(), [3.0, 1.0]);
    assert_eq!(
        lazy.index()
            .candidate_hits(&keys, &scores[..2], 5)
            .unwrap_err()
            .to_string(),
        "invalid input: 3 candidates but 2 scores"
    );
    assert_eq!(
        lazy.index()
            .candidate_hits(&keys, &[3.0, f32::NAN, 1.0], 5)
            .unwrap_err()
            .to_string(),
        "invalid input: candidate \"not-in-index\" has score NaN"
    );
}

#[test]
fn damaged_or_foreign_parts_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = lists_index(tmp.path());
    let mut lazy = open_lazily(&dir);
    let bytes = std::fs::read(dir.join("vectors/00001.bin")).unwrap();
    let index = lazy.index_mut();
    assert_eq!(
        index
            .add_part("vectors/00001.bin", &bytes[..bytes.len() - 1])
            .unwrap_err()
            .to_string(),
        format!(
            "data corruption in vectors/00001.bin: {} bytes, manifest says {}",
            bytes.len() - 1,
            bytes.len()
        )
    );
    // Another list's bytes under this list's name: the checksum tells them apart.
    let other = std::fs::read(dir.join("vectors/00002.bin")).unwrap();
    if other.len() == bytes.len() {
        assert!(index.add_part("vectors/00001.bin", &other).is_err());
    }
    assert_eq!(
        index
            .add_part("vectors/00006.bin", &bytes)
            .unwrap_err()
            .to_string(),
        "invalid input: vectors/00006.bin: not a part of this index"
    );
    assert_eq!(
        index
            .add_part("../vectors/00001.bin", &bytes)
            .unwrap_err()
            .to_string(),
        "invalid input: ../vectors/00001.bin: not a part of this index"
    );
    // Ranges: a list's directory and codes vouched for by the part table, rows by the
    // directory; a range the engine never names is refused.
    let count = index.parts().lists[1].count;
    let (directory, codes_end) = (36 + 4 * count, 36 + 4 * count + 50 * count);
    let head = format!("vectors/00001.bin#bytes=0-{}", codes_end - 1);
    let row0 = format!("vectors/00001.bin#bytes={codes_end}-{}", codes_end + 387);
    assert_eq!(
        index
            .add_part(&row0, &bytes[codes_end..codes_end + 388])
            .unwrap_err()
            .to_string(),
        not_loaded(&format!("vectors/00001.bin#bytes=0-{}", directory - 1))
    );
    let mut damaged = bytes[..codes_end].to_vec();
    damaged[40] ^= 1;
    assert!(index
        .add_part(&head, &damaged)
        .unwrap_err()
        .to_string()
        .starts_with("vectors/00001.bin: xxh3-128 mismatch"));
    let mut damaged = bytes[..codes_end].to_vec();
    damaged[codes_end - 1] ^= 1;
    assert_eq!(
        index.add_part(&head, &damaged).unwrap_err().to_string(),
        "data corruption in vectors/00001.bin: its codes do not match its directory's checksum"
    );
    index.add_part(&head, &bytes[..codes_end]).unwrap();
    let mut damaged = bytes[codes_end..codes_end + 388].to_vec();
    damaged[7] ^= 1;
    assert_eq!(
        index.add_part(&row0, &damaged).unwrap_err().to_string(),
        "data corruption in vectors/00001.bin: row 0 does not match its checksum"
    );
    assert_eq!(
        index
            .add_part("vectors/00001.bin#bytes=1-99", &bytes[1..100])
            .unwrap_err()
            .to_string(),
        "invalid input: vectors/00001.bin#bytes=1-99: not a range dotfind names"
    );
    assert_eq!(
        index
            .add_part("vectors/00001.bin#bytes=9-1", &[])
            .unwrap_err()
            .to_string(),
        "invalid input: vectors/00001.bin#bytes=9-1: not a byte range dotfind names"
    );
    index
        .add_part(&row0, &bytes[codes_end..codes_end + 388])
        .unwrap();
    index.add_part("vectors/00001.bin", &bytes).unwrap();
    let directory = 16 + 8 * index.parts().fragments[0].count;
    assert_eq!(
        index.record(0).unwrap_err().to_string(),
        not_loaded(&format!("passages/00000.bin#bytes=0-{}", directory - 1))
    );
}

#[test]
fn centroids_that_do_not_match_the_layout_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = lists_index(tmp.path());
    // Five valid centroids where the layout has six lists, recorded with a matching checksum:
    // the loader's own check names the mismatch.
    let rows: Vec<_> = (0..5)
        .map(|i| {
            dotfind::index::EncodedRow::encode(
                dotfind::index::VectorEncoding::Int8,
                &[i as f32; 384],
            )
        })
        .collect();
    let bytes =
        dotfind::index::VectorShard::to_bytes(dotfind::index::VectorEncoding::Int8, 384, &rows);
    std::fs::write(dir.join("vectors/centroids.bin"), &bytes).unwrap();
    let manifest_path = dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["files"]["vectors/centroids.bin"] =
        serde_json::to_value(dotfind::checksum::FileEntry::of(&bytes)).unwrap();
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    assert_eq!(
        Searcher::open(&dir).unwrap_err().to_string(),
        "data corruption in vectors/centroids.bin: 5 centroids of 384 dimensions, the index has 6 lists of 384"
    );
}
