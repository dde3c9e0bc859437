//! The probe depth an index of several lists is written with, measured on its own corpus.
//!
//! How many lists a query must scan to find its exact top 10 depends on how far queries lie
//! from the passages, which no corpus-size rule knows: with √n lists over real collections,
//! 4 probed lists of 171 find 0.78 of SciFact's exact top 10 and 0.62 of NFCorpus's, while
//! TREC-DL's topical pool needs only those 4 (BENCHMARKS.md, "Probe depth"). So the indexer
//! asks the index itself: it cuts pseudo-queries from a sample of passages — word spans of
//! 2–4 words like keyword queries and of 6–12 like sentence queries — encodes them with the
//! query model, and keeps the smallest depth at which the probed top 10 of each kind holds
//! [`TARGET_RECALL`] of the exact one on average, within the bytes a query may spend on
//! codes ([`CODE_BUDGET_BYTES`]). Each kind must reach it: keyword queries, what site
//! search mostly gets, land farther from the passages and need deeper probes.

use std::collections::HashSet;
use std::path::Path;

use super::partition::{default_probe, Partitioning};
use crate::error::Result;
use crate::index::loader::read_folder_with;
use crate::index::{ListLayout, Part, PassageRecord, VectorEncoding};
use crate::search::{Probe, Searcher};

/// Pseudo-queries the depth is measured with: a recall estimate within about ±0.01.
pub const PSEUDO_QUERIES: usize = 256;
/// Mean share of the exact top 10 the default probe finds for the pseudo-queries.
pub const TARGET_RECALL: f64 = 0.98;
/// Results the recall is measured on.
const K: usize = 10;
/// Bytes of list directories and codes a query's probe may fetch: with the rows of the
/// rescored candidates and the results' records, a query of a 1M-passage index stays under
/// 1 MB (issue 19's goal). Past it, the depth stops at what the bytes allow.
pub const CODE_BUDGET_BYTES: u64 = 576 << 10;
/// The kinds of pseudo-queries: word spans of these lengths, shortest and longest.
const KINDS: [(usize, usize); 2] = [(2, 4), (6, 12)];

/// The depths a calibration may choose among.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeBounds {
    /// The corpus-size rule's depth (`partition::default_probe`): never less.
    pub floor: usize,
    /// The most lists [`CODE_BUDGET_BYTES`] pays for.
    pub cap: usize,
}

impl ProbeBounds {
    /// Bounds for the lists of `p`: the corpus-size rule's depth, and the cap for their sizes.
    pub fn of(p: &Partitioning, encoding: VectorEncoding, dims: usize, code_bytes: usize) -> Self {
        let mut counts = vec![0; p.centroids.len()];
        for &list in &p.assignment {
            counts[list] += 1;
        }
        Self::new(
            default_probe(counts.len()),
            &counts,
            encoding,
            dims,
            code_bytes,
        )
    }

    /// Bounds for lists of `counts` passages each, read through heads of `code_bytes` codes.
    pub fn new(
        floor: usize,
        counts: &[usize],
        encoding: VectorEncoding,
        dims: usize,
        code_bytes: usize,
    ) -> Self {
        let head_bytes: u64 = counts
            .iter()
            .map(|&count| {
                ListLayout {
                    encoding,
                    dims,
                    count,
                    code_bytes,
                }
                .codes_end() as u64
            })
            .sum();
        let mean = (head_bytes / counts.len().max(1) as u64).max(1);
        let cap = ((CODE_BUDGET_BYTES / mean) as usize).clamp(1, counts.len().max(1));
        ProbeBounds {
            floor: floor.min(cap),
            cap,
        }
    }
}

/// The depth chosen and what it measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeChoice {
    pub probe: usize,
    /// Mean recall@10 at `probe` against the exact scan, of the kind of pseudo-query that
    /// found less.
    pub recall: f64,
    pub queries: usize,
}

/// Pseudo-queries cut from `records`, each with its kind (a number into [`KINDS`]): spans at
/// deterministic places of up to `count` passages spread over the corpus, the kinds taking
/// turns (the same corpus always gives the same queries).
pub fn pseudo_queries(records: &[PassageRecord], count: usize) -> Vec<(usize, String)> {
    let n = records.len();
    let mut out = Vec::with_capacity(count.min(n));
    for j in 0..count.min(n) {
        // Golden-ratio strides visit the corpus evenly whatever its order (Fibonacci
        // hashing: the product wraps modulo 2^64 by design).
        let i = ((j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % n as u64) as usize;
        let words: Vec<&str> = records[i].text.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        let kind = j % KINDS.len();
        let (shortest, longest) = KINDS[kind];
        let len = (shortest + (j / KINDS.len()) % (longest - shortest + 1)).min(words.len());
        let start = (j * 7919) % (words.len() - len + 1);
        out.push((kind, words[start..start + len].join(" ")));
    }
    out
}

/// The smallest depth within `bounds` whose `recall_at(depth)` reaches `target` (a binary
/// search: recall grows with depth, as deeper probes scan supersets), else the cap; with
/// the recall measured there.
pub fn smallest_depth(
    bounds: ProbeBounds,
    target: f64,
    mut recall_at: impl FnMut(usize) -> Result<f64>,
) -> Result<(usize, f64)> {
    let (mut lo, mut hi) = (bounds.floor, bounds.cap);
    let mut at_hi = recall_at(hi)?;
    if at_hi < target {
        return Ok((hi, at_hi));
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let r = recall_at(mid)?;
        if r >= target {
            (hi, at_hi) = (mid, r);
        } else {
            lo = mid + 1;
        }
    }
    Ok((hi, at_hi))
}

/// Measures the default probe of the index written at `dir` (every part on disk) with
/// pseudo-queries from `records`. Only its vector lists are read back: search ranks
/// passages by number, without their records.
pub fn calibrate(
    dir: &Path,
    records: &[PassageRecord],
    bounds: ProbeBounds,
) -> Result<ProbeChoice> {
    let searcher = Searcher::new(read_folder_with(dir, |part| matches!(part, Part::List(_)))?)?;
    let index = searcher.index();
    let pseudo = pseudo_queries(records, PSEUDO_QUERIES);
    let queries = pseudo
        .iter()
        .map(|(_, q)| searcher.encoder().encode_query(q))
        .collect::<Result<Vec<_>>>()?;
    let exact = queries
        .iter()
        .map(|q| {
            let hits = index.search(q, K, Probe::Exact)?;
            Ok(hits.iter().map(|h| h.passage).collect::<HashSet<_>>())
        })
        .collect::<Result<Vec<_>>>()?;
    let recall_at = |depth: usize| -> Result<f64> {
        let mut sums = [(0.0, 0usize); KINDS.len()];
        for ((q, exact), (kind, _)) in queries.iter().zip(&exact).zip(&pseudo) {
            let hits = index.search(q, K, Probe::Lists(depth))?;
            let found = hits.iter().filter(|h| exact.contains(&h.passage)).count();
            sums[*kind].0 += found as f64 / exact.len().max(1) as f64;
            sums[*kind].1 += 1;
        }
        Ok(sums
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(sum, n)| sum / *n as f64)
            .fold(1.0, f64::min))
    };
    let (probe, recall) = smallest_depth(bounds, TARGET_RECALL, recall_at)?;
    Ok(ProbeChoice {
        probe,
        recall,
        queries: queries.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(text: &str) -> PassageRecord {
        PassageRecord {
            id: String::new(),
            doc_id: String::new(),
            url: String::new(),
            title: String::new(),
            heading: String::new(),
            text: text.into(),
        }
    }

    #[test]
    fn pseudo_queries_are_spans_of_the_passages_of_either_kind_in_turn() {
        let text: Vec<String> = (0..40).map(|w| format!("w{w}")).collect();
        let records: Vec<PassageRecord> = (0..5)
            .map(|_| record(&text.join(" ")))
            .chain([record(""), record("one")])
            .collect();
        let queries = pseudo_queries(&records, 300);
        // One per passage visited, empty passages skipped.
        assert!(queries.len() >= 5 && queries.len() < records.len());
        // The kinds take turns (empty passages skipped): about half each.
        let keywords = queries.iter().filter(|(kind, _)| *kind == 0).count();
        assert!(
            keywords.abs_diff(queries.len() - keywords) <= 2,
            "{queries:?}"
        );
        for (kind, q) in &queries {
            let words: Vec<&str> = q.split_whitespace().collect();
            let (shortest, longest) = KINDS[*kind];
            assert!(
                q == "one" || (shortest..=longest).contains(&words.len()),
                "{q:?}"
            );
            // A contiguous span: consecutive word numbers.
            let numbers: Vec<usize> = words.iter().filter_map(|w| w[1..].parse().ok()).collect();
            assert!(numbers.windows(2).all(|p| p[1] == p[0] + 1), "{q:?}");
        }
        assert_eq!(queries, pseudo_queries(&records, 300));
    }

    #[test]
    fn the_smallest_depth_reaching_the_target_is_chosen_within_bounds() {
        let recall = |d: usize| -> Result<f64> { Ok((d as f64 / 50.0).min(1.0)) };
        let bounds = ProbeBounds { floor: 4, cap: 60 };
        assert_eq!(smallest_depth(bounds, 0.5, recall).unwrap(), (25, 0.5));
        // Already reached at the floor.
        assert_eq!(smallest_depth(bounds, 0.05, recall).unwrap(), (4, 0.08));
        // Never reached: the cap, with what it measured.
        let bounds = ProbeBounds { floor: 4, cap: 30 };
        assert_eq!(smallest_depth(bounds, 0.98, recall).unwrap(), (30, 0.6));
    }

    #[test]
    fn the_cap_is_what_the_code_budget_pays_for() {
        // 1,000 lists of 1,000 passages (a 1M index): heads of ~54 KB, 10 of them.
        let counts = vec![1000; 1000];
        let bounds = ProbeBounds::new(10, &counts, VectorEncoding::Int8, 384, 48);
        let head = ListLayout {
            encoding: VectorEncoding::Int8,
            dims: 384,
            count: 1000,
            code_bytes: 48,
        }
        .codes_end() as u64;
        assert_eq!(bounds.cap as u64, CODE_BUDGET_BYTES / head);
        assert!((8..=12).contains(&bounds.cap), "{bounds:?}");
        // Small lists: the budget pays for every list.
        let bounds = ProbeBounds::new(4, &[10; 20], VectorEncoding::Int8, 384, 48);
        assert_eq!(bounds, ProbeBounds { floor: 4, cap: 20 });
        // A floor above the cap gives way to it.
        let bounds = ProbeBounds::new(40, &counts, VectorEncoding::Int8, 384, 48);
        assert_eq!(bounds.floor, bounds.cap);
    }
}
