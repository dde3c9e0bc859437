//! Dense search over an index's vector shards: the same scoring natively and in the
//! browser, exact, over the whole index or any passage range of it (one per thread).

use std::collections::HashMap;
use std::ops::Range;

use super::lexical::Bm25;
use super::top_k::{Hit, TopK};
use crate::error::{Error, Result};
use crate::index::{IndexManifest, PassageRecord, PassageShard, VectorShard};
use crate::kernels::score::QuantizedQuery;

/// Re-ranked candidates (id, score; best first) and the ids the index does not know.
pub type Reranked = (Vec<(String, f32)>, Vec<String>);

/// Loaded shards of one index, checked against its manifest.
#[derive(Debug)]
pub struct SearchIndex {
    pub manifest: IndexManifest,
    vectors: IndexVectors,
    passages: Vec<PassageShard>,
    /// First passage number of each shard.
    starts: Vec<usize>,
    /// Built on first lexical query: most users never pay for it.
    lexical: std::sync::OnceLock<Bm25>,
    /// Passage id / document id / URL → passage numbers, built on first re-rank.
    candidate_ids: std::sync::OnceLock<HashMap<String, Vec<usize>>>,
}

/// The vector shards of an index (or of a part of it), by first passage number: all that
/// scoring reads, and all a scoring helper thread holds.
#[derive(Debug)]
pub struct IndexVectors {
    dims: usize,
    shards: Vec<(usize, VectorShard)>,
}

impl IndexVectors {
    /// No shards yet: a scoring helper adds the ones its part overlaps with `insert`.
    pub fn empty(dims: usize) -> Self {
        IndexVectors {
            dims,
            shards: Vec::new(),
        }
    }

    /// `shards` pairs each shard with its first passage number.
    pub fn new(dims: usize, shards: Vec<(usize, VectorShard)>) -> Result<Self> {
        let mut vectors = IndexVectors::empty(dims);
        for (start, shard) in shards {
            vectors.insert(start, shard)?;
        }
        Ok(vectors)
    }

    /// Adds a shard whose first passage is `start`, in any order (an empty shard holds
    /// nothing to score, so it is checked and dropped).
    pub fn insert(&mut self, start: usize, shard: VectorShard) -> Result<()> {
        if shard.dims != self.dims {
            return Err(Error::ModelMismatch(format!(
                "a shard holds {}-dimensional vectors, the index model has {}",
                shard.dims, self.dims
            )));
        }
        if shard.count == 0 {
            return Ok(());
        }
        let at = self.shards.partition_point(|(s, _)| *s < start);
        let after_previous = at == 0 || {
            let (s, previous) = &self.shards[at - 1];
            s + previous.count <= start
        };
        let before_next = self
            .shards
            .get(at)
            .is_none_or(|(next, _)| start + shard.count <= *next);
        if !after_previous || !before_next {
            return Err(Error::InvalidInput(format!(
                "vector shards overlap at passage {start}"
            )));
        }
        self.shards.insert(at, (start, shard));
        Ok(())
    }

    /// Exact top-k among passages `rows` (passages this part does not hold are skipped).
    pub fn search_rows(&self, query: &[f32], k: usize, rows: Range<usize>) -> Result<Vec<Hit>> {
        let mut top = TopK::new(k);
        self.score_rows(query, rows, |start, scores| {
            for (i, &score) in scores.iter().enumerate() {
                top.push(Hit {
                    passage: start + i,
                    score,
                });
            }
        })?;
        Ok(top.into_sorted())
    }

    /// Scores passages `rows` shard by shard, handing `visit` each run's first passage
    /// number and scores, so callers consume scores without materializing them all.
    fn score_rows(
        &self,
        query: &[f32],
        rows: Range<usize>,
        mut visit: impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        if query.len() != self.dims {
            return Err(Error::ModelMismatch(format!(
                "query vector has {} dimensions, the index has {}",
                query.len(),
                self.dims
            )));
        }
        if let Some(i) = query.iter().position(|x| !x.is_finite()) {
            return Err(Error::InvalidInput(format!(
                "query vector component {i} is {}",
                query[i]
            )));
        }
        let quantized = QuantizedQuery::new(query);
        let mut buf = Vec::new();
        for (start, shard) in &self.shards {
            let (from, to) = (rows.start.max(*start), rows.end.min(start + shard.count));
            if from >= to {
                continue;
            }
            shard.score_rows(query, &quantized, from - start..to - start, &mut buf);
            visit(from, &buf);
        }
        Ok(())
    }
}

impl SearchIndex {
    /// Assembles shards (already verified against the manifest's checksums by the caller).
    pub fn new(manifest: IndexManifest, shards: Vec<(VectorShard, PassageShard)>) -> Result<Self> {
        let dims = manifest.model.dims;
        if shards.len() != manifest.shards.len() {
            return Err(Error::InvalidManifest {
                file: "manifest.json".into(),
                reason: format!(
                    "lists {} shards, {} were loaded",
                    manifest.shards.len(),
                    shards.len()
                ),
            });
        }
        let mut starts = Vec::with_capacity(shards.len());
        let mut next = 0;
        for ((vectors, passages), entry) in shards.iter().zip(&manifest.shards) {
            let mismatch = |reason: String| Error::DataCorruption {
                file: entry.vectors.clone(),
                reason,
            };
            if vectors.dims != dims {
                return Err(Error::ModelMismatch(format!(
                    "{} holds {}-dimensional vectors, the index model has {dims}",
                    entry.vectors, vectors.dims
                )));
            }
            if vectors.encoding != manifest.vector_encoding {
                return Err(mismatch(format!(
                    "encoded as {:?}, manifest says {:?}",
                    vectors.encoding, manifest.vector_encoding
                )));
            }
            if vectors.count != entry.count || passages.len() != entry.count {
                return Err(mismatch(format!(
                    "{} vectors and {} passages, manifest says {}",
                    vectors.count,
                    passages.len(),
                    entry.count
                )));
            }
            starts.push(next);
            next += entry.count;
        }
        let (vectors, passages): (Vec<_>, Vec<_>) = shards.into_iter().unzip();
        Ok(SearchIndex {
            vectors: IndexVectors::new(dims, starts.iter().copied().zip(vectors).collect())?,
            manifest,
            passages,
            starts,
            lexical: std::sync::OnceLock::new(),
            candidate_ids: std::sync::OnceLock::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.manifest.passage_count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Dot product of `query` with every passage, in passage order.
    pub fn score_all(&self, query: &[f32]) -> Result<Vec<f32>> {
        let mut all = Vec::with_capacity(self.len());
        self.vectors.score_rows(query, 0..self.len(), |_, scores| {
            all.extend_from_slice(scores)
        })?;
        Ok(all)
    }

    /// Exact top-k passages for a query vector.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.vectors.search_rows(query, k, 0..self.len())
    }

    /// The index's vectors, e.g. to search one part of it (a search split across threads
    /// merges its parts' hits with [`top_k`] into exactly what [`search`](Self::search) returns).
    pub fn vectors(&self) -> &IndexVectors {
        &self.vectors
    }

    /// Decodes passage `n`'s record.
    pub fn record(&self, n: usize) -> Result<PassageRecord> {
        let shard = self.starts.partition_point(|&s| s <= n).saturating_sub(1);
        let passages = self
            .passages
            .get(shard)
            .ok_or_else(|| Error::InvalidInput(format!("no passage {n}")))?;
        passages.record(n - self.starts[shard])
    }

    /// Every record, in passage order (for batch evaluation and id lookups).
    pub fn records(&self) -> Result<Vec<PassageRecord>> {
        (0..self.len()).map(|n| self.record(n)).collect()
    }

    /// BM25 top-k over the passages' text (title, heading and body): a built-in first
    /// stage for re-ranking.
    pub fn lexical_search(&self, query: &str, k: usize) -> Result<Vec<Hit>> {
        if self.lexical.get().is_none() {
            let texts: Vec<String> = self.records()?.iter().map(|r| r.encoded_text()).collect();
            let _ = self
                .lexical
                .set(Bm25::new(texts.iter().map(String::as_str)));
        }
        Ok(self
            .lexical
            .get()
            .map(|bm25| bm25.search(query, k))
            .unwrap_or_default())
    }

    /// Orders candidate ids (passage ids, document ids or URLs, e.g. a lexical engine's top
    /// 100) by the query's score. A document id scores as its best passage. Unknown ids are
    /// returned separately, in input order, so callers can keep or drop them.
    pub fn rerank(&self, query: &[f32], candidates: &[String]) -> Result<Reranked> {
        if self.candidate_ids.get().is_none() {
            let mut lookup: HashMap<String, Vec<usize>> = HashMap::new();
            for (n, r) in self.records()?.into_iter().enumerate() {
                if r.doc_id != r.id {
                    lookup.entry(r.doc_id.clone()).or_default().push(n);
                }
                if !r.url.is_empty() && r.url != r.id && r.url != r.doc_id {
                    lookup.entry(r.url.clone()).or_default().push(n);
                }
                lookup.entry(r.id).or_default().push(n);
            }
            let _ = self.candidate_ids.set(lookup);
        }
        let lookup = self
            .candidate_ids
            .get()
            .ok_or_else(|| Error::InvalidInput("no candidate lookup".into()))?;
        let scores = self.score_all(query)?;
        let mut scored = Vec::new();
        let mut unknown = Vec::new();
        for (order, id) in candidates.iter().enumerate() {
            match lookup.get(id.as_str()) {
                Some(ns) => {
                    let best = ns
                        .iter()
                        .map(|&n| scores[n])
                        .fold(f32::NEG_INFINITY, f32::max);
                    scored.push((order, id.clone(), best));
                }
                None => unknown.push(id.clone()),
            }
        }
        scored.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
        Ok((
            scored.into_iter().map(|(_, id, s)| (id, s)).collect(),
            unknown,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::VectorEncoding;
    use crate::search::top_k::top_k;

    /// Three shards of 37, 50 and 13 pseudo-random vectors in `encoding`, with few
    /// distinct values so that equal scores occur across shard and split boundaries.
    fn three_shards(encoding: VectorEncoding, dims: usize) -> Vec<(usize, VectorShard)> {
        let mut start = 0;
        [37usize, 50, 13]
            .iter()
            .map(|&count| {
                let rows: Vec<_> = (0..count)
                    .map(|i| {
                        let v: Vec<f32> = (0..dims)
                            .map(|j| (((start + i) * 31 + j * 7) % 5) as f32 - 2.0)
                            .collect();
                        crate::index::EncodedRow::encode(encoding, &v)
                    })
                    .collect();
                let bytes = VectorShard::to_bytes(encoding, dims, &rows);
                let shard = VectorShard::from_bytes("v.bin", &bytes).unwrap();
                let first = start;
                start += count;
                (first, shard)
            })
            .collect()
    }

    #[test]
    fn parts_searched_apart_merge_into_the_whole_search() {
        let dims = 32;
        let query: Vec<f32> = (0..dims)
            .map(|j| ((j * 3) % 7) as f32 * 0.25 - 0.5)
            .collect();
        for encoding in [
            VectorEncoding::Int8,
            VectorEncoding::F16,
            VectorEncoding::F32,
        ] {
            let whole = IndexVectors::new(dims, three_shards(encoding, dims)).unwrap();
            for k in [1, 5, 10, 100, 150] {
                let expected = whole.search_rows(&query, k, 0..100).unwrap();
                assert_eq!(expected.len(), k.min(100));
                for split in [0, 1, 36, 37, 38, 50, 87, 99, 100] {
                    // A helper holds only the shards its part overlaps, as in the browser.
                    let theirs: Vec<_> = three_shards(encoding, dims)
                        .into_iter()
                        .filter(|(start, shard)| start + shard.count > split)
                        .collect();
                    let helper = IndexVectors::new(dims, theirs).unwrap();
                    let mine = whole.search_rows(&query, k, 0..split).unwrap();
                    let other = helper.search_rows(&query, k, split..100).unwrap();
                    assert!(mine.iter().all(|h| h.passage < split));
                    assert!(other.iter().all(|h| h.passage >= split));
                    let merged = top_k(mine.into_iter().chain(other).collect(), k);
                    assert_eq!(merged, expected, "{encoding:?} k {k} split {split}");
                }
            }
        }
    }

    #[test]
    fn index_vectors_refuse_other_dims_and_overlaps() {
        let shards = three_shards(VectorEncoding::Int8, 16);
        let err = IndexVectors::new(8, shards).unwrap_err().to_string();
        assert_eq!(
            err,
            "model mismatch: a shard holds 16-dimensional vectors, the index model has 8"
        );
        let mut shards = three_shards(VectorEncoding::Int8, 16);
        shards[1].0 = 10;
        let err = IndexVectors::new(16, shards).unwrap_err().to_string();
        assert_eq!(err, "invalid input: vector shards overlap at passage 10");
    }

    #[test]
    fn empty_shards_share_a_start_with_the_next() {
        let empty = VectorShard::from_bytes(
            "empty.bin",
            &VectorShard::to_bytes(VectorEncoding::Int8, 16, &[]),
        )
        .unwrap();
        let mut shards = three_shards(VectorEncoding::Int8, 16);
        shards.insert(1, (37, empty));
        let vectors = IndexVectors::new(16, shards).unwrap();
        let query = vec![0.5f32; 16];
        let whole = IndexVectors::new(16, three_shards(VectorEncoding::Int8, 16)).unwrap();
        assert_eq!(
            vectors.search_rows(&query, 100, 0..100).unwrap(),
            whole.search_rows(&query, 100, 0..100).unwrap()
        );
    }
}
