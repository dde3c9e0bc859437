//! BM25 over the index's passage texts: a built-in lexical first stage, so the reference
//! model's re-ranking mode (lexical top-k, re-scored by BERT_Dot) works without another
//! search engine. Deliberately plain: Unicode-aware lowercase word tokens, no stemming or
//! stop words (CJK characters are single terms), Anserini's defaults k1 = 0.9, b = 0.4.

use std::collections::HashMap;

use super::text::terms;
use super::top_k::{top_k, Hit};

const K1: f32 = 0.9;
const B: f32 = 0.4;

/// An inverted index of passage texts.
#[derive(Debug, Default)]
pub struct Bm25 {
    postings: HashMap<String, Vec<(u32, u32)>>,
    lengths: Vec<u32>,
    average_length: f32,
}

impl Bm25 {
    pub fn new<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut index = Bm25::default();
        for (n, text) in texts.into_iter().enumerate() {
            let mut counts: HashMap<String, u32> = HashMap::new();
            let words = terms(text);
            index.lengths.push(words.len() as u32);
            for w in words {
                *counts.entry(w).or_default() += 1;
            }
            for (term, tf) in counts {
                index.postings.entry(term).or_default().push((n as u32, tf));
            }
        }
        let total: u64 = index.lengths.iter().map(|&l| u64::from(l)).sum();
        index.average_length = total as f32 / index.lengths.len().max(1) as f32;
        index
    }

    /// Top-k passages by BM25; passages sharing no term with the query are not returned.
    pub fn search(&self, query: &str, k: usize) -> Vec<Hit> {
        let n = self.lengths.len() as f32;
        let mut scores: HashMap<u32, f32> = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for term in terms(query) {
            if !seen.insert(term.clone()) {
                continue;
            }
            let Some(list) = self.postings.get(&term) else {
                continue;
            };
            let df = list.len() as f32;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for &(p, tf) in list {
                let tf = tf as f32;
                let norm = K1
                    * (1.0 - B
                        + B * self.lengths[p as usize] as f32 / self.average_length.max(1e-9));
                *scores.entry(p).or_default() += idf * tf * (K1 + 1.0) / (tf + norm);
            }
        }
        let hits = scores
            .into_iter()
            .map(|(p, score)| Hit {
                passage: p as usize,
                score,
            })
            .collect();
        top_k(hits, k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bm25_prefers_rare_matching_terms_and_shorter_passages() {
        let texts = [
            "the cat sat on the mat",
            "the dog chased the cat around the garden for a very long time",
            "the the the",
            "a hashmap stores key value pairs",
        ];
        let bm25 = Bm25::new(texts);
        let hits = bm25.search("cat", 10);
        assert_eq!(
            hits.iter().map(|h| h.passage).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert!(hits[0].score > hits[1].score);
        assert_eq!(bm25.search("key value", 10)[0].passage, 3);
        assert!(bm25.search("zebra", 10).is_empty());
        // Hand-computed: N=4, df(cat)=2 → idf = ln(1 + 2.5/2.5) = ln 2; passage 0: tf=1, |d|=6.
        let avg = (6 + 13 + 3 + 6) as f32 / 4.0;
        let expected = 2f32.ln() * 1.9 / (1.0 + 0.9 * (0.6 + 0.4 * 6.0 / avg));
        assert!((hits[0].score - expected).abs() < 1e-6);
    }
}
