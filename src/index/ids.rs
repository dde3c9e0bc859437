//! The id directory: passage id, document id and URL → passage numbers, in bucket files
//! (`ids/NNNNN.bin`, a key's bucket chosen by its hash), so that re-ranking a candidate list
//! (a lexical engine's ids or URLs) fetches a few small buckets instead of every passage
//! fragment.

use std::collections::HashMap;

use super::{check_header_version, corrupt, push_varint, read_varint, u32_at, PassageRecord};
use crate::error::Result;

const IDS_MAGIC: &[u8; 4] = b"DFID";
const IDS_VERSION: u16 = 1;
const IDS_HEADER: usize = 12;

/// Id buckets are cut at about this size: a re-ranked candidate fetches its key's bucket.
pub const BUCKET_BYTES: usize = 16 << 10;
/// Buckets an index has at most (static hosts cap a site's files; fragments take most).
pub const MAX_BUCKETS: usize = 2_000;

/// How many buckets the keys of `records` go into.
pub fn bucket_count(records: &[PassageRecord]) -> usize {
    let bytes: usize = records.iter().flat_map(keys_of).map(|k| k.len() + 4).sum();
    bytes.div_ceil(BUCKET_BYTES).clamp(1, MAX_BUCKETS)
}

/// The bucket of `key` among `buckets`.
pub fn bucket_of(key: &str, buckets: usize) -> usize {
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % buckets.max(1) as u64) as usize
}

/// The keys a passage answers to, as re-ranking looks candidates up: its id, its document id
/// (a document scores as its best passage) and its URL, each once.
pub fn keys_of(record: &PassageRecord) -> Vec<&str> {
    let mut keys = vec![record.id.as_str()];
    for key in [record.doc_id.as_str(), record.url.as_str()] {
        if !key.is_empty() && !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// Every key of `records` (passage `n` = `records[n]`) with its passages, as `buckets` bucket
/// files: each one's bytes and key count.
pub fn write_buckets(records: &[PassageRecord], buckets: usize) -> Vec<(Vec<u8>, usize)> {
    let mut maps: Vec<Vec<(&str, Vec<usize>)>> = vec![Vec::new(); buckets.max(1)];
    let mut seen: HashMap<&str, (usize, usize)> = HashMap::new();
    for (n, r) in records.iter().enumerate() {
        for key in keys_of(r) {
            match seen.get(key) {
                Some(&(b, i)) => maps[b][i].1.push(n),
                None => {
                    let b = bucket_of(key, buckets);
                    seen.insert(key, (b, maps[b].len()));
                    maps[b].push((key, vec![n]));
                }
            }
        }
    }
    maps.into_iter()
        .map(|entries| {
            let keys = entries.len();
            let mut out = Vec::new();
            out.extend_from_slice(IDS_MAGIC);
            out.extend_from_slice(&IDS_VERSION.to_le_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
            for (key, passages) in entries {
                push_varint(&mut out, key.len());
                out.extend_from_slice(key.as_bytes());
                push_varint(&mut out, passages.len());
                for p in passages {
                    push_varint(&mut out, p);
                }
            }
            (out, keys)
        })
        .collect()
}

/// Parses bucket file `file` of an index of `passages` passages into `into` (key → passages).
pub fn read_bucket(
    file: &str,
    bytes: &[u8],
    passages: usize,
    into: &mut HashMap<String, Vec<usize>>,
) -> Result<()> {
    check_header_version(file, bytes, IDS_MAGIC, IDS_HEADER, IDS_VERSION, "id bucket")?;
    let entries = u32_at(bytes, 8) as usize;
    let mut at = IDS_HEADER;
    let bad = |what: &str| corrupt(file, format!("entry runs past the file ({what})"));
    for _ in 0..entries {
        let len = read_varint(bytes, &mut at).ok_or_else(|| bad("key length"))?;
        let end = at
            .checked_add(len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| bad("key"))?;
        let key = std::str::from_utf8(&bytes[at..end])
            .map_err(|_| corrupt(file, "a key is not valid UTF-8"))?
            .to_string();
        at = end;
        let count = read_varint(bytes, &mut at).ok_or_else(|| bad("passage count"))?;
        // Each passage number takes at least a byte: a count beyond the rest is damage.
        if count > bytes.len() - at {
            return Err(bad("passages"));
        }
        let mut list = Vec::with_capacity(count);
        for _ in 0..count {
            let p = read_varint(bytes, &mut at).ok_or_else(|| bad("passage number"))?;
            if p >= passages {
                return Err(corrupt(
                    file,
                    format!("passage {p} listed, the index holds {passages}"),
                ));
            }
            list.push(p);
        }
        into.insert(key, list);
    }
    if at != bytes.len() {
        return Err(corrupt(file, "bytes after the last entry"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, doc: &str, url: &str) -> PassageRecord {
        PassageRecord {
            id: id.into(),
            doc_id: doc.into(),
            url: url.into(),
            ..Default::default()
        }
    }

    #[test]
    fn buckets_answer_every_key_with_its_passages() {
        let records = vec![
            rec("a#p0", "a", "/a.html#intro"),
            rec("a#p1", "a", "/a.html#more"),
            rec("b", "b", ""),
            rec("ü", "ü", "/ü"),
        ];
        for buckets in [1, 3, 8] {
            let files = write_buckets(&records, buckets);
            assert_eq!(files.len(), buckets);
            let mut map = HashMap::new();
            for (i, (f, _)) in files.iter().enumerate() {
                read_bucket(&format!("ids/{i:05}.bin"), f, 4, &mut map).unwrap();
            }
            assert_eq!(map["a"], vec![0, 1]);
            assert_eq!(map["a#p1"], vec![1]);
            assert_eq!(map["/a.html#more"], vec![1]);
            assert_eq!(map["b"], vec![2]);
            assert_eq!(map["/ü"], vec![3]);
            assert_eq!(map.len(), 8);
            // Each key sits in the bucket its hash names.
            let mut only = HashMap::new();
            let b = bucket_of("/a.html#more", buckets);
            read_bucket("x", &files[b].0, 4, &mut only).unwrap();
            assert_eq!(only["/a.html#more"], vec![1]);
        }
    }

    #[test]
    fn damaged_buckets_are_data_corruption() {
        let records = vec![rec("a", "a", ""), rec("b", "b", "")];
        let (file, keys) = write_buckets(&records, 1).remove(0);
        assert_eq!(keys, 2);
        let err = |b: &[u8], n| {
            read_bucket("ids/00000.bin", b, n, &mut HashMap::new())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(&file[..file.len() - 1], 2),
            "data corruption in ids/00000.bin: entry runs past the file (passages)"
        );
        assert_eq!(
            err(&file, 1),
            "data corruption in ids/00000.bin: passage 1 listed, the index holds 1"
        );
        let mut huge = file.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(err(&huge, 2).starts_with("data corruption in ids/00000.bin: entry runs past"));
        let mut trailing = file.clone();
        trailing.push(0);
        assert_eq!(
            err(&trailing, 2),
            "data corruption in ids/00000.bin: bytes after the last entry"
        );
    }
}
