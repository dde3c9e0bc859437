//! Token embeddings apart from the graph, fetched a chunk at a time.
//!
//! The word-embedding table is most of a small encoder's weights (52 % of MiniLM-L6's),
//! yet a query reads 10–30 of its 30k rows. A bundle may therefore keep the table out of
//! its graph, which then takes the rows of a text's tokens as an input ([`TOKEN_ROWS`]),
//! and store it as chunk files of `rows_per_chunk` consecutive token ids
//! (`token-embeddings/00042.bin`), each row in the bundle's [`ValueEncoding`]. A browser
//! fetches the chunks a query needs; each is checked against its xxh3-128 in
//! `token-embeddings/checksums.bin` (16 bytes per chunk, in order), a file the descriptor
//! vouches for like every other. A row that is not loaded is an error, never a zero vector.

use serde::{Deserialize, Serialize};

use crate::checksum::xxh3_128_hex;
use crate::error::{Error, Result};
use crate::model::storage::ValueEncoding;

/// Name of the graph input that takes the token rows, in order of first use.
pub const TOKEN_ROWS: &str = "token_rows";
/// Folder of the chunk files, inside the bundle.
pub const TOKEN_DIR: &str = "token-embeddings";
/// The chunks' checksums: 16 bytes (xxh3-128, big-endian) per chunk.
pub const CHECKSUMS_FILE: &str = "token-embeddings/checksums.bin";
const CHECKSUM_BYTES: usize = 16;

/// How a bundle stores its token-embedding table (the descriptor's `token_embeddings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenTableSpec {
    pub vocab_size: usize,
    pub dims: usize,
    pub encoding: ValueEncoding,
    /// Token ids per chunk file: the unit a browser fetches and caches.
    pub rows_per_chunk: usize,
}

impl TokenTableSpec {
    /// Checks the numbers agree (a row fits the encoding; sizes in reason); `Err` is the reason.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.vocab_size == 0 || self.dims == 0 || self.rows_per_chunk == 0 {
            return Err(
                "token_embeddings: vocab_size, dims and rows_per_chunk must be positive".into(),
            );
        }
        if self.vocab_size > 1 << 24
            || self.rows_per_chunk > 1 << 20
            || self.dims > crate::model::MAX_DIMS
        {
            return Err("token_embeddings: sizes beyond any BERT vocabulary".into());
        }
        match self.encoding.encoded_len(self.dims) {
            Some(_) => Ok(()),
            None => Err(format!(
                "token_embeddings: rows of {} values cannot be stored as {}",
                self.dims, self.encoding
            )),
        }
    }

    pub fn chunk_count(&self) -> usize {
        self.vocab_size.div_ceil(self.rows_per_chunk)
    }

    /// The chunk file holding token `id`'s row, relative to the bundle.
    pub fn chunk_path(chunk: usize) -> String {
        format!("{TOKEN_DIR}/{chunk:05}.bin")
    }

    fn row_bytes(&self) -> usize {
        self.encoding.encoded_len(self.dims).unwrap_or(0)
    }

    /// Token ids in `chunk`.
    fn rows_in(&self, chunk: usize) -> std::ops::Range<usize> {
        let start = chunk * self.rows_per_chunk;
        start..(start + self.rows_per_chunk).min(self.vocab_size)
    }

    /// A `[vocab_size, dims]` table as the checksums file and the chunk files, in order.
    pub fn encode(&self, table: &[f32]) -> std::result::Result<(Vec<u8>, Vec<Vec<u8>>), String> {
        self.validate()?;
        if table.len() != self.vocab_size * self.dims {
            return Err(format!(
                "token table of {} values for {} × {}",
                table.len(),
                self.vocab_size,
                self.dims
            ));
        }
        let chunks: Vec<Vec<u8>> = (0..self.chunk_count())
            .map(|c| {
                let rows = self.rows_in(c);
                table[rows.start * self.dims..rows.end * self.dims]
                    .chunks_exact(self.dims)
                    .flat_map(|row| self.encoding.encode(row).unwrap_or_default())
                    .collect()
            })
            .collect();
        let checksums = chunks
            .iter()
            .flat_map(|c| xxhash_rust::xxh3::xxh3_128(c).to_be_bytes())
            .collect();
        Ok((checksums, chunks))
    }
}

/// A bundle's token table, as much of it as was loaded: chunks are added (and verified) as
/// they arrive, rows are decoded when a text needs them.
#[derive(Debug)]
pub struct TokenTable {
    spec: TokenTableSpec,
    checksums: Vec<String>,
    chunks: Vec<Option<Vec<u8>>>,
}

impl TokenTable {
    /// An empty table for `spec`, with the chunks' checksums (the verified checksums file).
    pub fn new(spec: TokenTableSpec, checksums_file: &[u8]) -> Result<Self> {
        spec.validate().map_err(Error::InvalidInput)?;
        let count = spec.chunk_count();
        if checksums_file.len() != count * CHECKSUM_BYTES {
            return Err(Error::DataCorruption {
                file: CHECKSUMS_FILE.into(),
                reason: format!(
                    "{} bytes, {count} chunks need {}",
                    checksums_file.len(),
                    count * CHECKSUM_BYTES
                ),
            });
        }
        let checksums = checksums_file
            .chunks_exact(CHECKSUM_BYTES)
            .map(|c| c.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        Ok(Self {
            spec,
            checksums,
            chunks: vec![None; count],
        })
    }

    pub fn spec(&self) -> &TokenTableSpec {
        &self.spec
    }

    /// The chunk of token `id`; an id outside the vocabulary is an error.
    fn chunk_of(&self, id: i64) -> Result<usize> {
        usize::try_from(id)
            .ok()
            .filter(|&id| id < self.spec.vocab_size)
            .map(|id| id / self.spec.rows_per_chunk)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "token id {id} is outside the vocabulary of {} tokens",
                    self.spec.vocab_size
                ))
            })
    }

    /// The chunks holding `ids` that are not loaded yet, each once, in order.
    pub fn missing_chunks(&self, ids: &[i64]) -> Result<Vec<usize>> {
        let mut missing = Vec::new();
        for &id in ids {
            let chunk = self.chunk_of(id)?;
            if self.chunks[chunk].is_none() {
                missing.push(chunk);
            }
        }
        missing.sort_unstable();
        missing.dedup();
        Ok(missing)
    }

    /// Adds chunk `chunk` after checking its size and checksum (a damaged download is an
    /// error naming the file, and leaves the table as it was).
    pub fn add_chunk(&mut self, chunk: usize, bytes: Vec<u8>) -> Result<()> {
        let path = TokenTableSpec::chunk_path(chunk);
        let Some(expected) = self.checksums.get(chunk) else {
            return Err(Error::InvalidInput(format!(
                "{path}: the table has {} chunks",
                self.chunks.len()
            )));
        };
        let size = self.spec.rows_in(chunk).len() * self.spec.row_bytes();
        if bytes.len() != size {
            return Err(Error::DataCorruption {
                file: path,
                reason: format!("{} bytes, a chunk of this table has {size}", bytes.len()),
            });
        }
        let actual = xxh3_128_hex(&bytes);
        if &actual != expected {
            return Err(Error::ChecksumMismatch {
                file: path,
                expected: expected.clone(),
                actual,
            });
        }
        self.chunks[chunk] = Some(bytes);
        Ok(())
    }

    /// The chunk number of a path [`TokenTableSpec::chunk_path`] names, if it is one.
    pub fn chunk_at(&self, path: &str) -> Option<usize> {
        let number = path
            .strip_prefix(TOKEN_DIR)?
            .strip_prefix('/')?
            .strip_suffix(".bin")?;
        let chunk: usize = number.parse().ok()?;
        (number.len() >= 5 && chunk < self.chunks.len()).then_some(chunk)
    }

    /// The rows of `ids`, one after another (`ids.len() × dims` values).
    pub fn rows(&self, ids: &[i64]) -> Result<Vec<f32>> {
        let dims = self.spec.dims;
        let row_bytes = self.spec.row_bytes();
        let mut out = vec![0f32; ids.len() * dims];
        for (&id, row) in ids.iter().zip(out.chunks_exact_mut(dims)) {
            let chunk = self.chunk_of(id)?;
            let Some(bytes) = &self.chunks[chunk] else {
                return Err(Error::TokensNotLoaded {
                    file: TokenTableSpec::chunk_path(chunk),
                });
            };
            let at = (id as usize - chunk * self.spec.rows_per_chunk) * row_bytes;
            self.spec
                .encoding
                .decode_into(&bytes[at..at + row_bytes], row)
                .map_err(|reason| Error::DataCorruption {
                    file: TokenTableSpec::chunk_path(chunk),
                    reason,
                })?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TokenTableSpec {
        TokenTableSpec {
            vocab_size: 10,
            dims: 4,
            encoding: ValueEncoding::F32,
            rows_per_chunk: 4,
        }
    }

    fn table() -> Vec<f32> {
        (0..40).map(|i| i as f32).collect()
    }

    #[test]
    fn rows_come_back_once_their_chunk_is_added() {
        let (checksums, chunks) = spec().encode(&table()).unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(
            chunks[2].len(),
            2 * 4 * 4,
            "the last chunk holds the last two rows"
        );
        let mut t = TokenTable::new(spec(), &checksums).unwrap();
        assert_eq!(t.missing_chunks(&[9, 1, 2, 5]).unwrap(), vec![0, 1, 2]);
        assert_eq!(
            t.rows(&[5]).unwrap_err().to_string(),
            "token-embeddings/00001.bin: not loaded (token embeddings are fetched on demand, \
             before a text is encoded)"
        );
        t.add_chunk(1, chunks[1].clone()).unwrap();
        t.add_chunk(2, chunks[2].clone()).unwrap();
        assert_eq!(t.missing_chunks(&[9, 1, 2, 5]).unwrap(), vec![0]);
        assert_eq!(
            t.rows(&[9, 5]).unwrap(),
            vec![36., 37., 38., 39., 20., 21., 22., 23.]
        );
        assert_eq!(t.chunk_at("token-embeddings/00002.bin"), Some(2));
        assert_eq!(t.chunk_at("token-embeddings/00003.bin"), None);
        assert_eq!(t.chunk_at("token-embeddings/2.bin"), None);
    }

    #[test]
    fn damaged_chunks_and_bad_ids_are_named() {
        let (checksums, chunks) = spec().encode(&table()).unwrap();
        let mut t = TokenTable::new(spec(), &checksums).unwrap();
        let err = t.add_chunk(0, chunks[0][..10].to_vec()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "data corruption in token-embeddings/00000.bin: 10 bytes, a chunk of this table has 64"
        );
        let mut tampered = chunks[0].clone();
        tampered[3] ^= 1;
        let err = t.add_chunk(0, tampered).unwrap_err().to_string();
        assert!(
            err.starts_with("token-embeddings/00000.bin: xxh3-128 mismatch: manifest says "),
            "{err}"
        );
        assert_eq!(
            t.missing_chunks(&[10]).unwrap_err().to_string(),
            "invalid input: token id 10 is outside the vocabulary of 10 tokens"
        );
        let err = TokenTable::new(spec(), &checksums[..40]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "data corruption in token-embeddings/checksums.bin: 40 bytes, 3 chunks need 48"
        );
    }
}
