//! The house rules ARCHITECTURE.md states, checked on the source: dependencies point one way
//! (kernels ← ops ← model ← index ← search ← edges), no module imports another that imports
//! it back, and no file or function grows past what a reader takes in at once (~600 lines of
//! non-test code per file, 80 per function unless its doc comment says why it is longer).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first; a module may use its own layer and those below.
const LAYERS: &[&[&str]] = &[
    &["error", "checksum"],
    &["kernels"],
    &["ops"],
    &["model"],
    &["index"],
    &["search"],
    &["build", "wasm", "cli", "main", "lib"],
];

fn layer(top: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&top))
        .unwrap_or_else(|| panic!("module {top} is in no layer of tests/layout.rs"))
}

fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    // Unit tests kept in their own file (`mod tests;`) are tests, not code.
    out.retain(|p| p.file_name().is_some_and(|n| n != "tests.rs"));
    out.sort();
    out
}

/// A source file's module path under `src/` (`model/graph/ops.rs` → `["model", "graph",
/// "ops"]`; `mod.rs` names its folder).
fn module_path(file: &Path) -> Vec<String> {
    let rel = file
        .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
        .unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code before the file's unit tests (`mod tests`), without comments.
fn code(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|l| !l.starts_with("mod tests"))
        .filter(|l| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with("//")
        })
        .collect()
}

/// The modules (two levels deep, e.g. `model::plan`) a file refers to through `crate::` or
/// `super::` paths (the binary's `dotfind::` paths count as `crate::`).
fn references(module: &[String], lines: &[&str]) -> BTreeSet<Vec<String>> {
    let mut found = BTreeSet::new();
    let prefixes = ["crate::", "dotfind::", "super::"];
    for line in lines {
        for prefix in prefixes {
            let mut rest = *line;
            while let Some(at) = rest.find(prefix) {
                let before = rest[..at].chars().last();
                rest = &rest[at + prefix.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let path: Vec<String> = rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .filter(|s| !s.is_empty() && s.chars().next().is_some_and(char::is_lowercase))
                    .map(String::from)
                    .collect();
                let mut full = if prefix == "super::" {
                    let parent = module.len().saturating_sub(1);
                    let mut p = module[..parent].to_vec();
                    p.extend(path);
                    p
                } else {
                    path
                };
                full.truncate(2);
                if !full.is_empty() {
                    found.insert(full);
                }
            }
        }
    }
    found
}

#[test]
fn dependencies_point_one_way_without_cycles() {
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut upward = Vec::new();
    for file in sources() {
        let module = module_path(&file);
        let mut own = module.clone();
        own.truncate(2);
        let text = std::fs::read_to_string(&file).unwrap();
        for target in references(&module, &code(&text)) {
            if target[0] != own[0] && layer(&target[0]) > layer(&own[0]) {
                upward.push(format!("{} uses {}", module.join("::"), target.join("::")));
            }
            // Submodules of one folder may use their parent's items, never the reverse
            // through a cycle: only edges between distinct two-level modules count.
            if target != own && !(target.len() == 1 && target[0] == own[0]) {
                edges.entry(own.clone()).or_default().insert(target);
            }
        }
    }
    assert!(
        upward.is_empty(),
        "dependencies pointing up a layer: {upward:#?}"
    );
    // Depth-first search for a cycle among two-level modules.
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            return Some(stack[at..].iter().map(|n| n.join("::")).collect());
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        let cycle = visit(node, &edges, &mut Vec::new(), &mut done);
        assert!(
            cycle.is_none(),
            "import cycle: {:?}",
            cycle.unwrap_or_default()
        );
    }
}

#[test]
fn files_and_functions_stay_readable() {
    let mut too_long = Vec::new();
    for file in sources() {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.display().to_string();
        let lines = code(&text).len();
        if lines > 600 {
            too_long.push(format!("{name}: {lines} lines of code"));
        }
        let all: Vec<&str> = text
            .lines()
            .take_while(|l| !l.starts_with("mod tests"))
            .collect();
        for (i, line) in all.iter().enumerate() {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            let is_fn = [
                "fn ",
                "pub fn ",
                "pub(crate) fn ",
                "pub(super) fn ",
                "unsafe fn ",
                "pub(super) unsafe fn ",
            ]
            .iter()
            .any(|p| trimmed.starts_with(p));
            if !is_fn || trimmed.ends_with(';') {
                continue;
            }
            let Some(end) = all[i..].iter().position(|l| *l == format!("{indent}}}")) else {
                continue;
            };
            let docs: String = all[..i]
                .iter()
                .rev()
                .take_while(|l| {
                    let t = l.trim_start();
                    t.starts_with("///") || t.starts_with("#[")
                })
                .copied()
                .collect();
            if end + 1 > 80 && !docs.contains("over 80 lines") {
                too_long.push(format!("{name}:{}: a function of {} lines", i + 1, end + 1));
            }
        }
    }
    assert!(too_long.is_empty(), "{too_long:#?}");
}
