//! The one index loader, for every reader: the CLI and the indexer read an index folder
//! through it ([`read_folder`]), the browser feeds it what it fetched (`src/wasm.rs`). Each
//! file is verified against `manifest.json` as it arrives; [`IndexLoader::finish`] parses
//! the part table and centroids and assembles the model bundle, and checks it is the one the
//! index was built with. The parts themselves (vector lists, passage fragments) come later,
//! as queries need them, checked against the part table by the search index.

use std::collections::HashMap;

use super::codebook::{Codebook, CODEBOOK_FILE};
use super::manifest::{descriptor_path, token_checksums_path, tokenizer_path, IndexManifest};
use super::parts::{Part, PartTable, CENTROIDS_FILE, PARTS_FILE};
use super::vectors::VectorShard;
use crate::checksum::FileEntry;
use crate::error::{Error, Result};
use crate::model::ModelBundle;

/// An index's files gathered one by one, each verified on arrival.
#[derive(Debug)]
pub struct IndexLoader {
    manifest: IndexManifest,
    /// Each verified file's bytes and the xxh3-128 computed from them.
    files: HashMap<String, (Vec<u8>, String)>,
}

/// An index's always-loaded files, verified and parsed: what search starts from, and the
/// bundle to encode queries.
#[derive(Debug)]
pub struct LoadedIndex {
    pub manifest: IndexManifest,
    pub parts: PartTable,
    /// One row per list, for indexes of several lists.
    pub centroids: Option<VectorShard>,
    /// What the lists' codes mean, for indexes of several lists.
    pub codebook: Option<Codebook>,
    /// Parts already at hand (natively: all of them), unverified: the search index checks
    /// each against the part table as it adds it.
    pub parts_at_hand: Vec<(Part, Vec<u8>)>,
    pub bundle: ModelBundle,
}

impl IndexLoader {
    /// Starts loading the index `manifest.json` describes.
    pub fn new(manifest_json: &[u8]) -> Result<Self> {
        Ok(IndexLoader {
            manifest: IndexManifest::from_json(manifest_json)?,
            files: HashMap::new(),
        })
    }

    pub fn manifest(&self) -> &IndexManifest {
        &self.manifest
    }

    /// Every file to fetch before the first query, with its recorded size and checksum.
    pub fn files(&self) -> impl Iterator<Item = (&str, &FileEntry)> {
        self.manifest.files.iter().map(|(p, e)| (p.as_str(), e))
    }

    /// The files a lexical search needs before its first query — the part table only, no
    /// model: what a visit loads first to answer by BM25 while the model is on its way.
    pub fn lexical_files(&self) -> impl Iterator<Item = (&str, &FileEntry)> {
        self.files().filter(|(p, _)| *p == PARTS_FILE)
    }

    /// The manifest and the parsed part table (`parts.bin` added): all a lexical search
    /// starts from.
    pub fn finish_lexical(mut self) -> Result<(IndexManifest, PartTable)> {
        let parts = self.take_part_table()?;
        Ok((self.manifest, parts))
    }

    /// Checks one file's size and checksum and keeps it.
    pub fn add_file(&mut self, path: &str, bytes: Vec<u8>) -> Result<()> {
        let computed = self.manifest.entry(path)?.verify(path, &bytes)?;
        self.files.insert(path.to_string(), (bytes, computed));
        Ok(())
    }

    /// Parses the part table, the centroids and the model bundle, and checks they agree
    /// with the manifest.
    pub fn finish(mut self) -> Result<LoadedIndex> {
        let bundle = self.take_bundle()?;
        self.manifest.check_bundle(&bundle)?;
        let parts = self.take_part_table()?;
        let layout = self.manifest.layout;
        let codebook = if layout.lists > 1 {
            let (bytes, _) = self.take(CODEBOOK_FILE)?;
            let codebook = Codebook::from_bytes(&bytes, self.manifest.model.dims)?;
            if codebook.m != layout.code_bytes {
                return Err(super::corrupt(
                    CODEBOOK_FILE,
                    format!(
                        "{} slices, the manifest says {} code bytes",
                        codebook.m, layout.code_bytes
                    ),
                ));
            }
            Some(codebook)
        } else {
            None
        };
        let centroids = if layout.lists > 1 {
            let (bytes, _) = self.take(CENTROIDS_FILE)?;
            let shard = VectorShard::from_bytes(CENTROIDS_FILE, &bytes)?;
            if shard.count != layout.lists || shard.dims != self.manifest.model.dims {
                return Err(super::corrupt(
                    CENTROIDS_FILE,
                    format!(
                        "{} centroids of {} dimensions, the index has {} lists of {}",
                        shard.count, shard.dims, layout.lists, self.manifest.model.dims
                    ),
                ));
            }
            Some(shard)
        } else {
            None
        };
        Ok(LoadedIndex {
            manifest: self.manifest,
            parts,
            centroids,
            codebook,
            parts_at_hand: Vec::new(),
            bundle,
        })
    }

    /// `parts.bin`, parsed and checked against the manifest's layout.
    fn take_part_table(&mut self) -> Result<PartTable> {
        let (table, _) = self.take(PARTS_FILE)?;
        let parts = PartTable::from_bytes(&table, self.manifest.passage_count)?;
        let layout = self.manifest.layout;
        let counts = (
            parts.lists.len(),
            parts.fragments.len(),
            parts.ids.len(),
            parts.terms.len(),
        );
        let declared = (
            layout.lists,
            layout.fragments,
            layout.id_buckets,
            layout.term_buckets,
        );
        if counts != declared {
            return Err(super::corrupt(
                PARTS_FILE,
                format!(
                    "(lists, fragments, id buckets, term buckets) = {counts:?}, the manifest says {declared:?}"
                ),
            ));
        }
        Ok(parts)
    }

    /// The bundle copy: its descriptor, tokenizer and graph (its parts concatenated),
    /// verified against the descriptor. A checksum computed on arrival is reused where it
    /// covers the same bytes the descriptor checks (the tokenizer; a graph in one part).
    fn take_bundle(&mut self) -> Result<ModelBundle> {
        let (descriptor, _) = self.take(&descriptor_path())?;
        let (tokenizer, tokenizer_xxh3) = self.take(&tokenizer_path())?;
        let parts = self.manifest.model.graph_parts.clone();
        let mut graph = Vec::new();
        let mut graph_xxh3 = None;
        for part in &parts {
            let (bytes, xxh3) = self.take(part)?;
            if parts.len() == 1 {
                graph_xxh3 = Some(xxh3);
                graph = bytes;
            } else {
                graph.extend_from_slice(&bytes);
            }
        }
        let bundle = ModelBundle::from_checked(
            &descriptor,
            graph,
            tokenizer,
            [graph_xxh3, Some(tokenizer_xxh3)],
        )?;
        if bundle.manifest.token_embeddings.is_none() {
            return Ok(bundle);
        }
        let (checksums, _) = self.take(&token_checksums_path())?;
        bundle.with_token_checksums(checksums)
    }

    fn take(&mut self, path: &str) -> Result<(Vec<u8>, String)> {
        self.files.remove(path).ok_or_else(|| {
            Error::InvalidInput(format!(
                "{path}: not loaded (every file the manifest lists must be added)"
            ))
        })
    }
}

/// Reads, verifies and parses the index folder `dir`, every part at hand.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_folder(dir: &std::path::Path) -> Result<LoadedIndex> {
    read_folder_with(dir, |_| true)
}

/// [`read_folder`] with only the parts `wanted` at hand: the indexer, reading back vectors,
/// need not read a corpus's text or its lexical index.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_folder_with(
    dir: &std::path::Path,
    wanted: impl Fn(Part) -> bool,
) -> Result<LoadedIndex> {
    let read = |rel: &str| {
        let path = dir.join(rel);
        std::fs::read(&path).map_err(|e| Error::io(path, e))
    };
    let mut loader = IndexLoader::new(&read(super::manifest::INDEX_MANIFEST)?)?;
    let paths: Vec<String> = loader.files().map(|(p, _)| p.to_string()).collect();
    for path in paths {
        let bytes = read(&path)?;
        loader.add_file(&path, bytes)?;
    }
    let mut index = loader.finish()?;
    let parts = (0..index.parts.lists.len())
        .map(Part::List)
        .chain((0..index.parts.fragments.len()).map(Part::Fragment))
        .chain((0..index.parts.ids.len()).map(Part::Ids))
        .chain((0..index.parts.terms.len()).map(Part::Terms));
    for part in parts.filter(|&part| wanted(part)) {
        index.parts_at_hand.push((part, read(&part.path())?));
    }
    // Natively every token-embedding chunk is at hand: all of them, verified by the encoder.
    if let Some(spec) = index.bundle.manifest.token_embeddings.clone() {
        for chunk in 0..spec.chunk_count() {
            let path = format!(
                "{}{}",
                super::manifest::MODEL_DIR,
                crate::model::token_table::TokenTableSpec::chunk_path(chunk)
            );
            index.bundle.token_chunks.push((chunk, read(&path)?));
        }
    }
    Ok(index)
}
