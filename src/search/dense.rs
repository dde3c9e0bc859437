//! Dense scoring over vector shards: the same scoring natively and in the browser, exact,
//! over any passage ranges of the shards held (the lists a query probes).

use std::ops::Range;

use super::top_k::{Hit, TopK};
use crate::error::{Error, Result};
use crate::index::{EncodedRow, VectorShard};
use crate::kernels::score::QuantizedQuery;

/// A query vector as every scorer takes it: the index's width, finite.
pub fn check_query(query: &[f32], dims: usize) -> Result<()> {
    if query.len() != dims {
        return Err(Error::ModelMismatch(format!(
            "query vector has {} dimensions, the index has {dims}",
            query.len()
        )));
    }
    if let Some(i) = query.iter().position(|x| !x.is_finite()) {
        return Err(Error::InvalidInput(format!(
            "query vector component {i} is {}",
            query[i]
        )));
    }
    Ok(())
}

/// The vector shards held of an index (its lists loaded so far), by first passage number.
#[derive(Debug)]
pub struct IndexVectors {
    dims: usize,
    shards: Vec<(usize, VectorShard)>,
}

impl IndexVectors {
    /// No shards yet: lists are added with `insert` as they arrive.
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

    /// Drops the shards within passages `range`.
    pub fn remove_within(&mut self, range: Range<usize>) {
        self.shards
            .retain(|(s, shard)| *s + shard.count <= range.start || *s >= range.end);
    }

    /// Whether a shard held holds passage `n`.
    pub fn covers(&self, n: usize) -> bool {
        self.shard_of(n).is_some()
    }

    fn shard_of(&self, n: usize) -> Option<usize> {
        let at = self
            .shards
            .partition_point(|(s, _)| *s <= n)
            .checked_sub(1)?;
        let (start, shard) = &self.shards[at];
        (n < start + shard.count).then_some(at)
    }

    /// Adds the rows of `shard` (first passage `start`) that no shard held holds yet, and
    /// returns how many: rows fetched by range for two searches may overlap.
    pub fn insert_uncovered(&mut self, start: usize, shard: &VectorShard) -> Result<usize> {
        let mut added = 0;
        let mut i = 0;
        while i < shard.count {
            if self.covers(start + i) {
                i += 1;
                continue;
            }
            let run_start = i;
            while i < shard.count && !self.covers(start + i) {
                i += 1;
            }
            self.insert(start + run_start, shard.slice(run_start..i))?;
            added += i - run_start;
        }
        Ok(added)
    }

    /// Passage `n`'s row as stored (for copying into a new index), if a shard held holds it.
    pub fn row(&self, n: usize) -> Option<EncodedRow> {
        let (start, shard) = &self.shards[self.shard_of(n)?];
        Some(shard.row(n - start))
    }

    /// Exact top-k among passages `ranges` (passages not held are skipped: callers check
    /// that what they probe is loaded).
    pub fn search_ranges(
        &self,
        query: &[f32],
        k: usize,
        ranges: &[Range<usize>],
    ) -> Result<Vec<Hit>> {
        let mut top = TopK::new(k);
        self.score_ranges(query, ranges, |start, scores| top.push_run(start, scores))?;
        Ok(top.into_sorted())
    }

    /// Scores passages `ranges` shard by shard in passage order (whatever order the ranges
    /// come in: a streaming top-k breaks ties by position), handing `visit` each run's first
    /// passage number and scores, so callers consume scores without materializing them all.
    pub fn score_ranges(
        &self,
        query: &[f32],
        ranges: &[Range<usize>],
        mut visit: impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        check_query(query, self.dims)?;
        let quantized = QuantizedQuery::new(query);
        let mut buf = Vec::new();
        let mut ranges = ranges.to_vec();
        ranges.sort_by_key(|r| r.start);
        for rows in &ranges {
            let first = self
                .shards
                .partition_point(|(s, sh)| s + sh.count <= rows.start);
            for (start, shard) in &self.shards[first..] {
                if *start >= rows.end {
                    break;
                }
                let (from, to) = (rows.start.max(*start), rows.end.min(start + shard.count));
                if from >= to {
                    continue;
                }
                shard.score_rows(query, &quantized, from - start..to - start, &mut buf);
                visit(from, &buf);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // one range of several is what these tests search
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
    fn ranges_searched_apart_merge_into_the_search_of_their_union() {
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
                let expected = whole.search_ranges(&query, k, &[0..100]).unwrap();
                assert_eq!(expected.len(), k.min(100));
                for split in [0, 1, 36, 37, 38, 50, 87, 99, 100] {
                    let both = whole.search_ranges(&query, k, &[split..100, 0..split]);
                    assert_eq!(both.unwrap(), expected, "{encoding:?} k {k} split {split}");
                    let mine = whole.search_ranges(&query, k, &[0..split]).unwrap();
                    let other = whole.search_ranges(&query, k, &[split..100]).unwrap();
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
            vectors.search_ranges(&query, 100, &[0..100]).unwrap(),
            whole.search_ranges(&query, 100, &[0..100]).unwrap()
        );
    }
}
