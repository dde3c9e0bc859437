//! The product quantizer of an index of several lists (`vectors/codebook.bin`): what a
//! list's codes mean. A passage vector `v` of list `i` is stored, besides its exact row, as
//! `α · cᵢ + r̂`: its projection on the list's centroid (`α`, one f16) plus its residual `r`
//! approximated slice by slice by the nearest of 256 centroids of that slice (one byte a
//! slice). A query then scores every passage of a probed list with `α · (q·cᵢ)` and `m`
//! table lookups ([`crate::kernels::pq`]): bytes a query fetches shrink from a row's
//! `dims + 4` to `m + 2`, and only the best few are scored exactly on their rows.

use std::ops::Range;

use super::{check_header_version, corrupt, u32_at};
use crate::error::Result;
use crate::kernels::pq::CODES_PER_SLICE;
use crate::model::MAX_DIMS;

/// File name of the codebook.
pub const CODEBOOK_FILE: &str = "vectors/codebook.bin";
const CODEBOOK_MAGIC: &[u8; 4] = b"DFCB";
const CODEBOOK_VERSION: u16 = 1;
const CODEBOOK_HEADER: usize = 16;

/// Slices of `dims` dimensions, `m` of them: as even as they come (`s·dims/m ..`).
pub fn slice_bounds(dims: usize, m: usize, s: usize) -> Range<usize> {
    s * dims / m..(s + 1) * dims / m
}

/// The centroids of every slice, as f32 (stored as int8 with one scale a slice — half the
/// bytes of f16, a first query's download: the indexer encodes with the stored values, so
/// reader and writer agree bit for bit).
#[derive(Debug, Clone, PartialEq)]
pub struct Codebook {
    pub dims: usize,
    /// Slices, and code bytes per passage.
    pub m: usize,
    /// Centroids per slice (≤ 256; fewer when the index had fewer passages to train on).
    pub k: usize,
    /// Slice by slice: `k` centroids of the slice's width (`codes × scale`).
    values: Vec<f32>,
    scales: Vec<f32>,
    codes: Vec<i8>,
}

impl Codebook {
    /// A codebook of `centroids[s][c]` (slice `s`, centroid `c`), rounded as stored.
    pub fn new(dims: usize, centroids: &[Vec<Vec<f32>>]) -> Self {
        let m = centroids.len();
        let k = centroids.first().map_or(0, Vec::len);
        let mut scales = Vec::with_capacity(m);
        let mut codes = Vec::new();
        for slice in centroids {
            let max = slice.iter().flatten().fold(0f32, |a, x| a.max(x.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 0.0 };
            scales.push(scale);
            codes.extend(slice.iter().flatten().map(|&x| {
                if scale > 0.0 {
                    (x / scale).round().clamp(-127.0, 127.0) as i8
                } else {
                    0
                }
            }));
        }
        Self::from_codes(dims, m, k, scales, codes)
    }

    fn from_codes(dims: usize, m: usize, k: usize, scales: Vec<f32>, codes: Vec<i8>) -> Self {
        let mut values = Vec::with_capacity(codes.len());
        for (s, &scale) in scales.iter().enumerate() {
            let slice = k * slice_bounds(dims, m, s).start..k * slice_bounds(dims, m, s).end;
            values.extend(codes[slice].iter().map(|&c| f32::from(c) * scale));
        }
        Codebook {
            dims,
            m,
            k,
            values,
            scales,
            codes,
        }
    }

    fn slice_start(&self, s: usize) -> usize {
        self.k * slice_bounds(self.dims, self.m, s).start
    }

    /// Centroid `c` of slice `s`.
    pub fn centroid(&self, s: usize, c: usize) -> &[f32] {
        let width = slice_bounds(self.dims, self.m, s).len();
        let at = self.slice_start(s) + c * width;
        &self.values[at..at + width]
    }

    /// The codes of a residual: in each slice, the nearest centroid (Euclidean; ties to the
    /// lower number).
    pub fn encode(&self, residual: &[f32]) -> Vec<u8> {
        (0..self.m)
            .map(|s| {
                let part = &residual[slice_bounds(self.dims, self.m, s)];
                let mut best = (0usize, f32::INFINITY);
                for c in 0..self.k {
                    let d: f32 = part
                        .iter()
                        .zip(self.centroid(s, c))
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum();
                    if d < best.1 {
                        best = (c, d);
                    }
                }
                best.0 as u8
            })
            .collect()
    }

    /// The residual codes stand for.
    pub fn decode(&self, codes: &[u8]) -> Vec<f32> {
        (0..self.m)
            .flat_map(|s| self.centroid(s, codes[s] as usize).to_vec())
            .collect()
    }

    /// The query's dot product with every centroid of every slice, `CODES_PER_SLICE` a
    /// slice (unused codes score −∞: a list holding one is refused when added).
    pub fn table(&self, query: &[f32]) -> Vec<f32> {
        let mut table = vec![f32::NEG_INFINITY; self.m * CODES_PER_SLICE];
        for s in 0..self.m {
            let part = &query[slice_bounds(self.dims, self.m, s)];
            for c in 0..self.k {
                table[s * CODES_PER_SLICE + c] = part
                    .iter()
                    .zip(self.centroid(s, c))
                    .map(|(a, b)| a * b)
                    .sum();
            }
        }
        table
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CODEBOOK_HEADER + 4 * self.m + self.codes.len());
        out.extend_from_slice(CODEBOOK_MAGIC);
        out.extend_from_slice(&CODEBOOK_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.m as u16).to_le_bytes());
        out.extend_from_slice(&(self.dims as u32).to_le_bytes());
        out.extend_from_slice(&(self.k as u32).to_le_bytes());
        for (s, scale) in self.scales.iter().enumerate() {
            out.extend_from_slice(&scale.to_le_bytes());
            let bounds = slice_bounds(self.dims, self.m, s);
            out.extend(
                self.codes[self.k * bounds.start..self.k * bounds.end]
                    .iter()
                    .map(|&c| c as u8),
            );
        }
        out
    }

    /// Parses `vectors/codebook.bin` of an index of `dims` dimensions.
    pub fn from_bytes(bytes: &[u8], dims: usize) -> Result<Self> {
        let file = CODEBOOK_FILE;
        check_header_version(
            file,
            bytes,
            CODEBOOK_MAGIC,
            CODEBOOK_HEADER,
            CODEBOOK_VERSION,
            "codebook",
        )?;
        let m = u16::from_le_bytes([bytes[6], bytes[7]]) as usize;
        let stored_dims = u32_at(bytes, 8) as usize;
        let k = u32_at(bytes, 12) as usize;
        if stored_dims != dims || dims > MAX_DIMS {
            return Err(corrupt(
                file,
                format!("{stored_dims} dimensions, the index has {dims}"),
            ));
        }
        if m == 0 || m > dims || k == 0 || k > CODES_PER_SLICE {
            return Err(corrupt(
                file,
                format!("{m} slices of {k} centroids (1 ≤ slices ≤ {dims}, 1 ≤ centroids ≤ 256)"),
            ));
        }
        let want = CODEBOOK_HEADER + 4 * m + k * dims;
        if bytes.len() != want {
            return Err(corrupt(
                file,
                format!(
                    "{} bytes, {m} slices of {k} centroids need {want}",
                    bytes.len()
                ),
            ));
        }
        let (mut scales, mut codes) = (Vec::with_capacity(m), Vec::with_capacity(k * dims));
        let mut at = CODEBOOK_HEADER;
        for s in 0..m {
            let scale =
                f32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            if !scale.is_finite() || scale < 0.0 {
                return Err(corrupt(file, format!("slice {s} has scale {scale}")));
            }
            scales.push(scale);
            let n = k * slice_bounds(dims, m, s).len();
            codes.extend(bytes[at + 4..at + 4 + n].iter().map(|&b| b as i8));
            at += 4 + n;
        }
        Ok(Self::from_codes(dims, m, k, scales, codes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codebook() -> Codebook {
        // 5 dims in 2 slices (2 + 3 wide), 3 centroids each.
        let slices = vec![
            vec![vec![0.0, 0.0], vec![1.0, 0.5], vec![-1.0, 2.0]],
            vec![vec![0.0; 3], vec![0.25, 0.5, -0.75], vec![3.0, 0.0, 1.0]],
        ];
        Codebook::new(5, &slices)
    }

    #[test]
    fn codes_round_trip_and_tables_score_their_residuals() {
        let cb = codebook();
        assert_eq!((slice_bounds(5, 2, 0), slice_bounds(5, 2, 1)), (0..2, 2..5));
        let r = [0.9, 0.6, 2.8, 0.1, 1.2];
        let codes = cb.encode(&r);
        assert_eq!(codes, vec![1, 2]);
        // Stored in int8 a slice: within half a step of the trained values.
        for (got, want) in cb.decode(&codes).iter().zip([1.0, 0.5, 3.0, 0.0, 1.0]) {
            assert!((got - want).abs() <= 3.0 / 254.0, "{got} vs {want}");
        }
        let q = [1.0, -1.0, 0.5, 2.0, 1.0];
        let table = cb.table(&q);
        let approx = table[codes[0] as usize] + table[CODES_PER_SLICE + codes[1] as usize];
        let exact: f32 = cb.decode(&codes).iter().zip(q).map(|(a, b)| a * b).sum();
        assert_eq!(approx, exact);
        assert_eq!(table[3], f32::NEG_INFINITY, "an unused code");
        let back = Codebook::from_bytes(&cb.to_bytes(), 5).unwrap();
        assert_eq!(back, cb);
    }

    #[test]
    fn damaged_codebooks_are_data_corruption() {
        let good = codebook().to_bytes();
        let err = |b: &[u8], dims| Codebook::from_bytes(b, dims).unwrap_err().to_string();
        assert_eq!(
            err(&good, 6),
            "data corruption in vectors/codebook.bin: 5 dimensions, the index has 6"
        );
        assert_eq!(
            err(&good[..good.len() - 2], 5),
            "data corruption in vectors/codebook.bin: 37 bytes, 2 slices of 3 centroids need 39"
        );
        let mut bad = good.clone();
        bad[12] = 0;
        assert_eq!(
            err(&bad, 5),
            "data corruption in vectors/codebook.bin: 2 slices of 0 centroids (1 ≤ slices ≤ 5, 1 ≤ centroids ≤ 256)"
        );
        let mut bad = good;
        bad[16..20].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(
            err(&bad, 5),
            "data corruption in vectors/codebook.bin: slice 0 has scale NaN"
        );
    }
}
