//! The size and checksum every file dotfind writes is recorded with (in a bundle
//! descriptor or an index manifest), and the one place such a file is verified.
//!
//! xxh3-128 is the checksum: it catches truncated downloads, damaged caches and files of
//! two builds mixed together, and hashes a model in milliseconds in the browser's wasm. It
//! is no defence against a hostile host, which also serves the code. sha256 stays where a
//! value names something rather than checks it (a bundle's identity, cache keys).

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// Size and checksum of one file, as recorded when it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub bytes: u64,
    /// xxh3-128 of the file, lower-case hex (32 digits, xxHash's canonical big-endian form).
    pub xxh3_128: String,
}

impl FileEntry {
    /// The entry recording `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        FileEntry {
            bytes: bytes.len() as u64,
            xxh3_128: xxh3_128_hex(bytes),
        }
    }

    /// The entry of a file of `bytes` whose checksum covers only its first `head` bytes (a
    /// vector list's or passage fragment's directory, which vouches for the rest, so that
    /// byte ranges of the file can be checked alone).
    pub fn of_head(bytes: &[u8], head: usize) -> Self {
        FileEntry {
            bytes: bytes.len() as u64,
            xxh3_128: xxh3_128_hex(&bytes[..head]),
        }
    }

    /// Checks `head`, the first bytes of a file recorded by [`FileEntry::of_head`], against
    /// its checksum.
    pub fn verify_head(&self, file: &str, head: &[u8]) -> Result<()> {
        self.verify_checksum(file, &xxh3_128_hex(head))
    }

    /// Checks a file's bytes against this entry: size first (a truncated download is
    /// reported as such, and not hashed), then the checksum. Returns the checksum computed,
    /// so that a caller holding the same bytes under another entry need not hash them again.
    pub fn verify(&self, file: &str, bytes: &[u8]) -> Result<String> {
        self.verify_size(file, bytes.len())?;
        let actual = xxh3_128_hex(bytes);
        self.verify_checksum(file, &actual)?;
        Ok(actual)
    }

    /// As [`FileEntry::verify`], for a file of `len` bytes whose xxh3-128 the caller computed
    /// from its bytes (never one a manifest recorded).
    pub fn verify_computed(&self, file: &str, len: usize, xxh3_128: &str) -> Result<()> {
        self.verify_size(file, len)?;
        self.verify_checksum(file, xxh3_128)
    }

    fn verify_checksum(&self, file: &str, actual: &str) -> Result<()> {
        if actual != self.xxh3_128 {
            return Err(Error::ChecksumMismatch {
                file: file.into(),
                expected: self.xxh3_128.clone(),
                actual: actual.into(),
            });
        }
        Ok(())
    }

    /// The size check alone.
    pub fn verify_size(&self, file: &str, len: usize) -> Result<()> {
        if len as u64 != self.bytes {
            return Err(Error::DataCorruption {
                file: file.into(),
                reason: format!("{len} bytes, manifest says {}", self.bytes),
            });
        }
        Ok(())
    }
}

/// The checksum a directory keeps for each piece it vouches for (a list's row, a fragment's
/// record): the low 32 bits of its xxh3-64.
pub fn piece_checksum(bytes: &[u8]) -> u32 {
    xxhash_rust::xxh3::xxh3_64(bytes) as u32
}

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Lower-case hex xxh3-128 (seed 0), in xxHash's canonical (big-endian) form.
pub fn xxh3_128_hex(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// Expected values from xxHash 0.8.4's C reference (Python `xxhash.xxh3_128_hexdigest`);
    /// the 10240-byte input takes the long-input path (over 240 bytes).
    #[test]
    fn xxh3_128_matches_the_reference_implementation() {
        assert_eq!(xxh3_128_hex(b""), "99aa06d3014798d86001c324468d497f");
        assert_eq!(xxh3_128_hex(b"abc"), "06b05ab6733a618578af5f94892f3950");
        let long: Vec<u8> = (0..40).flat_map(|_| 0..=255u8).collect();
        assert_eq!(xxh3_128_hex(&long), "1cb22534d0d96975c03d2231ab9348f3");
    }

    #[test]
    fn truncated_and_tampered_files_are_named() {
        let entry = FileEntry::of(b"onnx");
        assert_eq!(
            entry.verify("model.graph", b"onnx").unwrap(),
            entry.xxh3_128
        );
        assert_eq!(
            entry.verify("model.graph", b"on").unwrap_err().to_string(),
            "data corruption in model.graph: 2 bytes, manifest says 4"
        );
        assert_eq!(
            entry
                .verify("model.graph", b"onnY")
                .unwrap_err()
                .to_string(),
            format!(
                "model.graph: xxh3-128 mismatch: manifest says {}, file has {}",
                xxh3_128_hex(b"onnx"),
                xxh3_128_hex(b"onnY")
            )
        );
        // A checksum computed elsewhere is compared the same way, size first.
        let wrong = xxh3_128_hex(b"onnY");
        assert_eq!(
            entry
                .verify_computed("model.graph", 4, &wrong)
                .unwrap_err()
                .to_string(),
            entry
                .verify("model.graph", b"onnY")
                .unwrap_err()
                .to_string()
        );
        assert!(entry
            .verify_computed("model.graph", 3, &entry.xxh3_128)
            .is_err());
    }
}
