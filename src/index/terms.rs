//! The lexical index: each term's postings with their BM25 impacts, in bucket files
//! (`terms/NNNNN.bin`, a term's bucket chosen by its hash), so that a lexical search fetches
//! the few buckets its query terms sit in instead of every passage's text — the same on-demand
//! shape as the vector lists. Impacts are computed at index time, when the corpus statistics
//! (document frequencies, lengths) are known, so a search only adds numbers; each term's
//! impacts are stored as 8-bit codes of one scale (quantized impacts lose no measurable
//! ranking quality: Crane et al. 2017).

use std::collections::HashMap;

use super::{check_header_version, corrupt, push_varint, read_varint, u32_at};
use crate::error::Result;

const TERMS_MAGIC: &[u8; 4] = b"DFTB";
const TERMS_VERSION: u16 = 1;
const TERMS_HEADER: usize = 12;

/// Term buckets are cut at about this size by default: a query fetches one per distinct term.
pub const BUCKET_BYTES: usize = 16 << 10;
/// Buckets an index has at most: with a million passages' lists, fragments and id buckets,
/// the index stays under static hosts' 20,000-file cap.
pub const MAX_BUCKETS: usize = 1_000;

/// The largest impact a bucket may store (code 255 × its scale). A BM25 impact is at most
/// idf × (k1 + 1), under 50 for any index of up to 2³² passages; a scale beyond this is
/// damage, and would let a sum of impacts overflow to infinity.
pub const MAX_IMPACT: f32 = 10_000.0;

/// A term's key in the buckets: its 64-bit hash (terms themselves are never stored; at a
/// few million distinct terms a collision is a one-in-millions event, and costs one
/// passage a wrong contribution, not an error).
pub fn term_key(term: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(term.as_bytes())
}

/// The bucket of the term with key `key` among `buckets`.
pub fn bucket_of(key: u64, buckets: usize) -> usize {
    (key % buckets.max(1) as u64) as usize
}

/// One term's postings: the passages holding it (ascending) and each one's impact, an 8-bit
/// code of `scale` (impact = code × scale).
#[derive(Debug, Clone, PartialEq)]
pub struct Postings {
    pub scale: f32,
    pub passages: Vec<u32>,
    pub codes: Vec<u8>,
}

impl Postings {
    /// Quantizes `impacts` (passage, impact ≥ 0; passages ascending) to codes of the
    /// largest impact / 255. A passage that holds the term keeps a code ≥ 1, so it is never
    /// told apart from one that does not by rounding alone.
    pub fn quantize(impacts: &[(u32, f32)]) -> Postings {
        let max = impacts.iter().map(|&(_, s)| s).fold(0.0f32, f32::max);
        let scale = if max > 0.0 { max / 255.0 } else { 0.0 };
        let code = |s: f32| {
            if scale > 0.0 {
                (s / scale).round().clamp(1.0, 255.0) as u8
            } else {
                0
            }
        };
        Postings {
            scale,
            passages: impacts.iter().map(|&(p, _)| p).collect(),
            codes: impacts.iter().map(|&(_, s)| code(s)).collect(),
        }
    }

    fn stored_bytes(&self) -> usize {
        8 + 4 + 3 + self.passages.len() * 3
    }
}

/// How many buckets `terms` go into for buckets of about `bucket_bytes`.
pub fn bucket_count<'a>(
    terms: impl IntoIterator<Item = &'a Postings>,
    bucket_bytes: usize,
) -> usize {
    let bytes: usize = terms.into_iter().map(Postings::stored_bytes).sum();
    bytes.div_ceil(bucket_bytes.max(1)).clamp(1, MAX_BUCKETS)
}

/// Every term (key, postings; in a deterministic order) as `buckets` bucket files: each
/// one's bytes and term count.
pub fn write_buckets(terms: &[(u64, Postings)], buckets: usize) -> Vec<(Vec<u8>, usize)> {
    let mut by_bucket: Vec<Vec<&(u64, Postings)>> = vec![Vec::new(); buckets.max(1)];
    for term in terms {
        by_bucket[bucket_of(term.0, buckets)].push(term);
    }
    by_bucket
        .into_iter()
        .map(|entries| {
            let mut out = Vec::new();
            out.extend_from_slice(TERMS_MAGIC);
            out.extend_from_slice(&TERMS_VERSION.to_le_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
            for (key, postings) in &entries {
                out.extend_from_slice(&key.to_le_bytes());
                out.extend_from_slice(&postings.scale.to_le_bytes());
                push_varint(&mut out, postings.passages.len());
                let mut previous = 0u32;
                for (&p, &code) in postings.passages.iter().zip(&postings.codes) {
                    push_varint(&mut out, (p - previous) as usize);
                    out.push(code);
                    previous = p;
                }
            }
            (out, entries.len())
        })
        .collect()
}

/// Parses bucket file `file` of an index of `passages` passages into `into` (term key →
/// postings); returns how many terms it held.
pub fn read_bucket(
    file: &str,
    bytes: &[u8],
    passages: usize,
    into: &mut HashMap<u64, Postings>,
) -> Result<usize> {
    check_header_version(
        file,
        bytes,
        TERMS_MAGIC,
        TERMS_HEADER,
        TERMS_VERSION,
        "term bucket",
    )?;
    let entries = u32_at(bytes, 8) as usize;
    let mut at = TERMS_HEADER;
    let bad = |what: &str| corrupt(file, format!("entry runs past the file ({what})"));
    for _ in 0..entries {
        let head = bytes.get(at..at + 12).ok_or_else(|| bad("term"))?;
        let key = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
        let scale = f32::from_le_bytes(head[8..].try_into().unwrap_or_default());
        if !(0.0..=MAX_IMPACT / 255.0).contains(&scale) {
            return Err(corrupt(
                file,
                format!("a term's impact scale is {scale} (impacts go from 0 to {MAX_IMPACT})"),
            ));
        }
        at += 12;
        let count = read_varint(bytes, &mut at).ok_or_else(|| bad("posting count"))?;
        // Each posting takes at least two bytes: a count beyond the rest is damage.
        if count > (bytes.len() - at) / 2 {
            return Err(bad("postings"));
        }
        let mut postings = Postings {
            scale,
            passages: Vec::with_capacity(count),
            codes: Vec::with_capacity(count),
        };
        let mut passage = 0usize;
        for i in 0..count {
            let delta = read_varint(bytes, &mut at).ok_or_else(|| bad("passage number"))?;
            if i > 0 && delta == 0 {
                return Err(corrupt(file, "a term lists a passage twice"));
            }
            passage = passage.saturating_add(delta);
            if passage >= passages {
                return Err(corrupt(
                    file,
                    format!("passage {passage} listed, the index holds {passages}"),
                ));
            }
            let code = *bytes.get(at).ok_or_else(|| bad("impact"))?;
            at += 1;
            postings.passages.push(passage as u32);
            postings.codes.push(code);
        }
        if into.insert(key, postings).is_some() {
            return Err(corrupt(file, "a term is listed twice"));
        }
    }
    if at != bytes.len() {
        return Err(corrupt(file, "bytes after the last entry"));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms() -> Vec<(u64, Postings)> {
        vec![
            (
                term_key("cat"),
                Postings::quantize(&[(0, 1.0), (3, 0.4), (200, 0.001)]),
            ),
            (term_key("東"), Postings::quantize(&[(1, 2.5)])),
            (term_key("mat"), Postings::quantize(&[(0, 0.7), (1, 0.7)])),
        ]
    }

    #[test]
    fn buckets_hold_every_term_with_its_impacts() {
        let terms = terms();
        assert_eq!(terms[0].1.codes, vec![255, 102, 1]);
        for buckets in [1, 2, 5] {
            let files = write_buckets(&terms, buckets);
            assert_eq!(files.len(), buckets);
            let mut all = HashMap::new();
            for (i, (bytes, count)) in files.iter().enumerate() {
                let n = read_bucket(&format!("terms/{i:05}.bin"), bytes, 201, &mut all).unwrap();
                assert_eq!(n, *count);
            }
            assert_eq!(all.len(), 3);
            for (key, postings) in &terms {
                assert_eq!(&all[key], postings);
                // Each term sits in the bucket its key names.
                let mut only = HashMap::new();
                read_bucket("x", &files[bucket_of(*key, buckets)].0, 201, &mut only).unwrap();
                assert!(only.contains_key(key));
            }
        }
    }

    #[test]
    fn damaged_buckets_are_data_corruption() {
        let (file, _) = write_buckets(&terms(), 1).remove(0);
        let err = |b: &[u8], n| {
            read_bucket("terms/00000.bin", b, n, &mut HashMap::new())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(&file, 200),
            "data corruption in terms/00000.bin: passage 200 listed, the index holds 200"
        );
        assert!(err(&file[..file.len() - 1], 201)
            .starts_with("data corruption in terms/00000.bin: entry runs past the file"));
        let mut huge = file.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(err(&huge, 201).starts_with("data corruption in terms/00000.bin: entry runs past"));
        let mut trailing = file.clone();
        trailing.push(0);
        assert_eq!(
            err(&trailing, 201),
            "data corruption in terms/00000.bin: bytes after the last entry"
        );
        let mut nan = file.clone();
        nan[20..24].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(
            err(&nan, 201),
            "data corruption in terms/00000.bin: a term's impact scale is NaN (impacts go from 0 to 10000)"
        );
        // Found by fuzzing: a huge scale made a sum of impacts infinite.
        let mut huge = file.clone();
        huge[20..24].copy_from_slice(&f32::MAX.to_le_bytes());
        assert!(err(&huge, 201).starts_with(
            "data corruption in terms/00000.bin: a term's impact scale is 340282350000000000000000000000000000000"
        ));
    }
}
