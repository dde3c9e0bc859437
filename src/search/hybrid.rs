//! Hybrid retrieval: one ranking from a lexical and a dense one. A 6-layer bi-encoder is
//! weakest where BM25 is strongest (exact names, codes, rare terms) and the other way round,
//! so fusing the two beats either on most collections. Fusion works on ranks or on scores
//! normalised per list: BM25 scores and dot products live on unrelated scales.

use std::collections::HashMap;

use super::top_k::{top_k, Hit};

/// How deep each side of a hybrid search goes: past the first page, so a passage one side
/// ranks 40th and the other 3rd can still come first.
pub const HYBRID_DEPTH: usize = 100;

/// How deep each side of a hybrid search for `k` results goes.
pub fn hybrid_depth(k: usize) -> usize {
    k.max(HYBRID_DEPTH)
}

/// The constant of reciprocal rank fusion: the value its authors found robust across TREC
/// collections, and the one every implementation uses.
pub const RRF_K: f32 = 60.0;

/// Which ranking a search returns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// The model's (BERT_Dot).
    Dense,
    /// BM25's.
    Lexical,
    /// Both, fused.
    Hybrid(Fusion),
}

/// How two rankings become one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// Reciprocal rank fusion (Cormack et al. 2009): Σ 1 / (60 + rank). Needs no score scale
    /// and no weight, so nothing in it is fitted to a collection.
    Rrf,
    /// `weight` × the dense score + (1 − `weight`) × the lexical score, each min–max
    /// normalised over its own list (a passage missing from a list gets 0 there).
    Convex { weight: f32 },
}

impl Default for Fusion {
    /// The dense ranking weighted 0.7, BM25's 0.3: the weight whose mean gain over the better
    /// single ranking is highest on the shared test collections, and, chosen on all but one
    /// of them, still gains on the one left out (`./build.sh bench-hybrid`, BENCHMARKS.md).
    /// Rank fusion (RRF) needs no weight but lets a weak BM25 list (one matching only "of")
    /// pull passages up as much as a strong one.
    fn default() -> Self {
        Fusion::Convex { weight: 0.7 }
    }
}

impl std::fmt::Display for Fusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fusion::Rrf => write!(f, "rrf"),
            Fusion::Convex { weight } => write!(f, "convex:{weight}"),
        }
    }
}

impl std::str::FromStr for Fusion {
    type Err = String;

    /// `rrf`, or `convex:W` with W in [0, 1] (the dense side's weight).
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "rrf" {
            return Ok(Fusion::Rrf);
        }
        match s.strip_prefix("convex:").map(str::parse::<f32>) {
            Some(Ok(weight)) if (0.0..=1.0).contains(&weight) => Ok(Fusion::Convex { weight }),
            _ => Err(format!(
                "unknown fusion {s:?} (expected rrf, or convex:W with W from 0 to 1)"
            )),
        }
    }
}

/// The `k` best passages of `dense` and `lexical` (each best first) fused by `fusion`.
pub fn fuse(dense: &[Hit], lexical: &[Hit], fusion: Fusion, k: usize) -> Vec<Hit> {
    let mut fused: HashMap<usize, f32> = HashMap::new();
    let mut add = |hits: &[Hit], score: &dyn Fn(usize, &Hit) -> f32| {
        for (rank, hit) in hits.iter().enumerate() {
            *fused.entry(hit.passage).or_default() += score(rank, hit);
        }
    };
    match fusion {
        Fusion::Rrf => {
            let rrf = |rank: usize, _: &Hit| 1.0 / (RRF_K + rank as f32 + 1.0);
            add(dense, &rrf);
            add(lexical, &rrf);
        }
        Fusion::Convex { weight } => {
            add(dense, &normalised(dense, weight));
            add(lexical, &normalised(lexical, 1.0 - weight));
        }
    }
    let hits = fused
        .into_iter()
        .map(|(passage, score)| Hit { passage, score })
        .collect();
    top_k(hits, k)
}

/// A hit's score min–max normalised over `hits`, times `weight` (all equal: `weight`).
fn normalised(hits: &[Hit], weight: f32) -> impl Fn(usize, &Hit) -> f32 {
    let (lo, hi) = hits
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), h| {
            (lo.min(h.score), hi.max(h.score))
        });
    move |_, hit| {
        if hi > lo {
            weight * (hit.score - lo) / (hi - lo)
        } else {
            weight
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(passages: &[usize], scores: &[f32]) -> Vec<Hit> {
        passages
            .iter()
            .zip(scores)
            .map(|(&passage, &score)| Hit { passage, score })
            .collect()
    }

    #[test]
    fn rrf_ranks_what_both_lists_rank_high_first_by_reciprocal_ranks() {
        let dense = hits(&[1, 2, 3], &[0.9, 0.8, 0.7]);
        let lexical = hits(&[3, 2, 4], &[12.0, 9.0, 1.0]);
        let fused = fuse(&dense, &lexical, Fusion::Rrf, 10);
        let order: Vec<usize> = fused.iter().map(|h| h.passage).collect();
        // 3: 1/63 + 1/61 = 0.032266; 2: 1/62 + 1/62 = 0.032258; 1: 1/61; 4: 1/63.
        assert_eq!(order, vec![3, 2, 1, 4]);
        assert!((fused[0].score - (1.0 / 63.0 + 1.0 / 61.0)).abs() < 1e-7);
        assert_eq!(fuse(&dense, &lexical, Fusion::Rrf, 1).len(), 1);
    }

    #[test]
    fn convex_fusion_weighs_normalised_scores() {
        let dense = hits(&[1, 2], &[0.9, 0.5]);
        let lexical = hits(&[2, 3], &[30.0, 10.0]);
        let fused = fuse(&dense, &lexical, Fusion::Convex { weight: 0.7 }, 10);
        let by_passage: HashMap<usize, f32> = fused.iter().map(|h| (h.passage, h.score)).collect();
        assert!((by_passage[&1] - 0.7).abs() < 1e-6);
        assert!((by_passage[&2] - 0.3).abs() < 1e-6);
        assert!(by_passage[&3].abs() < 1e-6);
        assert_eq!(fused[0].passage, 1);
    }

    #[test]
    fn fusion_names_parse_and_bad_ones_are_named() {
        assert_eq!("rrf".parse::<Fusion>(), Ok(Fusion::Rrf));
        assert_eq!(
            "convex:0.25".parse::<Fusion>(),
            Ok(Fusion::Convex { weight: 0.25 })
        );
        assert_eq!(
            Fusion::default().to_string().parse::<Fusion>(),
            Ok(Fusion::default())
        );
        assert_eq!(
            "convex:2".parse::<Fusion>(),
            Err(
                "unknown fusion \"convex:2\" (expected rrf, or convex:W with W from 0 to 1)".into()
            )
        );
    }
}
