//! The index: the format the native indexer writes and the browser reads — `manifest.json`
//! ([`manifest`]), vector shards ([`vectors`]), passage shards ([`passages`]) — and the one
//! [`loader`] both sides read it with. Pure (bytes in, bytes out) so both share one
//! implementation. Every reader validates sizes before touching data and reports damage as
//! [`Error::DataCorruption`] naming the file. The layout is specified in `docs/format.md`;
//! change both together.

pub mod codebook;
pub mod ids;
pub mod lists;
pub mod loader;
pub mod manifest;
pub mod parts;
pub mod passages;
pub mod terms;
pub mod vectors;

pub use codebook::Codebook;
pub use lists::{ListCodes, ListDirectory, ListLayout};
pub use loader::{IndexLoader, LoadedIndex};
pub use manifest::{IndexManifest, IndexModel};
pub use parts::{Part, PartEntry, PartTable, PassageRuns};
pub use passages::{PassageRecord, PassageShard};
pub use vectors::{EncodedRow, VectorEncoding, VectorShard};

use crate::error::{Error, Result};

/// Shard format version, in every shard's header.
const SHARD_FORMAT_VERSION: u16 = 1;

pub(crate) fn corrupt(file: &str, reason: impl Into<String>) -> Error {
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
    check_header_version(file, bytes, magic, header_len, SHARD_FORMAT_VERSION, what)
}

/// As [`check_header`], for a file kind with its own version.
fn check_header_version(
    file: &str,
    bytes: &[u8],
    magic: &[u8; 4],
    header_len: usize,
    expected_version: u16,
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
        return Err(corrupt(file, format!("not a dotfind {what} (bad magic)")));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != expected_version {
        return Err(corrupt(
            file,
            format!("format version {version}, this build reads {expected_version}"),
        ));
    }
    Ok(())
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Appends `n` as unsigned LEB128: how passage and id files store lengths and numbers.
fn push_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads an unsigned LEB128 at `*at` and advances past it: `None` when it runs past `bytes`
/// or does not fit in 32 bits (every length and number these files store does).
fn read_varint(bytes: &[u8], at: &mut usize) -> Option<usize> {
    let mut n: u64 = 0;
    for shift in (0..35).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return u32::try_from(n).ok().map(|n| n as usize);
        }
    }
    None
}
