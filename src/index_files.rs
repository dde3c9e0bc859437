//! An index folder on the local file system: read, verify, load. Native only; the browser
//! does the same from `fetch` in JS with the same checks (`IndexManifest::verify`).

use std::path::Path;

use crate::bundle::ModelBundle;
use crate::encode::Encoder;
use crate::error::{Error, Result};
use crate::index::MODEL_DIR;
use crate::search::SearchIndex;
use crate::shard::{IndexManifest, PassageShard, VectorShard, INDEX_MANIFEST};

/// A verified index folder's manifest and parsed shards.
#[derive(Debug)]
pub struct IndexFiles {
    pub manifest: IndexManifest,
    pub shards: Vec<(VectorShard, PassageShard)>,
}

fn read(dir: &Path, rel: &str) -> Result<Vec<u8>> {
    let path = dir.join(rel);
    std::fs::read(&path).map_err(|e| Error::io(path, e))
}

/// Reads `manifest.json` and every shard, checking sizes and checksums before parsing.
pub fn open_index_files(dir: &Path) -> Result<IndexFiles> {
    let manifest = IndexManifest::from_json(&read(dir, INDEX_MANIFEST)?)?;
    let mut shards = Vec::with_capacity(manifest.shards.len());
    for entry in &manifest.shards {
        let vectors = read(dir, &entry.vectors)?;
        manifest.verify(&entry.vectors, &vectors)?;
        let passages = read(dir, &entry.passages)?;
        manifest.verify(&entry.passages, &passages)?;
        shards.push((
            VectorShard::from_bytes(&entry.vectors, &vectors)?,
            PassageShard::from_bytes(&entry.passages, &passages)?,
        ));
    }
    Ok(IndexFiles { manifest, shards })
}

/// Opens an index for searching: its shards plus an encoder for the bundle it was built
/// with (the copy inside the index), refusing a bundle that is not that one.
pub fn open_index(dir: &Path) -> Result<(SearchIndex, Encoder)> {
    let files = open_index_files(dir)?;
    let bundle = ModelBundle::open(&dir.join(MODEL_DIR))?;
    files.manifest.check_bundle(&bundle)?;
    let encoder = Encoder::new(&bundle)?;
    Ok((SearchIndex::new(files.manifest, files.shards)?, encoder))
}
