//! Vector shards: a header, then every vector of a run of passages — int8 with one scale
//! per vector, f16 or f32 — read in place by the scoring kernels.

use serde::{Deserialize, Serialize};

use super::{check_header, corrupt, u32_at, SHARD_FORMAT_VERSION};
use crate::error::Result;
use crate::kernels::score::{QuantizedQuery, RowSums};
use crate::model::MAX_DIMS;

const VECTOR_MAGIC: &[u8; 4] = b"DFVC";
const VECTOR_HEADER: usize = 16;

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
    pub(crate) fn code(self) -> u8 {
        match self {
            VectorEncoding::F32 => 0,
            VectorEncoding::F16 => 1,
            VectorEncoding::Int8 => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
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
    /// The row as a list file stores it: int8's scale (f32) then its bytes; f16 and f32
    /// values as they are.
    pub fn stored_bytes(&self, encoding: VectorEncoding) -> Vec<u8> {
        let mut out = Vec::with_capacity(encoding.row_bytes(self.bytes.len()));
        if encoding == VectorEncoding::Int8 {
            out.extend_from_slice(&self.scale.to_le_bytes());
        }
        out.extend_from_slice(&self.bytes);
        out
    }

    /// The values this row stores (`encoding` is how it was encoded).
    pub fn decode(&self, encoding: VectorEncoding) -> Vec<f32> {
        match encoding {
            VectorEncoding::F32 => self
                .bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            VectorEncoding::F16 => self
                .bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            VectorEncoding::Int8 => self
                .bytes
                .iter()
                .map(|&b| f32::from(b as i8) * self.scale)
                .collect(),
        }
    }

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

impl VectorShard {
    /// Serializes rows (all of `dims` values, in `encoding`) into a shard file.
    pub fn to_bytes(encoding: VectorEncoding, dims: usize, rows: &[EncodedRow]) -> Vec<u8> {
        let mut out = Vec::with_capacity(VECTOR_HEADER + rows.len() * encoding.row_bytes(dims));
        out.extend_from_slice(VECTOR_MAGIC);
        out.extend_from_slice(&SHARD_FORMAT_VERSION.to_le_bytes());
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
        check_header(file, bytes, VECTOR_MAGIC, VECTOR_HEADER, "vector shard")?;
        let encoding = VectorEncoding::from_code(bytes[6])
            .ok_or_else(|| corrupt(file, format!("unknown vector encoding code {}", bytes[6])))?;
        let dims = u32_at(bytes, 8) as usize;
        let count = u32_at(bytes, 12) as usize;
        if dims == 0 || dims > MAX_DIMS {
            return Err(corrupt(file, format!("dims is {dims}")));
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

    /// Rows stored one after another as [`EncodedRow::stored_bytes`] writes them (a list
    /// file's rows), validated as [`VectorShard::from_bytes`] validates a shard.
    pub fn from_row_bytes(
        file: &str,
        encoding: VectorEncoding,
        dims: usize,
        bytes: &[u8],
    ) -> Result<Self> {
        let rb = encoding.row_bytes(dims);
        if dims == 0 || dims > MAX_DIMS || !bytes.len().is_multiple_of(rb) {
            return Err(corrupt(
                file,
                format!(
                    "{} bytes are not rows of {dims} {encoding:?} values",
                    bytes.len()
                ),
            ));
        }
        let count = bytes.len() / rb;
        let mut shard = Vec::with_capacity(VECTOR_HEADER + bytes.len());
        shard.extend_from_slice(VECTOR_MAGIC);
        shard.extend_from_slice(&SHARD_FORMAT_VERSION.to_le_bytes());
        shard.push(encoding.code());
        shard.push(0);
        shard.extend_from_slice(&(dims as u32).to_le_bytes());
        shard.extend_from_slice(&(count as u32).to_le_bytes());
        if encoding == VectorEncoding::Int8 {
            for row in bytes.chunks_exact(rb) {
                shard.extend_from_slice(&row[..4]);
            }
            for row in bytes.chunks_exact(rb) {
                shard.extend_from_slice(&row[4..]);
            }
        } else {
            shard.extend_from_slice(bytes);
        }
        Self::from_bytes(file, &shard)
    }

    /// Rows `rows` as a shard of their own.
    pub fn slice(&self, rows: std::ops::Range<usize>) -> VectorShard {
        let n = self.encoding.payload_bytes(self.dims);
        let payload = self.payload[rows.start * n..rows.end * n].to_vec();
        VectorShard {
            encoding: self.encoding,
            dims: self.dims,
            count: rows.len(),
            scales: self
                .scales
                .get(rows.clone())
                .map(<[f32]>::to_vec)
                .unwrap_or_default(),
            row_sums: if self.encoding == VectorEncoding::Int8 {
                RowSums::new(&payload, self.dims)
            } else {
                RowSums::default()
            },
            payload,
        }
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
        self.row(i).decode(self.encoding)
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
        // An empty shard of absurd width: refused before anything is sized by it (`fuzz/`,
        // target vector_shard, allocated gigabytes for it).
        let empty_wide = [
            &VECTOR_MAGIC[..],
            &[1, 0, 2, 0],
            &u32::MAX.to_le_bytes(),
            &[0; 4],
        ]
        .concat();
        assert_eq!(
            err(&empty_wide),
            "data corruption in vectors-000.bin: dims is 4294967295"
        );
    }
}
