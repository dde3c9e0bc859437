//! Indexing on many machines, tested with processes on this one: `dotfind index --part i/N`
//! runs at once, then `--merge`, give exactly the bytes of one run. Needs the prepared default
//! model (`./build.sh test` does it).

mod common;

use std::path::Path;
use std::process::Command;

use common::{all_files, bundle, fixture, run_cli, stderr};

fn index_args<'a>(model: &'a str, input: &'a str, out: &'a str) -> Vec<&'a str> {
    // Lists, so the merge also partitions; small fragments, so there are several.
    vec![
        "index",
        "--model",
        model,
        "--input",
        input,
        "--out",
        out,
        "--lists",
        "4",
        "--fragment-kib",
        "1",
    ]
}

#[test]
fn parts_run_at_once_merge_into_the_bytes_of_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, corpus) = (bundle("query"), fixture("corpus.jsonl"));
    let (model, corpus) = (model.to_str().unwrap(), corpus.to_str().unwrap());
    let single = tmp.path().join("single");
    let o = run_cli(&index_args(model, corpus, single.to_str().unwrap()));
    assert!(o.status.success(), "{}", stderr(&o));

    // Three processes at once, as three machines of a cluster would run.
    let parts = tmp.path().join("parts");
    let parts_dir = parts.to_str().unwrap();
    let children: Vec<_> = (0..3)
        .map(|i| {
            let spec = format!("{i}/3");
            let mut args = index_args(model, corpus, parts_dir);
            args.extend(["--part", spec.as_str()]);
            Command::new(env!("CARGO_BIN_EXE_dotfind"))
                .args(&args)
                .output_async()
        })
        .collect();
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stderr).contains(" encoded, 0 reused"));
    }
    let merged = tmp.path().join("merged");
    let mut args = index_args(model, corpus, merged.to_str().unwrap());
    args.extend(["--merge", parts_dir]);
    let o = run_cli(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("24 passages from 24 documents"),
        "{}",
        stderr(&o)
    );
    assert_eq!(all_files(&merged), all_files(&single));

    // A part re-run against the deployed index encodes nothing.
    let mut args = index_args(model, corpus, parts_dir);
    args.extend(["--part", "1/3", "--reuse", single.to_str().unwrap()]);
    let o = run_cli(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("(0 encoded, 8 reused)"),
        "{}",
        stderr(&o)
    );
}

trait OutputAsync {
    fn output_async(&mut self) -> std::process::Child;
}

impl OutputAsync for Command {
    /// Starts the process with its output captured (`wait_with_output` collects it).
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[test]
fn merges_of_missing_or_foreign_parts_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, corpus) = (bundle("query"), fixture("corpus.jsonl"));
    let (model, corpus) = (model.to_str().unwrap(), corpus.to_str().unwrap());
    let parts = tmp.path().join("parts");
    let parts_dir = parts.to_str().unwrap();
    let out = tmp.path().join("index");
    let out = out.to_str().unwrap();
    let merge = |input: &str| {
        let mut args = index_args(model, input, out);
        args.extend(["--merge", parts_dir]);
        stderr(&run_cli(&args))
    };
    for i in [0, 2] {
        let spec = format!("{i}/3");
        let mut args = index_args(model, corpus, parts_dir);
        args.extend(["--part", spec.as_str()]);
        assert!(run_cli(&args).status.success());
    }
    assert_eq!(
        merge(corpus),
        format!(
            "dotfind: error: invalid input: {parts_dir}: part 1 of 3 is missing ({parts_dir}/part-00001-of-00003.json)\n"
        )
    );
    let mut args = index_args(model, corpus, parts_dir);
    args.extend(["--part", "1/3"]);
    assert!(run_cli(&args).status.success());

    // The same parts merged over another corpus: refused, naming the part.
    let other = tmp.path().join("other.jsonl");
    let text = std::fs::read_to_string(corpus)
        .unwrap()
        .replace("Moon", "Mars");
    std::fs::write(&other, text).unwrap();
    assert_eq!(
        merge(other.to_str().unwrap()),
        format!(
            "dotfind: error: {parts_dir}/part-00000-of-00003.json: the corpus differs from this run's (parts of another index?)\n"
        )
    );
    // A damaged part file: its checksum names it.
    let bin = Path::new(parts_dir).join("part-00002-of-00003.bin");
    let mut bytes = std::fs::read(&bin).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&bin, &bytes).unwrap();
    assert!(merge(corpus).starts_with(&format!(
        "dotfind: error: {}: xxh3-128 mismatch: manifest says ",
        bin.display()
    )));
    assert!(
        !Path::new(out).exists(),
        "no index is left by a failed merge"
    );

    // Bad --part values are usage errors.
    let mut args = index_args(model, corpus, parts_dir);
    args.extend(["--part", "3/3"]);
    assert!(
        stderr(&run_cli(&args)).contains("--part takes i/N with 0 ≤ i < N (e.g. 0/4), not \"3/3\"")
    );
}
