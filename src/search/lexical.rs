//! BM25, the built-in lexical ranking: for hybrid search and as a first stage to re-rank.
//! Deliberately plain: Unicode-aware lowercase word tokens, no stemming or stop words (CJK
//! characters are single terms), Anserini's defaults k1 = 0.9, b = 0.4. The indexer computes
//! every (term, passage) impact once ([`Bm25::impacts`], stored by `crate::index::terms`);
//! a search sums the stored impacts of its terms ([`LexicalPostings`]), natively and in the
//! browser alike, with only its terms' buckets fetched.

use std::collections::{HashMap, HashSet};

use super::text::terms;
use super::top_k::{top_k, Hit};
use crate::error::Result;
use crate::index::terms::{read_bucket, term_key, Postings};

const K1: f32 = 0.9;
const B: f32 = 0.4;

/// An inverted index of passage texts with BM25's corpus statistics: what the indexer
/// computes impacts from.
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

    /// `term`'s BM25 contribution to each passage holding it (passages ascending).
    fn term_impacts(&self, list: &[(u32, u32)]) -> Vec<(u32, f32)> {
        let n = self.lengths.len() as f32;
        let df = list.len() as f32;
        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        list.iter()
            .map(|&(p, tf)| {
                let tf = tf as f32;
                let length = self.lengths[p as usize] as f32 / self.average_length.max(1e-9);
                let norm = K1 * (1.0 - B + B * length);
                (p, idf * tf * (K1 + 1.0) / (tf + norm))
            })
            .collect()
    }

    /// Every term's impacts, quantized as the index stores them, ordered by term key (so
    /// the bucket files are the same bytes on every run).
    pub fn impacts(&self) -> Vec<(u64, Postings)> {
        let mut out: Vec<(u64, Postings)> = self
            .postings
            .iter()
            .map(|(term, list)| (term_key(term), Postings::quantize(&self.term_impacts(list))))
            .collect();
        out.sort_unstable_by_key(|(key, _)| *key);
        out
    }
}

/// The distinct terms of `query`, as term keys, in order of first appearance: a term
/// repeated in a query counts once, as in Anserini's BM25.
pub fn query_keys(query: &str) -> Vec<u64> {
    let mut seen = HashSet::new();
    terms(query)
        .into_iter()
        .map(|t| term_key(&t))
        .filter(|&k| seen.insert(k))
        .collect()
}

/// The postings of the term buckets added so far.
#[derive(Debug)]
pub struct LexicalPostings {
    terms: HashMap<u64, Postings>,
    /// The index's passage count: what a posting may name, and what a dense score array spans.
    passages: usize,
}

impl LexicalPostings {
    /// No postings yet, for an index of `passages` passages.
    pub fn new(passages: usize) -> Self {
        LexicalPostings {
            terms: HashMap::new(),
            passages,
        }
    }

    /// Adds bucket file `file`; returns its term count.
    pub fn add_bucket(&mut self, file: &str, bytes: &[u8]) -> Result<usize> {
        read_bucket(file, bytes, self.passages, &mut self.terms)
    }

    /// Top-k passages by the summed impacts of the query's terms (`keys`, distinct; their
    /// buckets added); passages sharing no term with the query are not returned.
    pub fn search(&self, keys: &[u64], k: usize) -> Vec<Hit> {
        let lists: Vec<&Postings> = keys.iter().filter_map(|key| self.terms.get(key)).collect();
        let postings: usize = lists.iter().map(|p| p.passages.len()).sum();
        // A query with common words touches a good share of the passages: summing into an
        // array over every passage then beats a hash map (hybrid search at 50k passages
        // spends most of its lexical time here). Both sum each passage's impacts in the same
        // order, so they give the same scores.
        let hits: Vec<Hit> = if postings * 8 >= self.passages {
            let mut scores = vec![0f32; self.passages];
            let mut touched = vec![false; self.passages];
            for list in &lists {
                for (&p, &code) in list.passages.iter().zip(&list.codes) {
                    scores[p as usize] += f32::from(code) * list.scale;
                    touched[p as usize] = true;
                }
            }
            (0..self.passages)
                .filter(|&n| touched[n])
                .map(|passage| Hit {
                    passage,
                    score: scores[passage],
                })
                .collect()
        } else {
            let mut scores: HashMap<u32, f32> = HashMap::with_capacity(postings);
            for list in &lists {
                for (&p, &code) in list.passages.iter().zip(&list.codes) {
                    *scores.entry(p).or_default() += f32::from(code) * list.scale;
                }
            }
            scores
                .into_iter()
                .map(|(p, score)| Hit {
                    passage: p as usize,
                    score,
                })
                .collect()
        };
        top_k(hits, k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::terms::write_buckets;

    const TEXTS: [&str; 4] = [
        "the cat sat on the mat",
        "the dog chased the cat around the garden for a very long time",
        "the the the",
        "a hashmap stores key value pairs",
    ];

    /// The stored index, as a search reads it back.
    fn stored(texts: &[&str]) -> LexicalPostings {
        let mut postings = LexicalPostings::new(texts.len());
        let impacts = Bm25::new(texts.iter().copied()).impacts();
        for (i, (bytes, _)) in write_buckets(&impacts, 2).iter().enumerate() {
            postings
                .add_bucket(&format!("terms/{i:05}.bin"), bytes)
                .unwrap();
        }
        postings
    }

    #[test]
    fn bm25_prefers_rare_matching_terms_and_shorter_passages() {
        let postings = stored(&TEXTS);
        let hits = postings.search(&query_keys("cat"), 10);
        assert_eq!(
            hits.iter().map(|h| h.passage).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert!(hits[0].score > hits[1].score);
        assert_eq!(postings.search(&query_keys("key value"), 10)[0].passage, 3);
        assert!(postings.search(&query_keys("zebra"), 10).is_empty());
        // Hand-computed: N=4, df(cat)=2 → idf = ln(1 + 2.5/2.5) = ln 2; passage 0: tf=1,
        // |d|=6. Its impact is the term's largest, so stored exactly (code 255 × max/255).
        let avg = (6 + 13 + 3 + 6) as f32 / 4.0;
        let expected = 2f32.ln() * 1.9 / (1.0 + 0.9 * (0.6 + 0.4 * 6.0 / avg));
        assert!((hits[0].score - expected).abs() < 1e-6);
        // Passage 1's impact is stored as an 8-bit code: within half a step of exact.
        let exact = 2f32.ln() * 1.9 / (1.0 + 0.9 * (0.6 + 0.4 * 13.0 / avg));
        assert!((hits[1].score - exact).abs() <= expected / 255.0 / 2.0 + 1e-6);
    }

    #[test]
    fn sparse_and_dense_accumulation_rank_alike() {
        // Many passages, one rare and one common word: the rare word alone takes the sparse
        // path, with the common one the dense path; both agree with a sum done by hand.
        let texts: Vec<String> = (0..200)
            .map(|i| {
                let rare = if i % 50 == 7 { " zebra" } else { "" };
                format!("the passage number {i}{rare} with some words")
            })
            .collect();
        let postings = stored(&texts.iter().map(String::as_str).collect::<Vec<_>>());
        let rare = postings.search(&query_keys("zebra"), 10);
        assert_eq!(
            rare.iter().map(|h| h.passage).collect::<Vec<_>>(),
            [7, 57, 107, 157]
        );
        let both = postings.search(&query_keys("zebra passage"), 10);
        assert_eq!(
            &both.iter().map(|h| h.passage).collect::<Vec<_>>()[..4],
            [7, 57, 107, 157]
        );
        let passage_only = postings.search(&query_keys("passage"), 300);
        assert_eq!(passage_only.len(), 200);
        for h in &both[..4] {
            let alone = passage_only
                .iter()
                .find(|o| o.passage == h.passage)
                .unwrap();
            let zebra = rare.iter().find(|o| o.passage == h.passage).unwrap();
            assert!((h.score - (zebra.score + alone.score)).abs() < 1e-5);
        }
    }

    #[test]
    fn repeated_query_terms_count_once() {
        assert_eq!(query_keys("Cat cat CAT mat"), query_keys("cat mat"));
        let postings = stored(&TEXTS);
        assert_eq!(
            postings.search(&query_keys("cat cat"), 10),
            postings.search(&query_keys("cat"), 10)
        );
    }
}
