//! Corpus → index folder (`manifest.json`, shards, model copy): the offline half of dotfind.
//!
//! Encoding is batch-independent by construction: each passage runs through the model
//! alone (no padding), so its vector depends only on its text and the bundle — dynamic int8
//! quantization takes one activation scale per input tensor, and a shared batch would let
//! neighbours change it. All cores work in parallel, one passage per task. A previous
//! index in the output folder built with the same bundle serves as the cache: passages
//! whose encoded text is unchanged keep their stored vectors bit for bit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use crate::checksum::{sha256_hex, FileEntry};
use crate::error::{Error, Result};
use crate::index::manifest::{
    descriptor_path, graph_part_paths, tokenizer_path, DEFAULT_MAX_FILE_BYTES, INDEX_FORMAT,
    INDEX_MANIFEST, MODEL_DIR,
};
use crate::index::{
    EncodedRow, IndexManifest, IndexModel, PassageRecord, PassageShard, ShardEntry, VectorEncoding,
    VectorShard,
};
use crate::model::token_table::{TokenTableSpec, CHECKSUMS_FILE};
use crate::model::{Encoder, ModelBundle};

/// How an index is written.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    pub encoding: VectorEncoding,
    /// No written file exceeds this (shards and model parts alike).
    pub max_file_bytes: usize,
    /// Progress on stderr: a bar on a terminal, a line every 10 % otherwise.
    pub progress: bool,
    /// Leave out JSONL documents with no title and no text instead of failing.
    pub skip_empty: bool,
    /// Encode passages with this bundle instead of the query model: the f32 twin of an int8
    /// query model gives f32-quality passage vectors at no cost to what browsers download.
    pub passage_model: Option<std::path::PathBuf>,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            encoding: VectorEncoding::Int8,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            progress: false,
            skip_empty: false,
            passage_model: None,
        }
    }
}

/// What an indexing run did, for the CLI summary and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexStats {
    pub passages: usize,
    pub documents: usize,
    /// Passages run through the model in this run.
    pub encoded: usize,
    /// Passages whose vectors were copied from the previous index.
    pub reused: usize,
    /// Ids of empty documents left out (`skip_empty`).
    pub skipped: Vec<String>,
    pub shards: usize,
}

/// Cache key of a passage vector: the exact text the model saw.
fn text_key(text: &str) -> String {
    sha256_hex(text.as_bytes())
}

/// Stored vectors of the index already at `out`, when it was built by the same bundle
/// with the same encoding. Anything unreadable just means "no cache".
fn previous_vectors(
    out: &Path,
    // The bundle that encodes this run's passages: earlier vectors from any other are stale.
    bundle_sha256: &str,
    encoding: VectorEncoding,
) -> HashMap<String, EncodedRow> {
    let mut cache = HashMap::new();
    let Ok(index) = crate::index::loader::read_folder(out) else {
        return cache;
    };
    if index.manifest.model.passage_bundle() != bundle_sha256
        || index.manifest.vector_encoding != encoding
    {
        return cache;
    }
    for (vectors, passages) in index.shards {
        for i in 0..vectors.count {
            if let Ok(record) = passages.record(i) {
                cache.insert(text_key(&record.encoded_text()), vectors.row(i));
            }
        }
    }
    cache
}

/// Reports progress as a bar on a terminal and as plain lines elsewhere (CI logs).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    start: Instant,
    done: std::sync::atomic::AtomicUsize,
    enabled: bool,
}

impl Progress {
    fn new(total: usize, enabled: bool) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "encoding {bar:40} {pos}/{len} passages  {per_sec}  ETA {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            bar,
            total,
            start: Instant::now(),
            done: 0.into(),
            enabled,
        }
    }

    fn tick(&self) {
        let done = self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
        } else if self.enabled
            && (done == self.total || done.is_multiple_of((self.total / 10).max(1)))
        {
            let secs = self.start.elapsed().as_secs_f64().max(1e-9);
            let rate = done as f64 / secs;
            eprintln!(
                "encoded {done}/{} passages ({rate:.1}/s, ETA {:.0} s)",
                self.total,
                (self.total - done) as f64 / rate
            );
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Encodes passages not in `cache`, in parallel, one passage per model call.
fn vectors_for(
    encoder: &Encoder,
    records: &[PassageRecord],
    cache: &HashMap<String, EncodedRow>,
    opts: &IndexOptions,
) -> Result<(Vec<EncodedRow>, usize)> {
    let keys: Vec<String> = records
        .iter()
        .map(|r| text_key(&r.encoded_text()))
        .collect();
    let todo = keys.iter().filter(|k| !cache.contains_key(*k)).count();
    let progress = Progress::new(todo, opts.progress && todo > 0);
    let rows = records
        .par_iter()
        .zip(&keys)
        .map(|(record, key)| {
            if let Some(row) = cache.get(key) {
                return Ok(row.clone());
            }
            let mut v = encoder.encode_passages(&[&record.encoded_text()])?;
            progress.tick();
            Ok(EncodedRow::encode(opts.encoding, &v.swap_remove(0)))
        })
        .collect::<Result<Vec<_>>>()?;
    progress.finish();
    Ok((rows, todo))
}

/// Writes files into a fresh folder, recording each one's size and checksum.
struct FolderWriter {
    root: PathBuf,
    files: BTreeMap<String, FileEntry>,
}

impl FolderWriter {
    /// Writes a file the manifest lists (loaded with the index).
    fn write(&mut self, rel: &str, bytes: &[u8]) -> Result<()> {
        self.write_unlisted(rel, bytes)?;
        self.files.insert(rel.to_string(), FileEntry::of(bytes));
        Ok(())
    }

    /// Writes a file fetched on demand, which another listed file vouches for (token
    /// embedding chunks: their checksums file).
    fn write_unlisted(&mut self, rel: &str, bytes: &[u8]) -> Result<()> {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))
    }
}

/// Groups passages into shards so that neither file of a shard exceeds `max` bytes.
fn plan_shards(
    records: &[PassageRecord],
    encoding: VectorEncoding,
    dims: usize,
    max: usize,
) -> Vec<std::ops::Range<usize>> {
    let row = encoding.row_bytes(dims);
    let mut ranges = Vec::new();
    let (mut start, mut vec_bytes, mut meta_bytes) = (0, 16, 16);
    for (i, r) in records.iter().enumerate() {
        let size = r.stored_size();
        if i > start && (vec_bytes + row > max || meta_bytes + size > max) {
            ranges.push(start..i);
            (start, vec_bytes, meta_bytes) = (i, 16, 16);
        }
        vec_bytes += row;
        meta_bytes += size;
    }
    ranges.push(start..records.len());
    ranges
}

/// Builds an index of `input` (JSONL or HTML folder) with the bundle at `model` into `out`.
/// The folder appears complete or not at all: everything is written to a sibling temp
/// folder first and swapped in at the end.
pub fn build_index(
    model: &Path,
    input: &Path,
    out: &Path,
    opts: &IndexOptions,
) -> Result<IndexStats> {
    // The query model is copied into the index; passages may come from its f32 twin.
    let bundle = ModelBundle::open(model)?;
    let passage_bundle = match &opts.passage_model {
        Some(dir) => {
            let twin = ModelBundle::open(dir)?;
            bundle.manifest.check_same_space(&twin.manifest)?;
            Some(twin)
        }
        None => None,
    };
    let encoder = Encoder::new(passage_bundle.as_ref().unwrap_or(&bundle))?;
    let passage_sha256 = passage_bundle
        .as_ref()
        .map(|b| b.bundle_sha256.clone())
        .filter(|sha| *sha != bundle.bundle_sha256);
    let (records, skipped) = super::corpus::read_corpus(input, opts.skip_empty)?;
    let mut seen = HashSet::new();
    if let Some(dup) = records.iter().find(|r| !seen.insert(r.id.as_str())) {
        return Err(Error::InvalidInput(format!(
            "{}: duplicate passage id {:?}",
            input.display(),
            dup.id
        )));
    }
    let tmp = temp_folder_beside(out)?;
    let encoded_by = passage_sha256.as_deref().unwrap_or(&bundle.bundle_sha256);
    let cache = previous_vectors(out, encoded_by, opts.encoding);
    let result = vectors_for(&encoder, &records, &cache, opts).and_then(|(rows, encoded)| {
        let manifest = write_index(&tmp, &bundle, passage_sha256, &records, &rows, opts)?;
        swap_into_place(&tmp, out)?;
        Ok((manifest, encoded))
    });
    let (manifest, encoded) = result.inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&tmp);
    })?;
    Ok(IndexStats {
        passages: records.len(),
        documents: manifest.document_count,
        encoded,
        reused: records.len() - encoded,
        skipped,
        shards: manifest.shards.len(),
    })
}

/// A fresh temp folder beside `out`, to write the index into before it replaces `out`:
/// created first, so that an unwritable destination fails in milliseconds, not after the
/// whole corpus has been encoded. Refuses an `out` that holds something other than an index.
fn temp_folder_beside(out: &Path) -> Result<PathBuf> {
    if out.exists()
        && !out.join(INDEX_MANIFEST).is_file()
        && std::fs::read_dir(out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(Error::InvalidInput(format!(
            "{}: exists and is not a dotfind index; refusing to replace it",
            out.display()
        )));
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "index".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    Ok(tmp)
}

/// The bundle, so the folder deploys as-is: descriptor (its original bytes: their sha256 is
/// the bundle's identity), tokenizer, graph split under the per-file cap (returns its
/// parts), and token embeddings kept apart — their checksums file listed, loaded with the
/// index; the chunks not, fetched as queries need them.
fn write_bundle_copy(
    w: &mut FolderWriter,
    bundle: &ModelBundle,
    max_file_bytes: usize,
) -> Result<Vec<String>> {
    w.write(&descriptor_path(), &bundle.manifest_json)?;
    w.write(&tokenizer_path(), &bundle.tokenizer_json)?;
    let graph_parts = graph_part_paths(bundle.graph.len(), max_file_bytes);
    for (path, part) in graph_parts
        .iter()
        .zip(bundle.graph.chunks(max_file_bytes.max(1)))
    {
        w.write(path, part)?;
    }
    if let Some(checksums) = &bundle.token_checksums {
        w.write(&format!("{MODEL_DIR}{CHECKSUMS_FILE}"), checksums)?;
        for (chunk, bytes) in &bundle.token_chunks {
            w.write_unlisted(
                &format!("{MODEL_DIR}{}", TokenTableSpec::chunk_path(*chunk)),
                bytes,
            )?;
        }
    }
    Ok(graph_parts)
}

fn write_index(
    dir: &Path,
    bundle: &ModelBundle,
    passage_bundle_sha256: Option<String>,
    records: &[PassageRecord],
    rows: &[EncodedRow],
    opts: &IndexOptions,
) -> Result<IndexManifest> {
    let mut w = FolderWriter {
        root: dir.to_path_buf(),
        files: BTreeMap::new(),
    };
    let m = &bundle.manifest;
    let dims = m.hidden_size;

    let graph_parts = write_bundle_copy(&mut w, bundle, opts.max_file_bytes)?;

    let mut shards = Vec::new();
    for (n, range) in plan_shards(records, opts.encoding, dims, opts.max_file_bytes)
        .into_iter()
        .enumerate()
    {
        let vectors = format!("vectors-{n:03}.bin");
        let passages = format!("passages-{n:03}.bin");
        w.write(
            &vectors,
            &VectorShard::to_bytes(opts.encoding, dims, &rows[range.clone()]),
        )?;
        w.write(&passages, &PassageShard::to_bytes(&records[range.clone()]))?;
        shards.push(ShardEntry {
            vectors,
            passages,
            count: range.len(),
        });
    }

    let documents: HashSet<&str> = records.iter().map(|r| r.doc_id.as_str()).collect();
    let manifest = IndexManifest {
        format: INDEX_FORMAT.into(),
        model: IndexModel {
            model_id: m.model_id.clone(),
            bundle_sha256: bundle.bundle_sha256.clone(),
            dims,
            pooling: m.pooling,
            similarity: m.similarity,
            graph_parts,
            passage_bundle_sha256,
        },
        vector_encoding: opts.encoding,
        passage_count: records.len(),
        document_count: documents.len(),
        shards,
        files: w.files.clone(),
    };
    let mut json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| Error::InvalidInput(e.to_string()))?;
    json.push(b'\n');
    let path = dir.join(INDEX_MANIFEST);
    std::fs::write(&path, json).map_err(|e| Error::io(&path, e))?;
    Ok(manifest)
}

/// Replaces `out` with `tmp` (renames within one parent folder, so it is atomic per step).
fn swap_into_place(tmp: &Path, out: &Path) -> Result<()> {
    if out.exists() {
        let old = tmp.with_extension("old");
        std::fs::rename(out, &old).map_err(|e| Error::io(out, e))?;
        std::fs::rename(tmp, out).map_err(|e| Error::io(out, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    } else {
        std::fs::rename(tmp, out).map_err(|e| Error::io(out, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(text_len: usize) -> PassageRecord {
        PassageRecord {
            text: "x".repeat(text_len),
            ..Default::default()
        }
    }

    #[test]
    fn shards_respect_the_file_cap() {
        // Empty records take 10 bytes of metadata; int8 rows of 4 dims take 8; headers 16.
        let records: Vec<_> = (0..10).map(|_| rec(0)).collect();
        // Cap 40: vectors would fit 3 per shard, metadata only 2 — the tighter one wins.
        let ranges = plan_shards(&records, VectorEncoding::Int8, 4, 40);
        assert_eq!(ranges, vec![0..2, 2..4, 4..6, 6..8, 8..10]);
        // Long texts: metadata alone decides.
        let records: Vec<_> = (0..4).map(|_| rec(100)).collect();
        assert_eq!(
            plan_shards(&records, VectorEncoding::Int8, 4, 150),
            vec![0..1, 1..2, 2..3, 3..4]
        );
        assert_eq!(
            plan_shards(&records, VectorEncoding::Int8, 4, 1 << 20),
            vec![0..4]
        );
    }
}
