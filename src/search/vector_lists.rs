//! [`VectorLists`]: the vector lists of an index as far as they arrived, and the dense search
//! over them. A query scores the centroids, then the *codes* of the lists it probes (a few
//! dozen bytes a passage), then the exact rows of the best candidates only — each step
//! naming the byte ranges it needs first ([`VectorLists::missing`]), so a browser fetches
//! kilobytes where whole lists would be megabytes. Natively every list is held whole and
//! the same steps run.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use super::dense::{check_query, IndexVectors};
use super::top_k::{Hit, TopK};
use crate::error::{Error, Result};
use crate::index::manifest::IndexLayout;
use crate::index::parts::range_path;
use crate::index::{
    Codebook, ListCodes, ListDirectory, ListLayout, Part, PartEntry, PassageRuns, VectorEncoding,
    VectorShard,
};
use crate::kernels::pq::score_codes;

/// Rows of one list this close together are fetched in one range (the rows between come
/// along): a request's headers cost about what two rows do.
const ROW_GAP: usize = 2;

/// Passages `depth` of `lists` lists holding `total` passages hold on average.
fn passage_budget(depth: usize, total: usize, lists: usize) -> u64 {
    (depth as u64 * total as u64).div_ceil(lists.max(1) as u64)
}

/// How many lists a search scans (the nearest ones, within a budget of passages: see
/// [`VectorLists::probed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The index's own depth (`layout.probe`), chosen by the indexer for its size.
    Default,
    /// This many lists (clamped to the index's list count).
    Lists(usize),
    /// Every list, every row scored exactly: the exact search, for comparison.
    Exact,
}

/// What is held of one list.
#[derive(Debug, Default)]
struct Held {
    directory: Option<ListDirectory>,
    codes: Option<ListCodes>,
    whole: bool,
    /// Bytes of the list's file held (directory, codes, rows).
    bytes: u64,
}

/// The lists of an index and what arrived of them.
#[derive(Debug)]
pub struct VectorLists {
    layout: IndexLayout,
    encoding: VectorEncoding,
    dims: usize,
    entries: Vec<PartEntry>,
    runs: PassageRuns,
    /// One row per list (int8, as stored), and the same as f32 for the codes' `α · q·c`.
    centroids: Option<(IndexVectors, Vec<Vec<f32>>)>,
    codebook: Option<Codebook>,
    held: Vec<Held>,
    rows: IndexVectors,
    /// When each list was last probed (a count of probes): what eviction goes by.
    last_probed: Vec<AtomicU64>,
    probes: AtomicU64,
    bytes_held: u64,
    budget: Option<u64>,
}

impl VectorLists {
    pub fn new(
        layout: IndexLayout,
        encoding: VectorEncoding,
        dims: usize,
        entries: Vec<PartEntry>,
        centroids: Option<VectorShard>,
        codebook: Option<Codebook>,
    ) -> Result<Self> {
        for (i, e) in entries.iter().enumerate() {
            let l = ListLayout {
                encoding,
                dims,
                count: e.count,
                code_bytes: layout.code_bytes,
            };
            if !l.fits() {
                return Err(crate::index::corrupt(
                    crate::index::parts::PARTS_FILE,
                    format!(
                        "list {i} holds {} vectors: no file holds that many",
                        e.count
                    ),
                ));
            }
        }
        let centroids = match centroids {
            Some(shard) => {
                let values = (0..shard.count).map(|i| shard.vector(i)).collect();
                Some((IndexVectors::new(dims, vec![(0, shard)])?, values))
            }
            None => None,
        };
        Ok(VectorLists {
            held: entries.iter().map(|_| Held::default()).collect(),
            last_probed: entries.iter().map(|_| AtomicU64::new(0)).collect(),
            layout,
            encoding,
            dims,
            runs: PassageRuns::of(&entries),
            entries,
            centroids,
            codebook,
            rows: IndexVectors::empty(dims),
            probes: AtomicU64::new(0),
            bytes_held: 0,
            budget: None,
        })
    }

    fn range(&self, i: usize) -> Range<usize> {
        self.runs.range(i)
    }

    /// The list holding passage `n`.
    pub fn list_of(&self, n: usize) -> Option<usize> {
        self.runs.part_of(n)
    }

    fn list_layout(&self, i: usize) -> ListLayout {
        ListLayout {
            encoding: self.encoding,
            dims: self.dims,
            count: self.entries[i].count,
            code_bytes: self.layout.code_bytes,
        }
    }

    /// Adds bytes of list `i`'s file: the whole file (`bytes` `None`), or a range `missing`
    /// named — the directory, directory and codes, or rows — each checked against the part
    /// table through the directory.
    pub fn add(&mut self, i: usize, range: Option<Range<usize>>, bytes: &[u8]) -> Result<()> {
        let path = Part::List(i).path();
        let l = self.list_layout(i);
        if self.entries[i].file.bytes != l.file_len() as u64 {
            return Err(crate::index::corrupt(
                crate::index::parts::PARTS_FILE,
                format!(
                    "{path} is {} bytes there, its {} rows need {}",
                    self.entries[i].file.bytes,
                    l.count,
                    l.file_len()
                ),
            ));
        }
        if range.is_none() {
            self.entries[i].file.verify_size(&path, bytes.len())?;
        }
        let range = range.unwrap_or(0..bytes.len());
        if range.len() != bytes.len() || range.end > l.file_len() {
            return Err(crate::index::corrupt(
                &path,
                format!(
                    "{} bytes for bytes {}..{} of a {}-byte file",
                    bytes.len(),
                    range.start,
                    range.end,
                    l.file_len()
                ),
            ));
        }
        let not_named = |range: Range<usize>| {
            Error::InvalidInput(format!(
                "{}: not a range dotfind names",
                range_path(&path, range)
            ))
        };
        if range.start > 0 {
            let rows = l.rows_in(range.clone()).ok_or_else(|| not_named(range))?;
            return self.add_rows(i, rows, bytes);
        }
        if ![l.directory_len(), l.codes_end(), l.file_len()].contains(&range.end) {
            return Err(not_named(range));
        }
        if self.held[i].whole {
            return Ok(()); // added before: the bytes were the same (verified then)
        }
        let partial_rows = self.rows_held_bytes(i);
        let head = &bytes[..l.directory_len()];
        self.entries[i].file.verify_head(&path, head)?;
        let directory = ListDirectory::from_bytes(&path, head, l)?;
        let mut added = 0;
        if range.end >= l.codes_end() && self.held[i].codes.is_none() {
            let k = self.codebook.as_ref().map_or(0, |c| c.k);
            let codes = directory.codes(&path, &bytes[l.directory_len()..l.codes_end()], k)?;
            self.held[i].codes = Some(codes);
            added += l.codes_end() - l.directory_len();
        }
        if range.end == l.file_len() {
            let all = directory.rows(&path, 0..l.count, &bytes[l.rows_bytes(0..l.count)])?;
            let list = self.range(i);
            self.rows.remove_within(list.clone());
            self.rows.insert(list.start, all)?;
            self.held[i].whole = true;
            self.held[i].bytes -= partial_rows;
            self.bytes_held -= partial_rows;
            added += l.count * l.row_bytes();
        }
        if self.held[i].directory.is_none() {
            self.held[i].directory = Some(directory);
            added += l.directory_len();
        }
        self.held[i].bytes += added as u64;
        self.bytes_held += added as u64;
        self.evict();
        Ok(())
    }

    /// Adds rows `rows` of list `i` (a range `missing_rows` named), checked against the
    /// list's directory.
    fn add_rows(&mut self, i: usize, rows: Range<usize>, bytes: &[u8]) -> Result<()> {
        let path = Part::List(i).path();
        let l = self.list_layout(i);
        let Some(directory) = &self.held[i].directory else {
            return Err(Error::PartNotLoaded {
                file: range_path(&path, 0..l.directory_len()),
            });
        };
        if self.held[i].whole {
            return Ok(());
        }
        let shard = directory.rows(&path, rows.clone(), bytes)?;
        let start = self.range(i).start + rows.start;
        let added = (self.rows.insert_uncovered(start, &shard)? * l.row_bytes()) as u64;
        self.held[i].bytes += added;
        self.bytes_held += added;
        self.evict();
        Ok(())
    }

    /// Bytes of list `i`'s rows held apart from a whole list (rows fetched by range).
    fn rows_held_bytes(&self, i: usize) -> u64 {
        let h = &self.held[i];
        let l = self.list_layout(i);
        let other = h.directory.as_ref().map_or(0, |_| l.directory_len())
            + h.codes
                .as_ref()
                .map_or(0, |_| l.codes_end() - l.directory_len());
        h.bytes - other as u64
    }

    /// Holds at most `bytes` of vector lists (`None`: no limit, as natively).
    pub fn set_budget(&mut self, bytes: Option<u64>) {
        self.budget = bytes;
        self.evict();
    }

    pub fn bytes_held(&self) -> u64 {
        self.bytes_held
    }

    fn evict(&mut self) {
        let Some(budget) = self.budget else {
            return;
        };
        if self.bytes_held <= budget {
            return;
        }
        let now = self.probes.load(Ordering::Relaxed);
        let mut candidates: Vec<(u64, usize)> = (0..self.held.len())
            .filter(|&i| self.held[i].bytes > 0)
            .map(|i| (self.last_probed[i].load(Ordering::Relaxed), i))
            .filter(|&(last, _)| last < now)
            .collect();
        candidates.sort_unstable();
        for (_, i) in candidates {
            if self.bytes_held <= budget {
                break;
            }
            self.rows.remove_within(self.range(i));
            self.bytes_held -= self.held[i].bytes;
            self.held[i] = Held::default();
        }
    }

    /// Whole lists every query scans (an index scanned whole), with their sizes.
    pub fn every_query_needs(&self) -> Vec<(String, u64)> {
        if self.layout.probe < self.entries.len() {
            return Vec::new();
        }
        (0..self.entries.len())
            .filter(|&i| !self.held[i].whole)
            .map(|i| (Part::List(i).path(), self.entries[i].file.bytes))
            .collect()
    }

    /// Marks `lists` as probed by the step under way, so that adding what they miss never
    /// evicts them (see `set_budget`).
    pub fn mark_probed(&self, lists: &[usize]) {
        let now = self.probes.fetch_add(1, Ordering::Relaxed) + 1;
        for &i in lists {
            self.last_probed[i].store(now, Ordering::Relaxed);
        }
    }

    fn depth(&self, probe: Probe) -> usize {
        let lists = self.entries.len();
        match probe {
            Probe::Default => self.layout.probe,
            Probe::Lists(n) => n.max(1),
            Probe::Exact => lists,
        }
        .min(lists)
    }

    /// The lists a search of `query` scans, in list order: of the `depth` lists whose
    /// centroids score highest, taken best first, those before the first that would bring the
    /// passages scanned past `depth` lists' worth on average (the best list always, whatever
    /// its size). k-means lists are uneven and queries fall where passages are dense, so
    /// `depth` lists alone would make a query's codes, its bytes, depend on where it falls;
    /// the budget keeps them to what the indexer chose the depth for. Stopping at the first
    /// list that does not fit, not skipping it, keeps a deeper probe a superset of a
    /// shallower one (the indexer's calibration bisects depths).
    pub fn probed(&self, query: &[f32], probe: Probe) -> Result<Vec<usize>> {
        let lists = self.entries.len();
        let depth = self.depth(probe);
        let mut probed: Vec<usize> = match &self.centroids {
            Some((centroids, _)) if depth < lists => {
                let best = centroids
                    .search_ranges(query, depth, std::slice::from_ref(&(0..lists)))?
                    .into_iter()
                    .map(|h| h.passage);
                let budget = passage_budget(depth, self.runs.total(), lists);
                let mut held = 0u64;
                best.enumerate()
                    .take_while(|&(rank, list)| {
                        let count = self.entries[list].count as u64;
                        let fits = rank == 0 || held + count <= budget;
                        held += count;
                        fits
                    })
                    .map(|(_, list)| list)
                    .collect()
            }
            _ => (0..lists).collect(),
        };
        probed.sort_unstable();
        Ok(probed)
    }

    /// Candidates scored exactly for `k` results.
    fn rescore_depth(&self, k: usize) -> usize {
        self.layout.rescore.max(k)
    }

    /// What a search of `query` for `k` results needs next that is not held: whole lists
    /// (an exact scan), else the probed lists' codes, then the candidates' rows. Ask again
    /// once these are added, until nothing is missing. Marks the lists probed.
    pub fn missing(&self, query: &[f32], k: usize, probe: Probe) -> Result<Vec<String>> {
        let lists = self.probed(query, probe)?;
        self.mark_probed(&lists);
        if !self.layout.ranks_by_codes(self.depth(probe)) {
            return Ok(lists
                .into_iter()
                .filter(|&i| !self.held[i].whole)
                .map(|i| Part::List(i).path())
                .collect());
        }
        let heads: Vec<String> = lists
            .iter()
            .filter(|&&i| self.held[i].codes.is_none())
            .map(|&i| range_path(&Part::List(i).path(), 0..self.list_layout(i).codes_end()))
            .collect();
        if !heads.is_empty() {
            return Ok(heads);
        }
        let candidates = self.candidates(query, self.rescore_depth(k), &lists)?;
        Ok(self.missing_rows(&candidates))
    }

    /// The ranges of `passages`' rows not held (passages of lists whose directory is not
    /// held: the directory first).
    pub fn missing_rows(&self, passages: &[usize]) -> Vec<String> {
        let wanted = passages.iter().copied().filter(|&n| !self.rows.covers(n));
        let mut out: Vec<String> = Vec::new();
        for (i, rows) in self.runs.group(wanted, ROW_GAP) {
            let l = self.list_layout(i);
            if self.held[i].directory.is_some() {
                out.push(range_path(&Part::List(i).path(), l.rows_bytes(rows)));
            } else {
                let head = range_path(&Part::List(i).path(), 0..l.directory_len());
                if !out.contains(&head) {
                    out.push(head);
                }
            }
        }
        out
    }

    /// The `depth` best passages of `lists` by their codes (`α · q·c` plus the codes'
    /// table lookups), in passage order.
    fn candidates(&self, query: &[f32], depth: usize, lists: &[usize]) -> Result<Vec<usize>> {
        let (Some(codebook), Some((_, centroids))) = (&self.codebook, &self.centroids) else {
            return Err(Error::InvalidInput("this index has no codes".into()));
        };
        check_query(query, self.dims)?;
        let table = codebook.table(query);
        let mut top = TopK::new(depth);
        let mut scores = Vec::new();
        for &i in lists {
            let Some(codes) = &self.held[i].codes else {
                let l = self.list_layout(i);
                return Err(Error::PartNotLoaded {
                    file: range_path(&Part::List(i).path(), 0..l.codes_end()),
                });
            };
            let qc: f32 = query.iter().zip(&centroids[i]).map(|(a, b)| a * b).sum();
            scores.clear();
            score_codes(&table, &codes.codes, codebook.m, &mut scores);
            let start = self.runs.range(i).start;
            for (r, (s, alpha)) in scores.iter().zip(&codes.alphas).enumerate() {
                top.push(Hit {
                    passage: start + r,
                    score: s + alpha * qc,
                });
            }
        }
        let mut passages: Vec<usize> = top.into_sorted().into_iter().map(|h| h.passage).collect();
        passages.sort_unstable();
        Ok(passages)
    }

    /// Exact scores of the passages a search of `query` ranks (`depth` results asked):
    /// every passage of the probed lists for an exact scan, else the best candidates by
    /// the codes; as `visit(first passage, scores)` runs, in passage order.
    pub fn score(
        &self,
        query: &[f32],
        depth: usize,
        probe: Probe,
        visit: impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        let lists = self.probed(query, probe)?;
        if !self.layout.ranks_by_codes(self.depth(probe)) {
            if let Some(&i) = lists.iter().find(|&&i| !self.held[i].whole) {
                return Err(Error::PartNotLoaded {
                    file: Part::List(i).path(),
                });
            }
            let ranges: Vec<Range<usize>> = lists.iter().map(|&i| self.range(i)).collect();
            return self.rows.score_ranges(query, &ranges, visit);
        }
        let candidates = self.candidates(query, self.rescore_depth(depth), &lists)?;
        self.score_passages(query, &candidates, visit)
    }

    /// Exact top-k of a search of `query` (see [`VectorLists::score`]).
    pub fn search(&self, query: &[f32], k: usize, probe: Probe) -> Result<Vec<Hit>> {
        let mut top = TopK::new(k);
        self.score(query, k, probe, |start, scores| top.push_run(start, scores))?;
        Ok(top.into_sorted())
    }

    /// Exact scores of `passages` (their rows held), as `visit(passage, [score])` runs.
    pub fn score_passages(
        &self,
        query: &[f32],
        passages: &[usize],
        visit: impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        if let Some(file) = self.missing_rows(passages).into_iter().next() {
            return Err(Error::PartNotLoaded { file });
        }
        let ranges: Vec<Range<usize>> = passages.iter().map(|&n| n..n + 1).collect();
        self.rows.score_ranges(query, &ranges, visit)
    }

    /// Passage `n`'s row as stored, if held.
    pub fn row(&self, n: usize) -> Option<crate::index::EncodedRow> {
        self.rows.row(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::FileEntry;
    use crate::index::EncodedRow;

    /// Four lists of 2 dimensions around the circle, holding `counts` passages, probed 2 deep.
    fn lists(counts: [usize; 4]) -> VectorLists {
        let centroids: Vec<EncodedRow> = [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]]
            .iter()
            .map(|c| EncodedRow::encode(VectorEncoding::F32, c))
            .collect();
        let shard = VectorShard::to_bytes(VectorEncoding::F32, 2, &centroids);
        let layout = IndexLayout {
            lists: 4,
            probe: 2,
            fragments: 1,
            id_buckets: 1,
            term_buckets: 1,
            code_bytes: 8,
            rescore: 16,
        };
        let entries = counts
            .iter()
            .map(|&count| PartEntry {
                count,
                file: FileEntry {
                    bytes: 1,
                    xxh3_128: "0".repeat(32),
                },
            })
            .collect();
        let centroids = VectorShard::from_bytes("centroids", &shard).unwrap();
        VectorLists::new(
            layout,
            VectorEncoding::F32,
            2,
            entries,
            Some(centroids),
            None,
        )
        .unwrap()
    }

    /// The nearest lists while they hold at most `depth` lists' worth of passages: a query
    /// near lists 0 and 1 probes both when they are of average size, only the nearest when
    /// the second would pass the budget, and always the nearest, however large or empty.
    #[test]
    fn probes_stay_within_depth_lists_worth_of_passages() {
        let query = [0.95, 0.3];
        // At probe 2, 2 lists' worth of the passages on average (200 of 400). Deeper probes
        // widen the budget with the depth; every list is every list.
        let cases: [([usize; 4], Probe, &[usize]); 7] = [
            ([100; 4], Probe::Default, &[0, 1]),
            ([60, 140, 100, 100], Probe::Default, &[0, 1]),
            ([60, 141, 99, 100], Probe::Default, &[0]),
            ([370, 10, 10, 10], Probe::Default, &[0]),
            ([0, 400, 10, 10], Probe::Default, &[0]),
            ([60, 141, 99, 100], Probe::Lists(3), &[0, 1, 2]),
            ([370, 10, 10, 10], Probe::Exact, &[0, 1, 2, 3]),
        ];
        for (counts, probe, expected) in cases {
            let probed = lists(counts).probed(&query, probe).unwrap();
            assert_eq!(probed, expected, "{counts:?} at {probe:?}");
        }
    }
}
