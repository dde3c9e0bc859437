//! Passage shards: an offset table plus length-prefixed UTF-8 fields per passage, so a
//! reader decodes only the records it shows instead of parsing the corpus.

use super::{check_header, corrupt, push_varint, read_varint, u32_at, SHARD_FORMAT_VERSION};
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

    /// Bytes this record adds to a passage shard (offset entry included).
    pub fn stored_size(&self) -> usize {
        4 + self
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

/// Passage metadata shard: an offset table plus length-prefixed UTF-8 fields, so the
/// browser decodes only the top-k records it shows instead of parsing the corpus.
#[derive(Debug, Clone)]
pub struct PassageShard {
    count: usize,
    offsets: Vec<u32>,
    blob: Vec<u8>,
    file: String,
}

impl PassageShard {
    pub fn to_bytes(records: &[PassageRecord]) -> Vec<u8> {
        let mut blob = Vec::new();
        let mut offsets = Vec::with_capacity(records.len() + 1);
        for r in records {
            offsets.push(blob.len() as u32);
            for f in r.fields() {
                push_varint(&mut blob, f.len());
                blob.extend_from_slice(f.as_bytes());
            }
        }
        offsets.push(blob.len() as u32);
        let mut out = Vec::with_capacity(PASSAGE_HEADER + 4 * offsets.len() + blob.len());
        out.extend_from_slice(PASSAGE_MAGIC);
        out.extend_from_slice(&SHARD_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(records.len() as u32).to_le_bytes());
        for o in offsets {
            out.extend_from_slice(&o.to_le_bytes());
        }
        out.extend_from_slice(&blob);
        out
    }

    /// Validates the header and offset table; records are decoded (and checked) on access.
    pub fn from_bytes(file: &str, bytes: &[u8]) -> Result<Self> {
        check_header(file, bytes, PASSAGE_MAGIC, PASSAGE_HEADER, "passage shard")?;
        let count = u32_at(bytes, 8) as usize;
        let table_end = (count as u128 + 1) * 4 + PASSAGE_HEADER as u128;
        if (bytes.len() as u128) < table_end {
            return Err(corrupt(
                file,
                format!("{} bytes, too short for {count} passages", bytes.len()),
            ));
        }
        let table_end = table_end as usize;
        let offsets: Vec<u32> = (0..=count)
            .map(|i| u32_at(bytes, PASSAGE_HEADER + 4 * i))
            .collect();
        let blob = bytes[table_end..].to_vec();
        if offsets[0] != 0
            || offsets.windows(2).any(|w| w[0] > w[1])
            || offsets[count] as usize != blob.len()
        {
            return Err(corrupt(
                file,
                "passage offset table is inconsistent with the file size",
            ));
        }
        Ok(PassageShard {
            count,
            offsets,
            blob,
            file: file.to_string(),
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Decodes record `i`.
    pub fn record(&self, i: usize) -> Result<PassageRecord> {
        if i >= self.count {
            return Err(corrupt(
                &self.file,
                format!("passage {i} requested, shard holds {}", self.count),
            ));
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
        // A field length pointing past its record is caught when the record is read.
        let mut bad = bytes.clone();
        let first_field = 12 + 4 * 4;
        bad[first_field] = 0x7f;
        let shard = PassageShard::from_bytes("passages-000.bin", &bad).unwrap();
        assert_eq!(
            shard.record(0).unwrap_err().to_string(),
            "data corruption in passages-000.bin: passage 0: field runs past its record"
        );
        let mut bad = bytes;
        bad[first_field + 1] = 0xff; // inside "d0#0": invalid UTF-8
        let shard = PassageShard::from_bytes("passages-000.bin", &bad).unwrap();
        assert_eq!(
            shard.record(0).unwrap_err().to_string(),
            "data corruption in passages-000.bin: passage 0: field is not valid UTF-8"
        );
    }
}
