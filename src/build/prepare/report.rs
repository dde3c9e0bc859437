//! What `dotfind prepare --check CORPUS` says of the query bundle it wrote: how far its
//! vectors are from the f32 bundle's, as text vectors and as rankings. The f32 bundle embeds
//! like PyTorch f32 (cosine ≥ 0.9999 on the hard strings: tests/parity.rs), so this is the
//! parity report a machine without PyTorch can give; `./build.sh parity` is PyTorch's own.
//!
//! The retrieval check needs no relevance judgments: pseudo-queries (each passage's first
//! words) rank the corpus's passages, encoded once by the f32 bundle as the indexer encodes
//! them; the query bundle's ranking is scored against the f32 bundle's.

use std::path::Path;

use crate::build::corpus::read_corpus;
use crate::error::{Error, Result};
use crate::model::{cosine, Encoder, ModelBundle};

/// Passages ranked at most: enough for stable figures, a few seconds to encode.
const PASSAGES: usize = 300;
/// Pseudo-queries at most.
const QUERIES: usize = 100;
/// Words of a passage its pseudo-query keeps.
const QUERY_WORDS: usize = 8;

/// The query bundle against the f32 bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryReport {
    pub queries: usize,
    pub passages: usize,
    /// Cosine of the two bundles' query vectors.
    pub mean_cosine: f32,
    pub min_cosine: f32,
    /// How many of the f32 bundle's top 10 the query bundle's top 10 holds, on average.
    pub top10_overlap: f32,
    /// Queries whose best passage both bundles agree on.
    pub top1_agreement: f32,
}

impl std::fmt::Display for QueryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "query bundle vs f32 bundle on {} pseudo-queries over {} passages: cosine mean {:.4}, min {:.4}; \
             top-10 overlap {:.1}/10, same best passage {:.0} %",
            self.queries,
            self.passages,
            self.mean_cosine,
            self.min_cosine,
            self.top10_overlap,
            100.0 * self.top1_agreement
        )
    }
}

/// Compares the bundles in `query_dir` and `f32_dir` on the corpus at `corpus` (JSONL or a
/// built site's folder).
pub fn compare(query_dir: &Path, f32_dir: &Path, corpus: &Path) -> Result<QueryReport> {
    let (records, _) = read_corpus(corpus, true)?;
    let passages: Vec<String> = records
        .iter()
        .map(|r| r.encoded_text())
        .filter(|t| !t.trim().is_empty())
        .take(PASSAGES)
        .collect();
    let queries: Vec<String> = passages
        .iter()
        .map(|p| {
            let words: Vec<&str> = p.split_whitespace().take(QUERY_WORDS).collect();
            words.join(" ")
        })
        .take(QUERIES)
        .collect();
    if queries.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{}: no text to check the query bundle with",
            corpus.display()
        )));
    }
    let reference = Encoder::new(&ModelBundle::open(f32_dir)?)?;
    let quantized = Encoder::new(&ModelBundle::open(query_dir)?)?;
    let texts: Vec<&str> = passages.iter().map(String::as_str).collect();
    let passage_vectors = reference.encode_passages(&texts)?;
    let ranking = |q: &[f32]| -> Vec<usize> {
        let mut order: Vec<(usize, f32)> = passage_vectors
            .iter()
            .enumerate()
            .map(|(i, p)| (i, dot(q, p)))
            .collect();
        order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        order.into_iter().take(10).map(|(i, _)| i).collect()
    };
    let (mut cosines, mut overlap, mut same_best) = (Vec::new(), 0usize, 0usize);
    for query in &queries {
        let (a, b) = (
            reference.encode_query(query)?,
            quantized.encode_query(query)?,
        );
        cosines.push(cosine(&a, &b));
        let (top_a, top_b) = (ranking(&a), ranking(&b));
        overlap += top_b.iter().filter(|i| top_a.contains(i)).count();
        same_best += usize::from(top_a.first() == top_b.first());
    }
    let n = queries.len() as f32;
    Ok(QueryReport {
        queries: queries.len(),
        passages: passages.len(),
        mean_cosine: cosines.iter().sum::<f32>() / n,
        min_cosine: cosines.iter().copied().fold(f32::INFINITY, f32::min),
        top10_overlap: overlap as f32 / n,
        top1_agreement: same_best as f32 / n,
    })
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
