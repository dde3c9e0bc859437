//! Vector list files (`vectors/NNNNN.bin`): one IVF list, cut so that a browser fetches only
//! what a query reads, by HTTP byte range. Three regions follow the header:
//!
//! - the *directory*: each row's checksum — verified by the part table's entry, it vouches
//!   for every other byte, so any range of rows can be checked alone;
//! - the *codes* (indexes of several lists): `α` and `m` code bytes a passage (see
//!   [`super::codebook`]), what a query scans;
//! - the *rows*: each passage's exact vector, contiguous, fetched only for the best
//!   candidates.
//!
//! The same file fetched whole (a host without range support, an exact search, natively)
//! is checked region by region the same way.

use std::ops::Range;

use super::{check_header_version, corrupt, u32_at};
use super::{EncodedRow, VectorEncoding, VectorShard};
use crate::checksum::piece_checksum;
use crate::error::Result;
use crate::kernels::pq::CODES_PER_SLICE;
use crate::model::MAX_DIMS;

const LIST_MAGIC: &[u8; 4] = b"DFVL";
const LIST_VERSION: u16 = 1;
const LIST_HEADER: usize = 36;

/// Where each region of a list file lies: all of it follows from these four numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListLayout {
    pub encoding: VectorEncoding,
    pub dims: usize,
    pub count: usize,
    /// Code bytes a passage (`m`); 0 for an index of one list, which has no codes.
    pub code_bytes: usize,
}

impl ListLayout {
    /// Header and row checksums: what the part table's checksum covers.
    pub fn directory_len(&self) -> usize {
        LIST_HEADER + 4 * self.count
    }

    /// Bytes of one passage's codes: `α` (f16), then the code bytes.
    pub fn code_row_bytes(&self) -> usize {
        if self.code_bytes == 0 {
            0
        } else {
            2 + self.code_bytes
        }
    }

    /// The end of the codes: a query's fetch of a list is `0..codes_end`.
    pub fn codes_end(&self) -> usize {
        self.directory_len() + self.count * self.code_row_bytes()
    }

    pub fn row_bytes(&self) -> usize {
        self.encoding.row_bytes(self.dims)
    }

    pub fn file_len(&self) -> usize {
        self.codes_end() + self.count * self.row_bytes()
    }

    /// Whether the regions' offsets can be computed at all: a file the part table could
    /// record (under 4 GiB), whatever the width of `usize` (wasm32's is 32 bits).
    pub fn fits(&self) -> bool {
        let count = self.count as u64;
        let code_row = if self.code_bytes == 0 {
            0
        } else {
            2 + self.code_bytes as u64
        };
        let row = self.encoding.row_bytes(self.dims.min(1 << 20)) as u64;
        self.dims <= MAX_DIMS && 36 + count * (4 + code_row + row) <= u64::from(u32::MAX)
    }

    /// The bytes of rows `rows` of the list.
    pub fn rows_bytes(&self, rows: Range<usize>) -> Range<usize> {
        let at = self.codes_end();
        at + rows.start * self.row_bytes()..at + rows.end * self.row_bytes()
    }

    /// The rows a byte range holds exactly, if it holds whole rows.
    pub fn rows_in(&self, bytes: Range<usize>) -> Option<Range<usize>> {
        let at = self.codes_end();
        let rb = self.row_bytes();
        let (start, end) = (bytes.start.checked_sub(at)?, bytes.end.checked_sub(at)?);
        (start % rb == 0 && end % rb == 0 && start < end && end / rb <= self.count)
            .then(|| start / rb..end / rb)
    }
}

/// A list's passages as stored: `α` and codes (empty without codes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListCodes {
    pub alphas: Vec<f32>,
    /// `m` bytes a passage, row-major.
    pub codes: Vec<u8>,
}

/// Serializes a list: its rows and, for an index of several lists, each row's `α` and codes.
pub fn list_to_bytes(
    encoding: VectorEncoding,
    dims: usize,
    rows: &[EncodedRow],
    codes: Option<(usize, &ListCodes)>,
) -> Vec<u8> {
    let layout = ListLayout {
        encoding,
        dims,
        count: rows.len(),
        code_bytes: codes.map_or(0, |(m, _)| m),
    };
    let mut code_region = Vec::with_capacity(layout.count * layout.code_row_bytes());
    if let Some((m, c)) = codes {
        for (alpha, row) in c.alphas.iter().zip(c.codes.chunks_exact(m)) {
            code_region.extend_from_slice(&half::f16::from_f32(*alpha).to_le_bytes());
            code_region.extend_from_slice(row);
        }
    }
    let stored: Vec<Vec<u8>> = rows.iter().map(|r| r.stored_bytes(encoding)).collect();
    let mut out = Vec::with_capacity(layout.file_len());
    out.extend_from_slice(LIST_MAGIC);
    out.extend_from_slice(&LIST_VERSION.to_le_bytes());
    out.push(encoding.code());
    out.push(0);
    out.extend_from_slice(&(dims as u32).to_le_bytes());
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    out.extend_from_slice(&(layout.code_bytes as u16).to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_128(&code_region).to_be_bytes());
    for row in &stored {
        out.extend_from_slice(&piece_checksum(row).to_le_bytes());
    }
    out.extend_from_slice(&code_region);
    for row in &stored {
        out.extend_from_slice(row);
    }
    out
}

/// A list's directory, parsed (after the part table's checksum vouched for its bytes).
#[derive(Debug, Clone)]
pub struct ListDirectory {
    pub layout: ListLayout,
    codes_xxh3: u128,
    row_checksums: Vec<u32>,
}

impl ListDirectory {
    /// Parses the directory at the start of `bytes` (the directory, or more of the file):
    /// it must describe `count` passages of the index's `encoding`, `dims` and `code_bytes`.
    pub fn from_bytes(file: &str, bytes: &[u8], want: ListLayout) -> Result<Self> {
        check_header_version(
            file,
            bytes,
            LIST_MAGIC,
            LIST_HEADER,
            LIST_VERSION,
            "vector list",
        )?;
        let encoding = VectorEncoding::from_code(bytes[6]);
        let layout = ListLayout {
            encoding: encoding.unwrap_or(want.encoding),
            dims: u32_at(bytes, 8) as usize,
            count: u32_at(bytes, 12) as usize,
            code_bytes: u16::from_le_bytes([bytes[16], bytes[17]]) as usize,
        };
        // Refused before anything is sized by it (`fuzz/`, target vector_list: rows of 0
        // bytes).
        if layout.dims == 0 || layout.dims > MAX_DIMS {
            return Err(corrupt(file, format!("dims is {}", layout.dims)));
        }
        if !layout.fits() {
            return Err(corrupt(
                file,
                format!("{} vectors do not fit in a file", layout.count),
            ));
        }
        if encoding.is_none() || layout != want {
            return Err(corrupt(
                file,
                format!(
                    "holds {} vectors of {} dims, encoding code {}, {} code bytes; the index says {} of {} dims, {:?}, {} code bytes",
                    layout.count, layout.dims, bytes[6], layout.code_bytes,
                    want.count, want.dims, want.encoding, want.code_bytes
                ),
            ));
        }
        if bytes.len() < layout.directory_len() {
            return Err(corrupt(
                file,
                format!(
                    "{} bytes, shorter than its {}-byte directory",
                    bytes.len(),
                    layout.directory_len()
                ),
            ));
        }
        let mut hash = [0u8; 16];
        hash.copy_from_slice(&bytes[20..36]);
        let row_checksums = bytes[LIST_HEADER..layout.directory_len()]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(ListDirectory {
            layout,
            codes_xxh3: u128::from_be_bytes(hash),
            row_checksums,
        })
    }

    /// The codes region (`directory_len..codes_end` of the file), checked against the
    /// directory and against the codebook's `k` centroids a slice.
    pub fn codes(&self, file: &str, bytes: &[u8], k: usize) -> Result<ListCodes> {
        let l = &self.layout;
        let want = l.codes_end() - l.directory_len();
        if bytes.len() != want {
            return Err(corrupt(
                file,
                format!("codes of {} bytes, the directory says {want}", bytes.len()),
            ));
        }
        if xxhash_rust::xxh3::xxh3_128(bytes) != self.codes_xxh3 {
            return Err(corrupt(
                file,
                "its codes do not match its directory's checksum",
            ));
        }
        let mut out = ListCodes {
            alphas: Vec::with_capacity(l.count),
            codes: Vec::with_capacity(l.count * l.code_bytes),
        };
        for row in bytes.chunks_exact(l.code_row_bytes().max(1)) {
            let alpha = half::f16::from_le_bytes([row[0], row[1]]).to_f32();
            if !alpha.is_finite() {
                return Err(corrupt(file, "a passage's α is a NaN or infinity"));
            }
            out.alphas.push(alpha);
            out.codes.extend_from_slice(&row[2..]);
        }
        if k < CODES_PER_SLICE && out.codes.iter().any(|&c| usize::from(c) >= k) {
            return Err(corrupt(
                file,
                format!("a code past the codebook's {k} centroids"),
            ));
        }
        Ok(out)
    }

    /// Rows `rows` of the list from their bytes, each checked against its checksum.
    pub fn rows(&self, file: &str, rows: Range<usize>, bytes: &[u8]) -> Result<VectorShard> {
        let l = &self.layout;
        let rb = l.row_bytes();
        if rows.end > l.count || bytes.len() != rows.len() * rb {
            return Err(corrupt(
                file,
                format!(
                    "{} bytes for rows {}..{} of {} ({rb} bytes each)",
                    bytes.len(),
                    rows.start,
                    rows.end,
                    l.count
                ),
            ));
        }
        for (i, row) in rows.clone().zip(bytes.chunks_exact(rb)) {
            if piece_checksum(row) != self.row_checksums[i] {
                return Err(corrupt(
                    file,
                    format!("row {i} does not match its checksum"),
                ));
            }
        }
        VectorShard::from_row_bytes(file, l.encoding, l.dims, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<EncodedRow> {
        [[0.5f32, -1.0, 0.25], [0.0, 0.0, 0.0], [3.0, 2.0, -1.5]]
            .iter()
            .map(|v| EncodedRow::encode(VectorEncoding::Int8, v))
            .collect()
    }

    fn codes() -> ListCodes {
        ListCodes {
            alphas: vec![0.5, 0.0, -1.25],
            codes: vec![1, 2, 3, 4, 5, 6],
        }
    }

    fn layout(code_bytes: usize) -> ListLayout {
        ListLayout {
            encoding: VectorEncoding::Int8,
            dims: 3,
            count: 3,
            code_bytes,
        }
    }

    #[test]
    fn lists_read_back_region_by_region() {
        let bytes = list_to_bytes(VectorEncoding::Int8, 3, &rows(), Some((2, &codes())));
        let l = layout(2);
        assert_eq!(bytes.len(), l.file_len());
        assert_eq!(
            (l.directory_len(), l.codes_end(), l.file_len()),
            (48, 60, 81)
        );
        let dir = ListDirectory::from_bytes("v", &bytes[..l.directory_len()], l).unwrap();
        let codes_back = dir
            .codes("v", &bytes[l.directory_len()..l.codes_end()], 256)
            .unwrap();
        assert_eq!(codes_back, codes());
        // Row 2 alone, as a range request brings it.
        let two = dir.rows("v", 2..3, &bytes[l.rows_bytes(2..3)]).unwrap();
        assert_eq!(two.row(0), rows()[2]);
        assert_eq!(l.rows_in(l.rows_bytes(1..3)), Some(1..3));
        assert_eq!(l.rows_in(61..67), None, "not whole rows");
        // An index of one list: no codes.
        let plain = list_to_bytes(VectorEncoding::Int8, 3, &rows(), None);
        assert_eq!(plain.len(), layout(0).file_len());
        let dir = ListDirectory::from_bytes("v", &plain, layout(0)).unwrap();
        let all = dir
            .rows("v", 0..3, &plain[layout(0).rows_bytes(0..3)])
            .unwrap();
        assert_eq!(all.count, 3);
    }

    #[test]
    fn damaged_lists_are_data_corruption() {
        let bytes = list_to_bytes(VectorEncoding::Int8, 3, &rows(), Some((2, &codes())));
        let l = layout(2);
        let dir = ListDirectory::from_bytes("v", &bytes, l).unwrap();
        fn err<T>(r: Result<T>) -> String {
            r.map(|_| ()).unwrap_err().to_string()
        }
        assert_eq!(
            err(ListDirectory::from_bytes("v", &bytes, layout(3))),
            "data corruption in v: holds 3 vectors of 3 dims, encoding code 2, 2 code bytes; the index says 3 of 3 dims, Int8, 3 code bytes"
        );
        let mut no_dims = bytes.clone();
        no_dims[8..12].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            err(ListDirectory::from_bytes("v", &no_dims, layout(2))),
            "data corruption in v: dims is 0"
        );
        assert_eq!(
            err(ListDirectory::from_bytes("v", &bytes[..40], l)),
            "data corruption in v: 40 bytes, shorter than its 48-byte directory"
        );
        let mut bad = bytes.clone();
        bad[50] ^= 1;
        assert_eq!(
            err(dir.codes("v", &bad[48..60], 256)),
            "data corruption in v: its codes do not match its directory's checksum"
        );
        assert_eq!(
            err(dir.codes("v", &bytes[48..60], 4)),
            "data corruption in v: a code past the codebook's 4 centroids"
        );
        let mut bad = bytes.clone();
        bad[l.rows_bytes(1..2).start] ^= 1;
        assert_eq!(
            err(dir.rows("v", 1..2, &bad[l.rows_bytes(1..2)])),
            "data corruption in v: row 1 does not match its checksum"
        );
        assert_eq!(
            err(dir.rows("v", 2..4, &bytes[l.rows_bytes(2..3)])),
            "data corruption in v: 7 bytes for rows 2..4 of 3 (7 bytes each)"
        );
    }
}
