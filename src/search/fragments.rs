//! [`Fragments`]: the passage fragments of an index as far as they arrived. A result needs
//! one record of a fragment of ~16 KiB or more; a browser fetches the fragment's directory
//! (offsets and record checksums, vouched for by the part table), then only the records of
//! the hits shown, by byte range ([`Fragments::missing`] names both steps). Natively, and for
//! an index of one fragment, whole files arrive and are checked the same way.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::index::parts::range_path;
use crate::index::{Part, PartEntry, PassageRecord, PassageRuns, PassageShard};

/// The fragments of an index and what arrived of them.
#[derive(Debug)]
pub struct Fragments {
    entries: Vec<PartEntry>,
    runs: PassageRuns,
    shards: Vec<Option<PassageShard>>,
}

impl Fragments {
    pub fn new(entries: Vec<PartEntry>) -> Self {
        Fragments {
            shards: vec![None; entries.len()],
            runs: PassageRuns::of(&entries),
            entries,
        }
    }

    fn directory_path(&self, j: usize) -> String {
        let len = PassageShard::directory_len(self.entries[j].count);
        range_path(&Part::Fragment(j).path(), 0..len)
    }

    /// Whether every record of fragment `j` arrived.
    pub fn is_whole(&self, j: usize) -> bool {
        self.shards
            .get(j)
            .and_then(Option::as_ref)
            .is_some_and(PassageShard::is_whole)
    }

    /// Adds bytes of fragment `j`'s file: the whole file (`range` `None`), its directory
    /// (with or without records after it), or records — each checked against the part
    /// table through the directory.
    pub fn add(&mut self, j: usize, range: Option<Range<usize>>, bytes: &[u8]) -> Result<()> {
        let path = Part::Fragment(j).path();
        let entry = &self.entries[j];
        if range.is_none() {
            entry.file.verify_size(&path, bytes.len())?;
        }
        let range = range.unwrap_or(0..bytes.len());
        let file_len = entry.file.bytes as usize;
        let directory = PassageShard::directory_len(entry.count);
        if range.len() != bytes.len() || range.end > file_len {
            return Err(crate::index::corrupt(
                &path,
                format!(
                    "{} bytes for bytes {}..{} of a {file_len}-byte file",
                    bytes.len(),
                    range.start,
                    range.end
                ),
            ));
        }
        if (range.start == 0 && range.end < directory)
            || (range.start > 0 && range.start < directory)
        {
            return Err(Error::InvalidInput(format!(
                "{}: not a range dotfind names",
                range_path(&path, range)
            )));
        }
        if range.start == 0 && self.shards[j].is_none() {
            entry.file.verify_head(&path, &bytes[..directory])?;
            let shard = PassageShard::directory(&path, &bytes[..directory], file_len)?;
            if shard.len() != entry.count {
                return Err(crate::index::corrupt(
                    &path,
                    format!(
                        "holds {} passages, the part table says {}",
                        shard.len(),
                        entry.count
                    ),
                ));
            }
            self.shards[j] = Some(shard);
        }
        let records = range.start.max(directory)..range.end;
        if records.is_empty() {
            return Ok(());
        }
        let Some(shard) = &mut self.shards[j] else {
            return Err(Error::PartNotLoaded {
                file: self.directory_path(j),
            });
        };
        let at = records.start - range.start;
        shard.add_records(records, &bytes[at..])
    }

    /// What showing `passages` needs that did not arrive: the directories of their
    /// fragments, then their records (runs of adjacent records in one range). Ask again
    /// once these are added, until nothing is missing.
    pub fn missing(&self, passages: &[usize]) -> Vec<String> {
        let arrived = |n: usize| {
            self.runs
                .locate(n)
                .is_some_and(|(j, i)| self.shards[j].as_ref().is_some_and(|s| s.has(i)))
        };
        let wanted = passages.iter().copied().filter(|&n| !arrived(n));
        let mut out: Vec<String> = Vec::new();
        for (j, records) in self.runs.group(wanted, 0) {
            match &self.shards[j] {
                Some(shard) => out.push(range_path(
                    &Part::Fragment(j).path(),
                    shard.records_bytes(records),
                )),
                None => {
                    let directory = self.directory_path(j);
                    if !out.contains(&directory) {
                        out.push(directory);
                    }
                }
            }
        }
        out
    }

    /// Decodes passage `n`'s record (it must have arrived).
    pub fn record(&self, n: usize) -> Result<PassageRecord> {
        let (j, i) = self
            .runs
            .locate(n)
            .ok_or_else(|| Error::InvalidInput(format!("no passage {n}")))?;
        match &self.shards[j] {
            None => Err(Error::PartNotLoaded {
                file: self.directory_path(j),
            }),
            Some(shard) if !shard.has(i) => Err(Error::PartNotLoaded {
                file: range_path(&Part::Fragment(j).path(), shard.records_bytes(i..i + 1)),
            }),
            Some(shard) => shard.record(i),
        }
    }
}
