//! The lexical module's object: an index answering BM25 queries without the model, from
//! `manifest.json` and `parts.bin` alone; each query then fetches its terms' buckets and its
//! hits' fragments. In both modules, so the full one can serve a page that never loads the
//! model too.

use wasm_bindgen::prelude::*;

use super::{file_list, index_steps, js_error, Hits};
use crate::index::IndexLoader;
use crate::search::SearchIndex;

/// An index loaded for lexical search only: create it from `manifest.json`'s bytes, add the
/// files `fileList` names (`addFile`), then `finish`.
#[wasm_bindgen]
pub struct LexicalIndex {
    loader: Option<IndexLoader>,
    index: Option<SearchIndex>,
}

impl LexicalIndex {
    /// The index (a step called before `finish` throws a JS `Error` saying so).
    fn index(&self) -> &SearchIndex {
        self.index.as_ref().unwrap_or_else(|| not_finished())
    }

    fn index_mut(&mut self) -> &mut SearchIndex {
        match self.index.as_mut() {
            Some(index) => index,
            None => not_finished(),
        }
    }

    fn loader(&self) -> Result<&IndexLoader, JsError> {
        self.loader.as_ref().ok_or_else(finished)
    }
}

fn not_finished() -> ! {
    wasm_bindgen::throw_str("dotfind: the lexical index is not finished (call finish first)")
}

index_steps!(LexicalIndex);

#[wasm_bindgen]
impl LexicalIndex {
    #[wasm_bindgen(constructor)]
    pub fn new(manifest_json: &[u8]) -> Result<LexicalIndex, JsError> {
        Ok(LexicalIndex {
            loader: Some(IndexLoader::new(manifest_json).map_err(js_error)?),
            index: None,
        })
    }

    /// The files to fetch before the first query (the part table), as `[{path, bytes}]`.
    #[wasm_bindgen(js_name = fileList)]
    pub fn file_list(&self) -> Result<JsValue, JsError> {
        let files = self.loader()?.lexical_files();
        file_list(files.map(|(path, entry)| (path, entry.bytes)))
    }

    /// Every file `manifest.json` lists (the model's too): what a cache of this index keeps.
    #[wasm_bindgen(js_name = indexFiles)]
    pub fn index_files(&self) -> Result<Vec<String>, JsError> {
        Ok(self.loader()?.files().map(|(p, _)| p.to_string()).collect())
    }

    /// Checks one file's size and checksum and keeps it.
    #[wasm_bindgen(js_name = addFile)]
    pub fn add_file(&mut self, path: &str, bytes: Vec<u8>) -> Result<(), JsError> {
        let loader = self.loader.as_mut().ok_or_else(finished)?;
        loader.add_file(path, bytes).map_err(js_error)
    }

    /// Parses the part table: the index is ready for `missingTermBuckets` and `lexicalHits`.
    pub fn finish(&mut self) -> Result<(), JsError> {
        let loader = self.loader.take().ok_or_else(finished)?;
        let (manifest, parts) = loader.finish_lexical().map_err(js_error)?;
        self.index =
            Some(SearchIndex::new(manifest, parts, None, None, Vec::new()).map_err(js_error)?);
        Ok(())
    }
}

fn finished() -> JsError {
    JsError::new("dotfind: the lexical index is already finished")
}
