//! Passage shards: a directory (offsets and checksums) plus length-prefixed UTF-8 fields per
//! passage, so a reader fetches and decodes only the records it shows.

use super::{check_header_version, corrupt, push_varint, read_varint, u32_at};
use crate::error::Result;

const PASSAGE_MAGIC: &[u8; 4] = b"DFPS";
const PASSAGE_HEADER: usize = 12;

/// Display and identity data of one passage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PassageRecord {
    /// Unique passage id (`_id` for one-passage documents, `_id#n` or `url#anchor` otherwise).
    pub id: String,
    /// The document it came from: a corpus `_id` or a page URL. Runs are scored per document.
    pub doc_id: String,
    /// Link target: page URL plus `#anchor` when the passage sits under an identified heading.
    pub url: String,
    pub title: String,
    pub heading: String,
    /// The passage text as shown to users (the snippet source).
    pub text: String,
}

impl PassageRecord {
    /// The text the model embeds: title, heading and body, as BEIR does (title + " " + text).
    pub fn encoded_text(&self) -> String {
        [
            self.title.as_str(),
            self.heading.as_str(),
            self.text.as_str(),
        ]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
    }

    fn fields(&self) -> [&str; 6] {
        [
            &self.id,
            &self.doc_id,
            &self.url,
            &self.title,
            &self.heading,
            &self.text,
        ]
    }

    /// Bytes this record adds to a passage shard (offset and checksum included).
    pub fn stored_size(&self) -> usize {
        8 + self
            .fields()
            .iter()
            .map(|f| varint_len(f.len()) + f.len())
            .sum::<usize>()
    }
}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

/// Version of the passage shard layout (its own: the directory of record checksums).
const PASSAGE_VERSION: u16 = 2;

/// A passage fragment (`passages/NNNNN.bin`): a *directory* — header, record offsets and
/// each record's checksum, what the part table's checksum covers — then the records. A
/// browser fetches the directory, then only the records of the results it shows, by byte
/// range, each checked against its checksum; a whole file is checked the same way.
#[derive(Debug, Clone)]
pub struct PassageShard {
    count: usize,
    /// Record `i` is `blob[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<u32>,
    checksums: Vec<u32>,
    /// The records held, in place (zeros where a record has not arrived).
    blob: Vec<u8>,
    held: Vec<bool>,
    file: String,
}

impl PassageShard {
    pub fn to_bytes(records: &[PassageRecord]) -> Vec<u8> {
        let mut blob = Vec::new();
        let mut offsets = Vec::with_capacity(records.len() + 1);
        let mut checksums = Vec::with_capacity(records.len());
        for r in records {
            let start = blob.len();
            offsets.push(start as u32);
            for f in r.fields() {
                push_varint(&mut blob, f.len());
                blob.extend_from_slice(f.as_bytes());
            }
            checksums.push(crate::checksum::piece_checksum(&blob[start..]));
        }
        offsets.push(blob.len() as u32);
        let mut out = Vec::with_capacity(Self::directory_len(records.len()) + blob.len());
        out.extend_from_slice(PASSAGE_MAGIC);
        out.extend_from_slice(&PASSAGE_VERSION.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(records.len() as u32).to_le_bytes());
        for o in offsets {
            out.extend_from_slice(&o.to_le_bytes());
        }
        for c in checksums {
            out.extend_from_slice(&c.to_le_bytes());
        }
        out.extend_from_slice(&blob);
        out
    }

    /// Bytes of the directory of a shard of `count` records.
    pub fn directory_len(count: usize) -> usize {
        PASSAGE_HEADER + 4 * (count + 1) + 4 * count
    }

    /// Parses a whole shard, every record checked.
    pub fn from_bytes(file: &str, bytes: &[u8]) -> Result<Self> {
        let mut shard = Self::directory(file, bytes, bytes.len())?;
        let at = Self::directory_len(shard.count);
        shard.add_records(at..bytes.len(), &bytes[at..])?;
        Ok(shard)
    }

    /// Parses the directory at the start of `bytes` (the directory, or more of the file) of
    /// a file of `file_len` bytes (what the part table says); records are added with
    /// `add_records`.
    pub fn directory(file: &str, bytes: &[u8], file_len: usize) -> Result<Self> {
        check_header_version(
            file,
            bytes,
            PASSAGE_MAGIC,
            PASSAGE_HEADER,
            PASSAGE_VERSION,
            "passage shard",
        )?;
        let count = u32_at(bytes, 8) as usize;
        let table_end = (count as u128) * 8 + 4 + PASSAGE_HEADER as u128;
        if (bytes.len() as u128) < table_end {
            return Err(corrupt(
                file,
                format!("{} bytes, too short for {count} passages", bytes.len()),
            ));
        }
        let offsets: Vec<u32> = (0..=count)
            .map(|i| u32_at(bytes, PASSAGE_HEADER + 4 * i))
            .collect();
        let checksums: Vec<u32> = (0..count)
            .map(|i| u32_at(bytes, PASSAGE_HEADER + 4 * (count + 1) + 4 * i))
            .collect();
        if offsets[0] != 0 || offsets.windows(2).any(|w| w[0] > w[1]) {
            return Err(corrupt(file, "passage offset table is out of order"));
        }
        let blob_len = offsets[count] as usize;
        if table_end as usize + blob_len != file_len {
            return Err(corrupt(
                file,
                "passage offset table is inconsistent with the file size",
            ));
        }
        Ok(PassageShard {
            count,
            offsets,
            checksums,
            // Sized by the offsets, once they agree with the file's length.
            blob: Vec::new(),
            held: vec![false; count],
            file: file.to_string(),
        }
        .with_blob_len(blob_len))
    }

    fn with_blob_len(mut self, len: usize) -> Self {
        self.blob = vec![0; len];
        self
    }

    /// Bytes of the whole file.
    pub fn file_len(&self) -> usize {
        Self::directory_len(self.count) + self.blob.len()
    }

    /// The bytes of records `records` in the file.
    pub fn records_bytes(&self, records: std::ops::Range<usize>) -> std::ops::Range<usize> {
        let at = Self::directory_len(self.count);
        at + self.offsets[records.start] as usize..at + self.offsets[records.end] as usize
    }

    /// Adds the records that `bytes`, bytes `range` of the file, hold exactly (whole records),
    /// each checked against its checksum.
    pub fn add_records(&mut self, range: std::ops::Range<usize>, bytes: &[u8]) -> Result<()> {
        let at = Self::directory_len(self.count);
        let bad = || {
            corrupt(
                &self.file,
                format!(
                    "bytes {}..{} are not whole passages of its {} bytes",
                    range.start,
                    range.end,
                    self.file_len()
                ),
            )
        };
        let (Some(start), Some(end)) = (range.start.checked_sub(at), range.end.checked_sub(at))
        else {
            return Err(bad());
        };
        let first = self.offsets.partition_point(|&o| (o as usize) < start);
        let last = self.offsets.partition_point(|&o| (o as usize) < end);
        if bytes.len() != end.saturating_sub(start)
            || end > self.blob.len()
            || self.offsets.get(first).map(|&o| o as usize) != Some(start)
            || self.offsets.get(last).map(|&o| o as usize) != Some(end)
        {
            return Err(bad());
        }
        for i in first..last {
            let record =
                &bytes[self.offsets[i] as usize - start..self.offsets[i + 1] as usize - start];
            if crate::checksum::piece_checksum(record) != self.checksums[i] {
                return Err(corrupt(
                    &self.file,
                    format!("passage {i} does not match its checksum"),
                ));
            }
        }
        self.blob[start..end].copy_from_slice(bytes);
        self.held[first..last].iter_mut().for_each(|h| *h = true);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether record `i` arrived.
    pub fn has(&self, i: usize) -> bool {
        self.held.get(i).copied().unwrap_or(false)
    }

    /// Whether every record arrived.
    pub fn is_whole(&self) -> bool {
        self.held.iter().all(|&h| h)
    }

    /// Decodes record `i`.
    pub fn record(&self, i: usize) -> Result<PassageRecord> {
        if i >= self.count {
            return Err(corrupt(
                &self.file,
                format!("passage {i} requested, shard holds {}", self.count),
            ));
        }
        if !self.held[i] {
            return Err(crate::error::Error::PartNotLoaded {
                file: format!("{}#passage={i}", self.file),
            });
        }
        let mut at = self.offsets[i] as usize;
        let end = self.offsets[i + 1] as usize;
        let mut fields: [String; 6] = Default::default();
        // The record's bytes: fields read past them are damage, not the next record.
        let record = self.blob.get(..end).unwrap_or_default();
        for field in fields.iter_mut() {
            let len = read_varint(record, &mut at).ok_or_else(|| {
                corrupt(&self.file, format!("passage {i}: truncated field length"))
            })?;
            let bytes = at
                .checked_add(len)
                .and_then(|field_end| record.get(at..field_end))
                .ok_or_else(|| {
                    corrupt(
                        &self.file,
                        format!("passage {i}: field runs past its record"),
                    )
                })?;
            *field = String::from_utf8(bytes.to_vec()).map_err(|_| {
                corrupt(&self.file, format!("passage {i}: field is not valid UTF-8"))
            })?;
            at += len;
        }
        let [id, doc_id, url, title, heading, text] = fields;
        Ok(PassageRecord {
            id,
            doc_id,
            url,
            title,
            heading,
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> PassageRecord {
        PassageRecord {
            id: format!("d{i}#0"),
            doc_id: format!("d{i}"),
            url: format!("/p/{i}.html#intro"),
            title: "Tïtle 東京".into(),
            heading: String::new(),
            text: "x".repeat(200 * i),
        }
    }

    #[test]
    fn passage_shards_round_trip_and_decode_single_records() {
        let records: Vec<_> = (0..4).map(record).collect();
        let bytes = PassageShard::to_bytes(&records);
        assert_eq!(
            bytes.len(),
            12 + records
                .iter()
                .map(PassageRecord::stored_size)
                .sum::<usize>()
                + 4
        );
        let shard = PassageShard::from_bytes("passages-000.bin", &bytes).unwrap();
        assert_eq!(shard.len(), 4);
        assert_eq!(shard.record(3).unwrap(), records[3]);
        // The directory, then one record alone, as byte ranges bring them.
        let directory = PassageShard::directory_len(4);
        let mut lazy =
            PassageShard::directory("passages-000.bin", &bytes[..directory], bytes.len()).unwrap();
        assert_eq!(
            lazy.record(2).unwrap_err().to_string(),
            "passages-000.bin#passage=2: not loaded (index parts are fetched on demand, as a query needs them)"
        );
        let two = shard.records_bytes(2..3);
        lazy.add_records(two.clone(), &bytes[two.clone()]).unwrap();
        assert_eq!(lazy.record(2).unwrap(), records[2]);
        assert!(lazy.has(2) && !lazy.has(1) && !lazy.is_whole());
        let mut damaged = bytes[two.clone()].to_vec();
        damaged[0] ^= 1;
        assert_eq!(
            lazy.add_records(two.clone(), &damaged)
                .unwrap_err()
                .to_string(),
            "data corruption in passages-000.bin: passage 2 does not match its checksum"
        );
        assert_eq!(
            lazy.add_records(two.start + 1..two.end, &bytes[two.start + 1..two.end])
                .unwrap_err()
                .to_string(),
            format!(
                "data corruption in passages-000.bin: bytes {}..{} are not whole passages of its {} bytes",
                two.start + 1,
                two.end,
                bytes.len()
            )
        );
        assert_eq!(
            records[1].encoded_text(),
            format!("Tïtle 東京 {}", "x".repeat(200))
        );
        assert_eq!(
            shard.record(4).unwrap_err().to_string(),
            "data corruption in passages-000.bin: passage 4 requested, shard holds 4"
        );
    }

    #[test]
    fn damaged_passage_shards_are_data_corruption() {
        let bytes = PassageShard::to_bytes(&(0..3).map(record).collect::<Vec<_>>());
        let err = |b: &[u8]| {
            PassageShard::from_bytes("passages-000.bin", b)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(&bytes[..bytes.len() - 1]),
            "data corruption in passages-000.bin: passage offset table is inconsistent with the file size"
        );
        assert_eq!(
            err(&bytes[..14]),
            "data corruption in passages-000.bin: 14 bytes, too short for 3 passages"
        );
        let first_field = PassageShard::directory_len(3);
        let mut bad = bytes.clone();
        bad[first_field] ^= 1;
        assert_eq!(
            err(&bad),
            "data corruption in passages-000.bin: passage 0 does not match its checksum"
        );
        // A record whose checksum matches but whose field length points past it (a writer's
        // bug, not damage in transit) is caught when the record is read.
        let mut bad = bytes.clone();
        bad[first_field] = 0x7f;
        let good = PassageShard::from_bytes("p", &bytes).unwrap();
        let sum = crate::checksum::piece_checksum(&bad[good.records_bytes(0..1)]);
        let checksums = PASSAGE_HEADER + 4 * 4;
        bad[checksums..checksums + 4].copy_from_slice(&sum.to_le_bytes());
        let shard = PassageShard::from_bytes("passages-000.bin", &bad).unwrap();
        assert_eq!(
            shard.record(0).unwrap_err().to_string(),
            "data corruption in passages-000.bin: passage 0: field runs past its record"
        );
    }
}
