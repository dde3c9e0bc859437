//! Indexing on many machines: `dotfind index --part i/N` encodes one share of a corpus (the
//! i-th of N runs of passages) into a part file; `dotfind index --merge DIR` joins the N parts
//! into exactly the index one run writes. Encoding is the expensive step and parts need no
//! coordination; what depends on every vector (the lists' k-means, passage order, fragments)
//! happens once, in the merge, as in a single run — so the bytes are the same by construction.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::index_writer::{temp_folder_beside, IndexOptions, IndexStats, Inputs};
use crate::checksum::FileEntry;
use crate::error::{Error, Result};
use crate::index::{EncodedRow, PassageRecord, VectorEncoding, VectorShard};

/// Format of a part's descriptor.
pub const PART_FORMAT: &str = "dotfind-part/1";

/// Which share of a corpus a run encodes: part `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSpec {
    pub index: usize,
    pub count: usize,
}

impl FromStr for PartSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("--part takes i/N with 0 ≤ i < N (e.g. 0/4), not {s:?}");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(PartSpec { index, count })
    }
}

impl PartSpec {
    /// The passages of this part among `n`: equal runs, in corpus order.
    pub fn share(self, n: usize) -> Range<usize> {
        n * self.index / self.count..n * (self.index + 1) / self.count
    }

    fn stem(self) -> String {
        format!("part-{:05}-of-{:05}", self.index, self.count)
    }
}

/// What a part file holds, beside it as `part-IIIII-of-NNNNN.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartDescriptor {
    format: String,
    part: usize,
    parts: usize,
    /// The passages it holds: `first .. first + count` of the corpus.
    first: usize,
    count: usize,
    /// Identifies the corpus read into passages: every part must come from the same one.
    corpus_sha256: String,
    /// The bundle whose outputs the vectors are.
    passage_bundle_sha256: String,
    encoding: VectorEncoding,
    /// Passages encoded by this part's run (the others were reused).
    encoded: usize,
    vectors: FileEntry,
}

/// sha256 over every field of every record, length-prefixed, in order.
fn corpus_sha256(records: &[PassageRecord]) -> String {
    let mut h = Sha256::new();
    for r in records {
        for field in [&r.id, &r.doc_id, &r.url, &r.title, &r.heading, &r.text] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field.as_bytes());
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// What a part run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartStats {
    pub passages: Range<usize>,
    pub encoded: usize,
    pub file: PathBuf,
}

/// Encodes part `spec` of the corpus at `input` into `dir` (created if needed), reusing the
/// stored vectors of the index at `reuse`, when given, for unchanged passages.
pub fn encode_part(
    model: &Path,
    input: &Path,
    dir: &Path,
    spec: PartSpec,
    reuse: Option<&Path>,
    opts: &IndexOptions,
) -> Result<PartStats> {
    let inputs = Inputs::read(model, input, opts)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let range = spec.share(inputs.records.len());
    let (rows, encoded) = inputs.vectors(range.clone(), reuse, opts)?;
    let dims = inputs.bundle.manifest.hidden_size;
    let vectors = VectorShard::to_bytes(opts.encoding, dims, &rows);
    let descriptor = PartDescriptor {
        format: PART_FORMAT.into(),
        part: spec.index,
        parts: spec.count,
        first: range.start,
        count: range.len(),
        corpus_sha256: corpus_sha256(&inputs.records),
        passage_bundle_sha256: inputs.encoded_by().to_string(),
        encoding: opts.encoding,
        encoded,
        vectors: FileEntry::of(&vectors),
    };
    let file = dir.join(format!("{}.bin", spec.stem()));
    write_atomically(&file, &vectors)?;
    let json =
        serde_json::to_vec_pretty(&descriptor).map_err(|e| Error::InvalidInput(e.to_string()))?;
    write_atomically(&dir.join(format!("{}.json", spec.stem())), &json)?;
    Ok(PartStats {
        passages: range,
        encoded,
        file,
    })
}

/// Reads part `part`'s descriptor and vectors from `dir`, checked against what this run read.
fn read_part(
    dir: &Path,
    spec: PartSpec,
    corpus: &str,
    encoded_by: &str,
    n: usize,
    encoding: VectorEncoding,
) -> Result<(Vec<EncodedRow>, usize)> {
    let json_path = dir.join(format!("{}.json", spec.stem()));
    let name = json_path.display().to_string();
    let text = std::fs::read(&json_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::InvalidInput(format!(
                "{}: part {} of {} is missing ({name})",
                dir.display(),
                spec.index,
                spec.count
            ))
        } else {
            Error::io(&json_path, e)
        }
    })?;
    let d: PartDescriptor = serde_json::from_slice(&text).map_err(|e| Error::InvalidManifest {
        file: name.clone(),
        reason: format!("not a part descriptor: {e}"),
    })?;
    let mismatch = |what: &str| Error::InvalidManifest {
        file: name.clone(),
        reason: format!("{what} differs from this run's (parts of another index?)"),
    };
    if d.format != PART_FORMAT {
        return Err(mismatch("format"));
    }
    if d.corpus_sha256 != corpus {
        return Err(mismatch("the corpus"));
    }
    if d.passage_bundle_sha256 != encoded_by {
        return Err(mismatch("the passage bundle"));
    }
    if d.encoding != encoding {
        return Err(mismatch("the vector encoding"));
    }
    if (d.part, d.parts) != (spec.index, spec.count)
        || (d.first..d.first + d.count) != spec.share(n)
    {
        return Err(mismatch("the passage range"));
    }
    let bin = dir.join(format!("{}.bin", spec.stem()));
    let bytes = std::fs::read(&bin).map_err(|e| Error::io(&bin, e))?;
    let bin_name = bin.display().to_string();
    d.vectors.verify(&bin_name, &bytes)?;
    let shard = VectorShard::from_bytes(&bin_name, &bytes)?;
    if shard.count != d.count || shard.encoding != encoding {
        return Err(mismatch("the stored vectors"));
    }
    Ok(((0..shard.count).map(|i| shard.row(i)).collect(), d.encoded))
}

/// How many parts `dir` holds, from its descriptors' names (all must agree on N).
fn part_count(dir: &Path) -> Result<usize> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut counts = std::collections::BTreeSet::new();
    for entry in entries {
        let name = entry.map_err(|e| Error::io(dir, e))?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_suffix(".json")
            .and_then(|stem| stem.strip_prefix("part-"))
            .and_then(|rest| rest.split_once("-of-"))
            .and_then(|(_, n)| n.parse::<usize>().ok())
        {
            counts.insert(n);
        }
    }
    match (counts.len(), counts.first()) {
        (1, Some(&n)) => Ok(n),
        (0, _) => Err(Error::InvalidInput(format!(
            "{}: no part files (part-IIIII-of-NNNNN.json) to merge",
            dir.display()
        ))),
        _ => Err(Error::InvalidInput(format!(
            "{}: parts of different splits ({counts:?} parts): keep one run's",
            dir.display()
        ))),
    }
}

/// Joins the parts in `dir` into the index of `input` at `out`: the bytes one run writes.
pub fn merge_parts(
    model: &Path,
    input: &Path,
    dir: &Path,
    out: &Path,
    opts: &IndexOptions,
) -> Result<IndexStats> {
    let inputs = Inputs::read(model, input, opts)?;
    let n = inputs.records.len();
    let corpus = corpus_sha256(&inputs.records);
    let parts = part_count(dir)?;
    let mut rows = Vec::with_capacity(n);
    let mut encoded = 0;
    for index in 0..parts {
        let spec = PartSpec {
            index,
            count: parts,
        };
        let (part_rows, part_encoded) =
            read_part(dir, spec, &corpus, inputs.encoded_by(), n, opts.encoding)?;
        rows.extend(part_rows);
        encoded += part_encoded;
    }
    let tmp = temp_folder_beside(out)?;
    inputs.write(&tmp, out, &rows, encoded, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_corpus_in_order() {
        for n in [0, 1, 7, 24, 1000] {
            for count in [1, 2, 3, 8] {
                let ranges: Vec<_> = (0..count)
                    .map(|index| PartSpec { index, count }.share(n))
                    .collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[count - 1].end, n);
                assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
            }
        }
        assert_eq!(
            "2/8".parse::<PartSpec>().unwrap(),
            PartSpec { index: 2, count: 8 }
        );
        for bad in ["8/8", "1/0", "a/2", "3", ""] {
            assert_eq!(
                bad.parse::<PartSpec>().unwrap_err(),
                format!("--part takes i/N with 0 ≤ i < N (e.g. 0/4), not {bad:?}")
            );
        }
    }
}
