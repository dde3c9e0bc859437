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

use super::lists::{write_lists, ListsIn};
use super::partition::{
    default_layout, order_passages, partition, plan_fragments, DEFAULT_RESCORE, FRAGMENT_BYTES,
};
use super::probe::{calibrate, ProbeBounds, ProbeChoice};
use crate::checksum::{sha256_hex, FileEntry};
use crate::error::{Error, Result};
use crate::index::manifest::{
    descriptor_path, graph_part_paths, tokenizer_path, IndexLayout, DEFAULT_MAX_FILE_BYTES,
    INDEX_FORMAT, INDEX_MANIFEST, MODEL_DIR,
};
use crate::index::parts::PARTS_FILE;
use crate::index::{ids, terms};
use crate::index::{
    EncodedRow, IndexManifest, IndexModel, Part, PartEntry, PartTable, PassageRecord, PassageShard,
    VectorEncoding,
};
use crate::model::token_table::{TokenTableSpec, CHECKSUMS_FILE};
use crate::model::{Encoder, ModelBundle};
use crate::search::lexical::Bm25;
use crate::search::SearchIndex;

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
    /// Vector lists, instead of the choice for the corpus size (`partition::default_layout`).
    pub lists: Option<usize>,
    /// Lists a query scans by default, instead of the depth measured on the corpus
    /// (`probe::calibrate`).
    pub probe: Option<usize>,
    /// Code bytes a passage in the lists, instead of `pq::default_code_bytes`.
    pub code_bytes: Option<usize>,
    /// Candidates a search scores exactly, instead of `partition::DEFAULT_RESCORE`.
    pub rescore: Option<usize>,
    /// Passage fragments are cut at about this size (`partition::FRAGMENT_BYTES`).
    pub fragment_bytes: usize,
    /// Term buckets of the lexical index are cut at about this size (`terms::BUCKET_BYTES`).
    pub term_bucket_bytes: usize,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            encoding: VectorEncoding::Int8,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            progress: false,
            skip_empty: false,
            passage_model: None,
            lists: None,
            probe: None,
            code_bytes: None,
            rescore: None,
            fragment_bytes: FRAGMENT_BYTES,
            term_bucket_bytes: terms::BUCKET_BYTES,
        }
    }
}

/// What an indexing run did, for the CLI summary and for tests.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexStats {
    pub passages: usize,
    pub documents: usize,
    /// Passages run through the model in this run.
    pub encoded: usize,
    /// Passages whose vectors were copied from the previous index.
    pub reused: usize,
    /// Ids of empty documents left out (`skip_empty`).
    pub skipped: Vec<String>,
    pub lists: usize,
    /// Lists a query scans by default.
    pub probe: usize,
    /// How the indexer measured that depth, where it did (several lists, no `--probe`).
    pub probe_choice: Option<ProbeChoice>,
    pub fragments: usize,
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
    // Rows and the records' text: not the id directory or the lexical index.
    let Ok(index) = crate::index::loader::read_folder_with(out, |part| {
        matches!(part, Part::List(_) | Part::Fragment(_))
    }) else {
        return cache;
    };
    if index.manifest.model.passage_bundle() != bundle_sha256
        || index.manifest.vector_encoding != encoding
    {
        return cache;
    }
    let crate::index::LoadedIndex {
        manifest,
        parts,
        centroids,
        codebook,
        parts_at_hand,
        ..
    } = index;
    let Ok(mut stored) = SearchIndex::new(manifest, parts, centroids, codebook, Vec::new()) else {
        return cache;
    };
    // A damaged part only loses its own passages' vectors.
    for (part, bytes) in &parts_at_hand {
        let _ = stored.add_part(&part.path(), bytes);
    }
    for n in 0..stored.len() {
        if let (Ok(record), Ok(row)) = (stored.record(n), stored.stored_row(n)) {
            cache.insert(text_key(&record.encoded_text()), row);
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

/// What an indexing run starts from: the bundle to copy, the encoder of passages, and the
/// corpus read into passage records.
pub(crate) struct Inputs {
    pub bundle: ModelBundle,
    /// The passage encoder's bundle when it is not `bundle` (its f32 twin).
    pub passage_sha256: Option<String>,
    pub encoder: Encoder,
    pub records: Vec<PassageRecord>,
    pub skipped: Vec<String>,
}

impl Inputs {
    /// Opens the bundles and reads the corpus, refusing duplicate passage ids.
    pub fn read(model: &Path, input: &Path, opts: &IndexOptions) -> Result<Self> {
        // The query model is copied into the index; passages may come from its f32 twin.
        let bundle = ModelBundle::open(model)?;
        check_publishable(&bundle.manifest.model_id)?;
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
        Ok(Inputs {
            bundle,
            passage_sha256,
            encoder,
            records,
            skipped,
        })
    }

    /// The bundle whose outputs the stored vectors are.
    pub fn encoded_by(&self) -> &str {
        self.passage_sha256
            .as_deref()
            .unwrap_or(&self.bundle.bundle_sha256)
    }

    /// Vectors of `records[range]`: stored ones from the index at `reuse` (when built by the
    /// same passage bundle, with the same encoding) where the text is unchanged, the others
    /// encoded. Returns them and how many were encoded.
    pub fn vectors(
        &self,
        range: std::ops::Range<usize>,
        reuse: Option<&Path>,
        opts: &IndexOptions,
    ) -> Result<(Vec<EncodedRow>, usize)> {
        let cache = reuse
            .map(|dir| previous_vectors(dir, self.encoded_by(), opts.encoding))
            .unwrap_or_default();
        vectors_for(&self.encoder, &self.records[range], &cache, opts)
    }

    /// Writes the index of every record with `rows` into `out` (atomically; `tmp` is the
    /// temp folder already made beside it), and reports the run.
    pub fn write(
        self,
        tmp: &Path,
        out: &Path,
        rows: &[EncodedRow],
        encoded: usize,
        opts: &IndexOptions,
    ) -> Result<IndexStats> {
        let (manifest, probe_choice) = write_into(
            tmp,
            out,
            &self.bundle,
            self.passage_sha256,
            &self.records,
            rows,
            opts,
        )?;
        Ok(IndexStats {
            passages: self.records.len(),
            documents: manifest.document_count,
            encoded,
            reused: self.records.len() - encoded,
            skipped: self.skipped,
            lists: manifest.layout.lists,
            probe: manifest.layout.probe,
            probe_choice,
            fragments: manifest.layout.fragments,
        })
    }
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
    let inputs = Inputs::read(model, input, opts)?;
    let tmp = temp_folder_beside(out)?;
    let (rows, encoded) = inputs
        .vectors(0..inputs.records.len(), Some(out), opts)
        .inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&tmp);
        })?;
    inputs.write(&tmp, out, &rows, encoded, opts)
}

/// Writes an index of `records` whose vectors are already encoded (`rows`, in `opts.encoding`,
/// by the bundle `passage_bundle_sha256` names, else `bundle`): what `build_index` does once
/// passages are encoded, and what benchmarks use to write synthetic indexes at scale. The
/// folder appears complete or not at all.
pub fn write_index_folder(
    bundle: &ModelBundle,
    passage_bundle_sha256: Option<String>,
    records: &[PassageRecord],
    rows: &[EncodedRow],
    out: &Path,
    opts: &IndexOptions,
) -> Result<IndexManifest> {
    if records.len() != rows.len() {
        return Err(Error::InvalidInput(format!(
            "{} passages but {} vectors",
            records.len(),
            rows.len()
        )));
    }
    let tmp = temp_folder_beside(out)?;
    write_into(
        &tmp,
        out,
        bundle,
        passage_bundle_sha256,
        records,
        rows,
        opts,
    )
    .map(|(manifest, _)| manifest)
}

/// Writes the index into the temp folder `tmp`, then swaps it in for `out`; on failure
/// removes `tmp` and leaves `out` as it was.
fn write_into(
    tmp: &Path,
    out: &Path,
    bundle: &ModelBundle,
    passage_bundle_sha256: Option<String>,
    records: &[PassageRecord],
    rows: &[EncodedRow],
    opts: &IndexOptions,
) -> Result<(IndexManifest, Option<ProbeChoice>)> {
    write_index(tmp, bundle, passage_bundle_sha256, records, rows, opts)
        .and_then(|written| swap_into_place(tmp, out).map(|()| written))
        .inspect_err(|_| {
            let _ = std::fs::remove_dir_all(tmp);
        })
}

/// A fresh temp folder beside `out`, to write the index into before it replaces `out`:
/// created first, so that an unwritable destination fails in milliseconds, not after the
/// whole corpus has been encoded. Refuses an `out` that holds something other than an index.
pub(crate) fn temp_folder_beside(out: &Path) -> Result<PathBuf> {
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
    // `--out site/search/index` into a fresh build folder: its parents are made, as `mkdir -p`.
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
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

/// An index is published to the web, and carries its bundle's `model_id`: one that is a
/// path on the builder's machine (what a bundle prepared from a local folder by other tools
/// may hold) would publish that machine's layout, so it is refused before any encoding.
fn check_publishable(model_id: &str) -> Result<()> {
    let bytes = model_id.as_bytes();
    let windows_drive = bytes.len() > 2
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && matches!(bytes[2], b'\\' | b'/');
    if model_id.starts_with(['/', '\\', '~']) || windows_drive {
        return Err(Error::InvalidInput(format!(
            "the model bundle's model_id {model_id:?} is a path on this machine, and an index is \
             published: prepare the bundle again with `dotfind prepare --model-id NAME`"
        )));
    }
    Ok(())
}

fn write_index(
    dir: &Path,
    bundle: &ModelBundle,
    passage_bundle_sha256: Option<String>,
    records: &[PassageRecord],
    rows: &[EncodedRow],
    opts: &IndexOptions,
) -> Result<(IndexManifest, Option<ProbeChoice>)> {
    let mut w = FolderWriter {
        root: dir.to_path_buf(),
        files: BTreeMap::new(),
    };
    let m = &bundle.manifest;
    check_publishable(&m.model_id)?;
    let dims = m.hidden_size;

    let graph_parts = write_bundle_copy(&mut w, bundle, opts.max_file_bytes)?;
    let (layout, parts, bounds) = write_parts(&mut w, dims, records, rows, opts)?;
    w.write(PARTS_FILE, &parts.to_bytes())?;

    let documents: HashSet<&str> = records.iter().map(|r| r.doc_id.as_str()).collect();
    let mut manifest = IndexManifest {
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
        layout,
        files: w.files.clone(),
    };
    write_manifest(dir, &manifest)?;
    // The depth is measured on the index as written (its floor meanwhile), then recorded.
    let choice = match bounds {
        Some(bounds) => Some(calibrate(dir, records, bounds)?),
        None => None,
    };
    if let Some(choice) = choice {
        manifest.layout.probe = choice.probe;
        write_manifest(dir, &manifest)?;
    }
    Ok((manifest, choice))
}

fn write_manifest(dir: &Path, manifest: &IndexManifest) -> Result<()> {
    let mut json =
        serde_json::to_vec_pretty(manifest).map_err(|e| Error::InvalidInput(e.to_string()))?;
    json.push(b'\n');
    let path = dir.join(INDEX_MANIFEST);
    std::fs::write(&path, json).map_err(|e| Error::io(&path, e))
}

/// Partitions the vectors into lists (by their stored values, so a re-index that reuses
/// every vector partitions identically), orders passages list by list, and writes the lists,
/// their centroids, the passage fragments, the id directory and the lexical index. Returns
/// the depths a calibration of the probe may choose among, where it is to run.
fn write_parts(
    w: &mut FolderWriter,
    dims: usize,
    records: &[PassageRecord],
    rows: &[EncodedRow],
    opts: &IndexOptions,
) -> Result<(IndexLayout, PartTable, Option<ProbeBounds>)> {
    let row_bytes = opts.encoding.row_bytes(dims);
    let (default_lists, _) = default_layout(records.len(), row_bytes, opts.max_file_bytes);
    let wanted = opts
        .lists
        .unwrap_or(default_lists)
        .clamp(1, records.len().max(1));
    let vectors: Vec<Vec<f32>> = rows.iter().map(|r| r.decode(opts.encoding)).collect();
    let p = partition(&vectors, wanted);
    let lists = p.centroids.len();
    let order = order_passages(&vectors, &p);
    let code_bytes = opts
        .code_bytes
        .unwrap_or_else(|| super::pq::default_code_bytes(dims))
        .clamp(1, dims);
    let bounds = (lists > 1 && opts.probe.is_none())
        .then(|| ProbeBounds::of(&p, opts.encoding, dims, code_bytes));
    let probe = match (opts.probe, bounds) {
        (Some(n), _) => n.clamp(1, lists),
        (None, Some(bounds)) => bounds.floor,
        (None, None) => 1,
    };
    let lists_in = ListsIn {
        dims,
        encoding: opts.encoding,
        max_file_bytes: opts.max_file_bytes,
        code_bytes,
    };
    let list_entries = write_lists(
        &lists_in,
        rows,
        &vectors,
        &p,
        &order,
        |path, bytes, listed| {
            if listed {
                w.write(path, bytes)
            } else {
                w.write_unlisted(path, bytes)
            }
        },
    )?;

    let ordered: Vec<PassageRecord> = order.iter().map(|&i| records[i].clone()).collect();
    let (fragment_entries, id_entries) = write_records(w, &ordered, opts)?;
    let term_entries = write_term_buckets(w, &ordered, opts.term_bucket_bytes)?;
    let layout = IndexLayout {
        lists,
        probe,
        code_bytes: if lists > 1 { code_bytes } else { 0 },
        rescore: if lists > 1 {
            opts.rescore.unwrap_or(DEFAULT_RESCORE).max(1)
        } else {
            0
        },
        fragments: fragment_entries.len(),
        id_buckets: id_entries.len(),
        term_buckets: term_entries.len(),
    };
    Ok((
        layout,
        PartTable::new(list_entries, fragment_entries, id_entries, term_entries),
        bounds,
    ))
}

/// The passage fragments and the id directory of `ordered` (the records in passage order).
fn write_records(
    w: &mut FolderWriter,
    ordered: &[PassageRecord],
    opts: &IndexOptions,
) -> Result<(Vec<PartEntry>, Vec<PartEntry>)> {
    let sizes: Vec<usize> = ordered.iter().map(PassageRecord::stored_size).collect();
    let mut fragment_entries = Vec::new();
    for (j, range) in plan_fragments(&sizes, opts.fragment_bytes, opts.max_file_bytes)
        .into_iter()
        .enumerate()
    {
        let bytes = PassageShard::to_bytes(&ordered[range.clone()]);
        w.write_unlisted(&Part::Fragment(j).path(), &bytes)?;
        // The part table vouches for a fragment's directory, which vouches for each record.
        let directory = PassageShard::directory_len(range.len());
        fragment_entries.push(PartEntry {
            count: range.len(),
            file: FileEntry::of_head(&bytes, directory),
        });
    }
    let mut id_entries = Vec::new();
    for (b, (bytes, keys)) in ids::write_buckets(ordered, ids::bucket_count(ordered))
        .into_iter()
        .enumerate()
    {
        id_entries.push(write_part(w, Part::Ids(b), &bytes, keys)?);
    }
    Ok((fragment_entries, id_entries))
}

/// The lexical index of `records` (in passage order): BM25 impacts over what each passage
/// embeds (title, heading, text), in term buckets.
fn write_term_buckets(
    w: &mut FolderWriter,
    records: &[PassageRecord],
    bucket_bytes: usize,
) -> Result<Vec<PartEntry>> {
    let texts: Vec<String> = records.iter().map(PassageRecord::encoded_text).collect();
    let impacts = Bm25::new(texts.iter().map(String::as_str)).impacts();
    let buckets = terms::bucket_count(impacts.iter().map(|(_, p)| p), bucket_bytes);
    terms::write_buckets(&impacts, buckets)
        .into_iter()
        .enumerate()
        .map(|(b, (bytes, count))| write_part(w, Part::Terms(b), &bytes, count))
        .collect()
}

/// Writes a part (recorded in the part table, not the manifest).
fn write_part(w: &mut FolderWriter, part: Part, bytes: &[u8], count: usize) -> Result<PartEntry> {
    w.write_unlisted(&part.path(), bytes)?;
    Ok(PartEntry {
        count,
        file: FileEntry::of(bytes),
    })
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
    use super::check_publishable;

    #[test]
    fn model_ids_that_are_paths_on_this_machine_are_refused() {
        for local in [
            "/home/me/bert",
            "~/bert",
            "C:\\models\\bert",
            "c:/bert",
            "\\\\host\\share",
        ] {
            let err = check_publishable(local).unwrap_err().to_string();
            assert!(err.contains("is a path on this machine"), "{local}: {err}");
        }
        for name in [
            "sentence-transformers/all-MiniLM-L6-v2",
            "my-bert",
            "bert (local, v2)",
        ] {
            assert!(check_publishable(name).is_ok(), "{name}");
        }
    }
}
