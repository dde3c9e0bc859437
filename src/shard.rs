//! The on-disk/on-the-wire index format: `manifest.json`, vector shards and passage shards.
//!
//! This module is the contract between the native indexer and the browser; it is pure
//! (bytes in, bytes out) so both sides share one implementation. Every reader validates
//! sizes before touching data and reports damage as [`Error::DataCorruption`] naming the
//! file. The layout is specified in `docs/format.md`; change both together.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bundle::{FileEntry, Pooling, Similarity};
use crate::error::{Error, Result};
use crate::score::{QuantizedQuery, RowSums};

/// Index format this build reads and writes.
pub const INDEX_FORMAT: &str = "dotfind-index/1";
/// File name of the index manifest.
pub const INDEX_MANIFEST: &str = "manifest.json";
/// Largest file the indexer writes: under static hosts' per-file caps (Cloudflare Pages: 25 MiB).
pub const DEFAULT_MAX_FILE_BYTES: usize = 20 * 1024 * 1024;

const VECTOR_MAGIC: &[u8; 4] = b"DFVC";
const PASSAGE_MAGIC: &[u8; 4] = b"DFPS";
const FORMAT_VERSION: u16 = 1;
const VECTOR_HEADER: usize = 16;
const PASSAGE_HEADER: usize = 12;

/// How passage vectors are stored. int8 (one f32 scale per vector, symmetric) is 4× smaller
/// than f32 and, for the retrieval metrics we track, indistinguishable from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorEncoding {
    Int8,
    F16,
    F32,
}

impl VectorEncoding {
    fn code(self) -> u8 {
        match self {
            VectorEncoding::F32 => 0,
            VectorEncoding::F16 => 1,
            VectorEncoding::Int8 => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(VectorEncoding::F32),
            1 => Some(VectorEncoding::F16),
            2 => Some(VectorEncoding::Int8),
            _ => None,
        }
    }

    /// Bytes one vector of `dims` takes in a shard, scale included.
    pub fn row_bytes(self, dims: usize) -> usize {
        match self {
            VectorEncoding::F32 => 4 * dims,
            VectorEncoding::F16 => 2 * dims,
            VectorEncoding::Int8 => 4 + dims,
        }
    }

    /// Bytes one vector takes in a shard's payload (int8 scales are stored apart).
    fn payload_bytes(self, dims: usize) -> usize {
        match self {
            VectorEncoding::Int8 => dims,
            other => other.row_bytes(dims),
        }
    }
}

impl std::str::FromStr for VectorEncoding {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "int8" => Ok(VectorEncoding::Int8),
            "f16" => Ok(VectorEncoding::F16),
            "f32" => Ok(VectorEncoding::F32),
            _ => Err(format!(
                "unknown vector encoding {s:?} (expected int8, f16 or f32)"
            )),
        }
    }
}

/// One vector in its stored form. Kept encoded so an incremental re-index can copy a
/// reused vector bit for bit instead of re-quantizing it.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedRow {
    /// int8 only: value = scale × stored byte.
    pub scale: f32,
    pub bytes: Vec<u8>,
}

impl EncodedRow {
    /// Quantizes/converts a vector; deterministic, so identical inputs give identical bytes.
    pub fn encode(encoding: VectorEncoding, v: &[f32]) -> Self {
        match encoding {
            VectorEncoding::F32 => EncodedRow {
                scale: 1.0,
                bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            },
            VectorEncoding::F16 => EncodedRow {
                scale: 1.0,
                bytes: v
                    .iter()
                    .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                    .collect(),
            },
            VectorEncoding::Int8 => {
                let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
                let scale = if max > 0.0 { max / 127.0 } else { 0.0 };
                let bytes = v
                    .iter()
                    .map(|&x| {
                        if scale > 0.0 {
                            (x / scale).round().clamp(-127.0, 127.0) as i8 as u8
                        } else {
                            0
                        }
                    })
                    .collect();
                EncodedRow { scale, bytes }
            }
        }
    }
}

/// A vector shard, decoded and validated. Scoring reads it in place.
#[derive(Debug, Clone)]
pub struct VectorShard {
    pub encoding: VectorEncoding,
    pub dims: usize,
    pub count: usize,
    /// int8: one scale per row; empty otherwise.
    scales: Vec<f32>,
    /// Row-major payload as stored (i8, f16 bits or f32 bits).
    payload: Vec<u8>,
    /// int8: what the scoring kernel precomputes per row (see `score::RowSums`).
    row_sums: RowSums,
}

fn corrupt(file: &str, reason: impl Into<String>) -> Error {
    Error::DataCorruption {
        file: file.to_string(),
        reason: reason.into(),
    }
}

/// Checks the common shard header: long enough, right magic, readable version.
fn check_header(
    file: &str,
    bytes: &[u8],
    magic: &[u8; 4],
    header_len: usize,
    what: &str,
) -> Result<()> {
    if bytes.len() < header_len {
        return Err(corrupt(
            file,
            format!(
                "{} bytes, shorter than the {header_len}-byte header",
                bytes.len()
            ),
        ));
    }
    if &bytes[0..4] != magic {
        return Err(corrupt(
            file,
            format!("not a dotfind {what} shard (bad magic)"),
        ));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != FORMAT_VERSION {
        return Err(corrupt(
            file,
            format!("format version {version}, this build reads {FORMAT_VERSION}"),
        ));
    }
    Ok(())
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

impl VectorShard {
    /// Serializes rows (all of `dims` values, in `encoding`) into a shard file.
    pub fn to_bytes(encoding: VectorEncoding, dims: usize, rows: &[EncodedRow]) -> Vec<u8> {
        let mut out = Vec::with_capacity(VECTOR_HEADER + rows.len() * encoding.row_bytes(dims));
        out.extend_from_slice(VECTOR_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.push(encoding.code());
        out.push(0);
        out.extend_from_slice(&(dims as u32).to_le_bytes());
        out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
        if encoding == VectorEncoding::Int8 {
            for r in rows {
                out.extend_from_slice(&r.scale.to_le_bytes());
            }
        }
        for r in rows {
            out.extend_from_slice(&r.bytes);
        }
        out
    }

    /// Parses and validates a shard; `file` names it in errors.
    pub fn from_bytes(file: &str, bytes: &[u8]) -> Result<Self> {
        check_header(file, bytes, VECTOR_MAGIC, VECTOR_HEADER, "vector")?;
        let encoding = VectorEncoding::from_code(bytes[6])
            .ok_or_else(|| corrupt(file, format!("unknown vector encoding code {}", bytes[6])))?;
        let dims = u32_at(bytes, 8) as usize;
        let count = u32_at(bytes, 12) as usize;
        if dims == 0 {
            return Err(corrupt(file, "dims is 0"));
        }
        let expected = (count as u128) * (encoding.row_bytes(dims) as u128) + VECTOR_HEADER as u128;
        if bytes.len() as u128 != expected {
            return Err(corrupt(
                file,
                format!(
                    "{} bytes, header promises {expected} ({count} vectors of {dims} {encoding:?})",
                    bytes.len()
                ),
            ));
        }
        let mut at = VECTOR_HEADER;
        let mut scales = Vec::new();
        if encoding == VectorEncoding::Int8 {
            scales = (0..count)
                .map(|i| {
                    f32::from_le_bytes(
                        bytes[at + 4 * i..at + 4 * i + 4]
                            .try_into()
                            .unwrap_or_default(),
                    )
                })
                .collect();
            at += 4 * count;
            if let Some(bad) = scales.iter().position(|s| !s.is_finite() || *s < 0.0) {
                return Err(corrupt(
                    file,
                    format!("vector {bad} has invalid scale {}", scales[bad]),
                ));
            }
        }
        let payload = bytes[at..].to_vec();
        if encoding != VectorEncoding::Int8 {
            let shard = VectorShard {
                encoding,
                dims,
                count,
                scales,
                payload,
                row_sums: RowSums::default(),
            };
            for i in 0..count {
                if shard.vector(i).iter().any(|x| !x.is_finite()) {
                    return Err(corrupt(file, format!("vector {i} holds a NaN or infinity")));
                }
            }
            return Ok(shard);
        }
        Ok(VectorShard {
            encoding,
            dims,
            count,
            scales,
            row_sums: RowSums::new(&payload, dims),
            payload,
        })
    }

    /// The stored form of row `i` (for copying into a new index unchanged).
    pub fn row(&self, i: usize) -> EncodedRow {
        let n = self.encoding.payload_bytes(self.dims);
        EncodedRow {
            scale: self.scales.get(i).copied().unwrap_or(1.0),
            bytes: self.payload[i * n..(i + 1) * n].to_vec(),
        }
    }

    /// Row `i` as f32 values.
    pub fn vector(&self, i: usize) -> Vec<f32> {
        let d = self.dims;
        match self.encoding {
            VectorEncoding::F32 => self.payload[i * d * 4..(i + 1) * d * 4]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            VectorEncoding::F16 => self.payload[i * d * 2..(i + 1) * d * 2]
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            VectorEncoding::Int8 => {
                let s = self.scales[i];
                self.payload[i * d..(i + 1) * d]
                    .iter()
                    .map(|&b| f32::from(b as i8) * s)
                    .collect()
            }
        }
    }

    /// Scores rows `rows` (clipped to the shard) against `query` (dot product) into `out`
    /// (cleared first); int8 rows use the integer kernel with `quantized`, the same query in
    /// i16. A range rather than the whole shard, so one index can be scored by several threads.
    pub fn score_rows(
        &self,
        query: &[f32],
        quantized: &QuantizedQuery,
        rows: std::ops::Range<usize>,
        out: &mut Vec<f32>,
    ) {
        out.clear();
        let end = rows.end.min(self.count);
        let start = rows.start.min(end);
        let d = self.dims;
        let bytes = &self.payload
            [start * self.encoding.payload_bytes(d)..end * self.encoding.payload_bytes(d)];
        match self.encoding {
            VectorEncoding::Int8 => quantized.score_rows(
                bytes,
                &self.scales[start..end],
                self.row_sums.rows(start..end),
                out,
            ),
            VectorEncoding::F16 => out.extend(bytes.chunks_exact(d * 2).map(|row| {
                row.chunks_exact(2)
                    .zip(query)
                    .map(|(c, q)| half::f16::from_le_bytes([c[0], c[1]]).to_f32() * q)
                    .sum::<f32>()
            })),
            VectorEncoding::F32 => out.extend(bytes.chunks_exact(d * 4).map(|row| {
                row.chunks_exact(4)
                    .zip(query)
                    .map(|(c, q)| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * q)
                    .sum::<f32>()
            })),
        }
    }
}

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

fn push_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
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
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
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
        check_header(file, bytes, PASSAGE_MAGIC, PASSAGE_HEADER, "passage")?;
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
        for field in fields.iter_mut() {
            let mut len = 0usize;
            let mut shift = 0;
            loop {
                let byte = *self
                    .blob
                    .get(at)
                    .filter(|_| at < end && shift < 35)
                    .ok_or_else(|| {
                        corrupt(&self.file, format!("passage {i}: truncated field length"))
                    })?;
                at += 1;
                len |= usize::from(byte & 0x7f) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            let bytes = self
                .blob
                .get(at..at + len)
                .filter(|_| at + len <= end)
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

/// The model an index was built with; queries must be encoded by the same bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexModel {
    pub model_id: String,
    /// sha256 of the bundle's `dotfind-model.json`: identifies the exact weights.
    pub bundle_sha256: String,
    pub dims: usize,
    pub pooling: Pooling,
    pub similarity: Similarity,
    /// Folder (relative to the manifest) holding the bundle copy.
    pub path: String,
    /// The bundle's graph file (`model.graph`, or `model.onnx` for a bundle never
    /// compiled), in order: one file, or ≤20 MiB parts to concatenate.
    pub model_parts: Vec<String>,
    /// When passages were encoded by another bundle of the same checkpoint (typically the
    /// f32 twin of the int8 query model): its `bundle_sha256`. Absent when it is this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passage_bundle_sha256: Option<String>,
}

impl IndexModel {
    /// The bundle whose outputs the stored vectors are: what a reused vector must match.
    pub fn passage_bundle(&self) -> &str {
        self.passage_bundle_sha256
            .as_deref()
            .unwrap_or(&self.bundle_sha256)
    }
}

/// One shard pair: `count` passages whose vectors and metadata are in these two files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    pub vectors: String,
    pub passages: String,
    pub count: usize,
}

/// The contents of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexManifest {
    pub format: String,
    pub model: IndexModel,
    pub vector_encoding: VectorEncoding,
    pub passage_count: usize,
    pub document_count: usize,
    pub shards: Vec<ShardEntry>,
    /// Every other file of the index, relative path → size and checksums.
    pub files: BTreeMap<String, FileEntry>,
}

impl IndexManifest {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidManifest {
            file: INDEX_MANIFEST.into(),
            reason,
        };
        let m: IndexManifest = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("not a valid index manifest: {e}")))?;
        if m.format != INDEX_FORMAT {
            return Err(invalid(format!(
                "format is {:?}, this build reads {INDEX_FORMAT:?}",
                m.format
            )));
        }
        let total: usize = m.shards.iter().map(|s| s.count).sum();
        if total != m.passage_count {
            return Err(invalid(format!(
                "shards hold {total} passages, passage_count says {}",
                m.passage_count
            )));
        }
        for s in &m.shards {
            for f in [&s.vectors, &s.passages] {
                if !m.files.contains_key(f) {
                    return Err(invalid(format!("no checksum recorded for {f}")));
                }
            }
        }
        for f in &m.model.model_parts {
            if !m.files.contains_key(f) {
                return Err(invalid(format!("no checksum recorded for {f}")));
            }
        }
        Ok(m)
    }

    /// The manifest/model agreement every loader enforces: the very bundle the index was
    /// built with (same descriptor hash), hence the same vector space and dimensions.
    pub fn check_bundle(&self, bundle: &crate::bundle::ModelBundle) -> Result<()> {
        let m = &self.model;
        if bundle.bundle_sha256 != m.bundle_sha256 {
            return Err(Error::ModelMismatch(format!(
                "index was built with bundle {} ({}), the model folder holds {} ({})",
                m.bundle_sha256, m.model_id, bundle.bundle_sha256, bundle.manifest.model_id
            )));
        }
        if bundle.manifest.hidden_size != m.dims {
            return Err(Error::ModelMismatch(format!(
                "index vectors have {} dimensions, the model outputs {}",
                m.dims, bundle.manifest.hidden_size
            )));
        }
        Ok(())
    }

    /// Verifies a fetched/read file against its manifest entry.
    pub fn verify(&self, file: &str, bytes: &[u8]) -> Result<()> {
        self.entry(file)?.verify(file, bytes)
    }

    /// The size and checksums recorded for `file`.
    pub fn entry(&self, file: &str) -> Result<&crate::bundle::FileEntry> {
        self.files.get(file).ok_or_else(|| Error::InvalidManifest {
            file: INDEX_MANIFEST.into(),
            reason: format!("no checksum recorded for {file}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(enc: VectorEncoding) -> Vec<EncodedRow> {
        [[0.5f32, -1.0, 0.25], [0.0, 0.0, 0.0], [3.0, 2.0, -1.5]]
            .iter()
            .map(|v| EncodedRow::encode(enc, v))
            .collect()
    }

    #[test]
    fn vector_shards_round_trip_in_every_encoding() {
        for enc in [
            VectorEncoding::Int8,
            VectorEncoding::F16,
            VectorEncoding::F32,
        ] {
            let bytes = VectorShard::to_bytes(enc, 3, &rows(enc));
            assert_eq!(bytes.len(), 16 + 3 * enc.row_bytes(3));
            let shard = VectorShard::from_bytes("v.bin", &bytes).unwrap();
            assert_eq!((shard.count, shard.dims, shard.encoding), (3, 3, enc));
            let v = shard.vector(2);
            let tol = if enc == VectorEncoding::Int8 {
                3.0 / 127.0
            } else {
                1e-3
            };
            for (a, b) in v.iter().zip([3.0, 2.0, -1.5]) {
                assert!((a - b).abs() <= tol, "{enc:?}: {a} vs {b}");
            }
            assert_eq!(shard.vector(1), vec![0.0; 3]);
            assert_eq!(shard.row(2), rows(enc)[2], "rows copy out bit for bit");
            let mut scores = Vec::new();
            shard.score_rows(
                &[1.0, 1.0, 1.0],
                &QuantizedQuery::new(&[1.0, 1.0, 1.0]),
                0..shard.count,
                &mut scores,
            );
            assert!((scores[2] - 3.5).abs() < 0.05, "{enc:?}: {scores:?}");
        }
    }

    #[test]
    fn int8_uses_the_full_range_per_vector() {
        let r = EncodedRow::encode(VectorEncoding::Int8, &[0.5, -1.0, 0.25]);
        assert_eq!(
            r.bytes.iter().map(|&b| b as i8).collect::<Vec<_>>(),
            vec![64, -127, 32]
        );
        assert_eq!(r.scale, 1.0 / 127.0);
    }

    #[test]
    fn damaged_vector_shards_are_data_corruption() {
        let good = VectorShard::to_bytes(VectorEncoding::Int8, 3, &rows(VectorEncoding::Int8));
        let err = |b: &[u8]| {
            VectorShard::from_bytes("vectors-000.bin", b)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(&good[..10]),
            "data corruption in vectors-000.bin: 10 bytes, shorter than the 16-byte header"
        );
        assert_eq!(
            err(&good[..good.len() - 1]),
            "data corruption in vectors-000.bin: 36 bytes, header promises 37 (3 vectors of 3 Int8)"
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(
            err(&bad),
            "data corruption in vectors-000.bin: not a dotfind vector shard (bad magic)"
        );
        let mut bad = good.clone();
        bad[4] = 9;
        assert_eq!(
            err(&bad),
            "data corruption in vectors-000.bin: format version 9, this build reads 1"
        );
        let mut bad = good.clone();
        bad[16..20].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(
            err(&bad),
            "data corruption in vectors-000.bin: vector 0 has invalid scale NaN"
        );
        let mut bad = good;
        bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(err(&bad).contains("header promises"));
    }

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
