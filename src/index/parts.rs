//! The parts an index is cut into, fetched on demand: vector *lists* (one IVF partition
//! each: the passages nearest one centroid, in passage order), passage *fragments* (the
//! records of a run of passages), id buckets (`super::ids`: which passages a candidate id
//! names) and term buckets (`super::terms`: BM25 postings). `parts.bin` records each part's count, size and
//! checksum: 24 bytes a part, so a million-passage index stays a small table to load first,
//! where a JSON manifest listing every file would not.

use std::ops::Range;

use super::{corrupt, u32_at};
use crate::checksum::FileEntry;
use crate::error::{Error, Result};

/// File name of the part table.
pub const PARTS_FILE: &str = "parts.bin";
/// File name of the centroids of an index of several lists (a vector shard, one row a list).
pub const CENTROIDS_FILE: &str = "vectors/centroids.bin";
const PARTS_MAGIC: &[u8; 4] = b"DFPT";
const PARTS_VERSION: u16 = 2;
const PARTS_HEADER: usize = 24;
const ENTRY_BYTES: usize = 24;

/// `path` with the byte range `bytes` (end exclusive) as `path#bytes=first-last`, HTTP's
/// inclusive form: what `missing` names and `add` takes back.
pub fn range_path(path: &str, bytes: Range<usize>) -> String {
    format!("{path}#bytes={}-{}", bytes.start, bytes.end - 1)
}

/// The file and byte range (end exclusive) of a path `range_path` made; `None` for a plain
/// path.
pub fn parse_range_path(path: &str) -> Result<(&str, Option<Range<usize>>)> {
    let Some((file, range)) = path.split_once('#') else {
        return Ok((path, None));
    };
    let bad = || Error::InvalidInput(format!("{path}: not a byte range dotfind names"));
    let (first, last) = range
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    let first: usize = first.parse().map_err(|_| bad())?;
    let last: usize = last.parse().map_err(|_| bad())?;
    if last < first {
        return Err(bad());
    }
    Ok((file, Some(first..last + 1)))
}

/// Which part of an index a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    List(usize),
    Fragment(usize),
    /// A bucket of the id directory (`super::ids`).
    Ids(usize),
    /// A bucket of the lexical index (`super::terms`).
    Terms(usize),
}

impl Part {
    /// The file holding this part, relative to the index.
    pub fn path(self) -> String {
        match self {
            Part::List(i) => format!("vectors/{i:05}.bin"),
            Part::Fragment(i) => format!("passages/{i:05}.bin"),
            Part::Ids(i) => format!("ids/{i:05}.bin"),
            Part::Terms(i) => format!("terms/{i:05}.bin"),
        }
    }

    /// The part a file name denotes, if it names one of `table`'s.
    pub fn from_path(path: &str, table: &PartTable) -> Option<Part> {
        let (dir, file) = path.split_once('/')?;
        let digits = file.strip_suffix(".bin")?;
        if digits.len() != 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let i: usize = digits.parse().ok()?;
        let part = match dir {
            "vectors" => Part::List(i),
            "passages" => Part::Fragment(i),
            "ids" => Part::Ids(i),
            "terms" => Part::Terms(i),
            _ => return None,
        };
        table.entry(part).is_some().then_some(part)
    }
}

/// One part: its passages and how its file is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartEntry {
    pub count: usize,
    pub file: FileEntry,
}

/// Which passages each part of one kind holds: part `i` the run `range(i)`, runs side by
/// side in passage order. The one map from a passage number to its part and back, for the
/// part table, the vector lists and the fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassageRuns {
    /// `starts[i]`: the first passage of part `i`; one more at the end, the total.
    starts: Vec<usize>,
}

impl PassageRuns {
    /// The runs of parts holding `entries[i].count` passages each.
    pub fn of(entries: &[PartEntry]) -> Self {
        let mut starts = Vec::with_capacity(entries.len() + 1);
        starts.push(0);
        for e in entries {
            starts.push(starts[starts.len() - 1] + e.count);
        }
        PassageRuns { starts }
    }

    /// The passages of part `i`.
    pub fn range(&self, i: usize) -> Range<usize> {
        self.starts[i]..self.starts[i + 1]
    }

    /// Passages in all the parts.
    pub fn total(&self) -> usize {
        self.starts[self.starts.len() - 1]
    }

    /// The part holding passage `n`, and `n`'s place in it.
    pub fn locate(&self, n: usize) -> Option<(usize, usize)> {
        (n < self.total()).then(|| {
            let i = self.starts.partition_point(|&s| s <= n) - 1;
            (i, n - self.starts[i])
        })
    }

    /// The part holding passage `n`.
    pub fn part_of(&self, n: usize) -> Option<usize> {
        self.locate(n).map(|(i, _)| i)
    }

    /// `passages` (any order, repeats allowed; past the end left out) as runs of places in
    /// one part each, in passage order: what fetching them by byte range asks for. A run
    /// takes in gaps of up to `gap` places, for where a request costs more than they do.
    pub fn group(
        &self,
        passages: impl IntoIterator<Item = usize>,
        gap: usize,
    ) -> Vec<(usize, Range<usize>)> {
        let mut wanted: Vec<(usize, usize)> = passages
            .into_iter()
            .filter_map(|n| self.locate(n))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut runs: Vec<(usize, Range<usize>)> = Vec::new();
        for (part, place) in wanted {
            match runs.last_mut() {
                Some((p, places)) if *p == part && place <= places.end + gap => {
                    places.end = place + 1
                }
                _ => runs.push((part, place..place + 1)),
            }
        }
        runs
    }
}

/// The parts of an index, in passage order within each kind: list `i` holds the passages
/// `list_runs.range(i)`, fragment `j` those of `fragment_runs.range(j)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartTable {
    pub lists: Vec<PartEntry>,
    pub fragments: Vec<PartEntry>,
    /// The id directory's buckets (`count`: the keys a bucket holds).
    pub ids: Vec<PartEntry>,
    /// The lexical index's buckets (`count`: the terms a bucket holds).
    pub terms: Vec<PartEntry>,
    pub list_runs: PassageRuns,
    pub fragment_runs: PassageRuns,
}

impl PartTable {
    pub fn new(
        lists: Vec<PartEntry>,
        fragments: Vec<PartEntry>,
        ids: Vec<PartEntry>,
        terms: Vec<PartEntry>,
    ) -> Self {
        PartTable {
            list_runs: PassageRuns::of(&lists),
            fragment_runs: PassageRuns::of(&fragments),
            lists,
            fragments,
            ids,
            terms,
        }
    }

    /// The size and checksum `part`'s file must have.
    pub fn entry(&self, part: Part) -> Option<&PartEntry> {
        match part {
            Part::List(i) => self.lists.get(i),
            Part::Fragment(j) => self.fragments.get(j),
            Part::Ids(b) => self.ids.get(b),
            Part::Terms(b) => self.terms.get(b),
        }
    }

    /// The part `path` names.
    pub fn part_at(&self, path: &str) -> Result<Part> {
        Part::from_path(path, self)
            .ok_or_else(|| Error::InvalidInput(format!("{path}: not a part of this index")))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            PARTS_HEADER
                + (self.lists.len() + self.fragments.len() + self.ids.len() + self.terms.len())
                    * ENTRY_BYTES,
        );
        out.extend_from_slice(PARTS_MAGIC);
        out.extend_from_slice(&PARTS_VERSION.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(self.lists.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.fragments.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.ids.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.terms.len() as u32).to_le_bytes());
        let entries = self.lists.iter().chain(&self.fragments).chain(&self.ids);
        for e in entries.chain(&self.terms) {
            out.extend_from_slice(&(e.count as u32).to_le_bytes());
            out.extend_from_slice(&(e.file.bytes as u32).to_le_bytes());
            // FileEntry holds 32 hex digits: the writer made them, so they parse.
            let hash = u128::from_str_radix(&e.file.xxh3_128, 16).unwrap_or_default();
            out.extend_from_slice(&hash.to_be_bytes());
        }
        out
    }

    /// Parses `parts.bin` of an index of `passages` passages (what the manifest says).
    pub fn from_bytes(bytes: &[u8], passages: usize) -> Result<Self> {
        let file = PARTS_FILE;
        super::check_header_version(
            file,
            bytes,
            PARTS_MAGIC,
            PARTS_HEADER,
            PARTS_VERSION,
            "part table",
        )?;
        let lists = u32_at(bytes, 8) as usize;
        let fragments = u32_at(bytes, 12) as usize;
        let id_buckets = u32_at(bytes, 16) as usize;
        let term_buckets = u32_at(bytes, 20) as usize;
        let want = lists
            .checked_add(fragments)
            .and_then(|n| n.checked_add(id_buckets))
            .and_then(|n| n.checked_add(term_buckets))
            .and_then(|n| n.checked_mul(ENTRY_BYTES))
            .and_then(|n| n.checked_add(PARTS_HEADER));
        if want != Some(bytes.len()) {
            return Err(corrupt(
                file,
                format!(
                    "{} bytes, {lists} lists, {fragments} fragments, {id_buckets} id buckets and {term_buckets} term buckets need {}",
                    bytes.len(),
                    want.unwrap_or(usize::MAX)
                ),
            ));
        }
        let entry = |i: usize| {
            let at = PARTS_HEADER + i * ENTRY_BYTES;
            let mut hash = [0u8; 16];
            hash.copy_from_slice(&bytes[at + 8..at + 24]);
            PartEntry {
                count: u32_at(bytes, at) as usize,
                file: FileEntry {
                    bytes: u32_at(bytes, at + 4) as u64,
                    xxh3_128: format!("{:032x}", u128::from_be_bytes(hash)),
                },
            }
        };
        let ids_start = lists + fragments;
        let terms_start = ids_start + id_buckets;
        let table = PartTable::new(
            (0..lists).map(entry).collect(),
            (lists..ids_start).map(entry).collect(),
            (ids_start..terms_start).map(entry).collect(),
            (terms_start..terms_start + term_buckets)
                .map(entry)
                .collect(),
        );
        if lists == 0 || fragments == 0 {
            return Err(corrupt(
                file,
                "an index has at least one list and one fragment",
            ));
        }
        for (kind, total) in [
            ("lists", table.list_runs.total()),
            ("fragments", table.fragment_runs.total()),
        ] {
            if total != passages {
                return Err(corrupt(
                    file,
                    format!("{kind} hold {total} passages, the manifest says {passages}"),
                ));
            }
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PartTable {
        let e = |count, body: &[u8]| PartEntry {
            count,
            file: FileEntry::of(body),
        };
        PartTable::new(
            vec![e(3, b"a"), e(0, b""), e(4, b"bc")],
            vec![e(5, b"def"), e(2, b"g")],
            vec![e(9, b"hi")],
            vec![e(2, b"jk"), e(1, b"l")],
        )
    }

    #[test]
    fn part_tables_round_trip_and_locate_passages() {
        let t = table();
        let back = PartTable::from_bytes(&t.to_bytes(), 7).unwrap();
        assert_eq!(back, t);
        assert_eq!(t.list_runs.range(2), 3..7);
        assert_eq!(t.list_runs.locate(2), Some((0, 2)));
        // The empty list 1 holds nothing: passage 3 is list 2's first.
        assert_eq!(t.list_runs.locate(3), Some((2, 0)));
        assert_eq!(t.list_runs.part_of(7), None);
        assert_eq!(t.fragment_runs.locate(6), Some((1, 1)));
        assert_eq!(t.fragment_runs.total(), 7);
        // Runs per part, gaps of up to 1 taken in, repeats and passages past the end left out.
        let runs = t.list_runs.group([6, 0, 2, 3, 9, 0, 5], 1);
        assert_eq!(runs, vec![(0, 0..3), (2, 0..4)]);
        assert_eq!(t.list_runs.group([6, 0, 2, 3, 9, 0, 5], 0).len(), 4);
        assert_eq!(t.list_runs.group([4, 6], 1), vec![(2, 1..4)]);
        assert_eq!(t.list_runs.group([4, 6], 0), vec![(2, 1..2), (2, 3..4)]);
        assert_eq!(t.part_at("vectors/00002.bin").unwrap(), Part::List(2));
        assert_eq!(t.part_at("passages/00001.bin").unwrap(), Part::Fragment(1));
        assert_eq!(Part::Fragment(1).path(), "passages/00001.bin");
        assert_eq!(t.part_at("ids/00000.bin").unwrap(), Part::Ids(0));
        assert_eq!(t.part_at("terms/00001.bin").unwrap(), Part::Terms(1));
        for bad in [
            "vectors/00003.bin",
            "passages/2.bin",
            "model/00000.bin",
            "vectors/0000a.bin",
            "ids/00001.bin",
            "terms/00002.bin",
        ] {
            assert_eq!(
                t.part_at(bad).unwrap_err().to_string(),
                format!("invalid input: {bad}: not a part of this index")
            );
        }
    }

    #[test]
    fn damaged_part_tables_are_data_corruption() {
        let bytes = table().to_bytes();
        let err = |b: &[u8], n| PartTable::from_bytes(b, n).unwrap_err().to_string();
        assert_eq!(
            err(&bytes, 8),
            "data corruption in parts.bin: lists hold 7 passages, the manifest says 8"
        );
        assert_eq!(
            err(&bytes[..bytes.len() - 1], 7),
            "data corruption in parts.bin: 215 bytes, 3 lists, 2 fragments, 1 id buckets and 2 term buckets need 216"
        );
        let mut huge = bytes.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            err(&huge, 7).starts_with("data corruption in parts.bin: 216 bytes, 4294967295 lists")
        );
        assert_eq!(
            err(&bytes[..10], 7),
            "data corruption in parts.bin: 10 bytes, shorter than the 24-byte header"
        );
    }
}
