//! Corpus input: BEIR-style JSONL and built static-site folders, both into passages.
//!
//! Native only (it reads files). Everything downstream sees [`PassageRecord`]s in a
//! deterministic order, so the same input always yields the same index bytes.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::index::PassageRecord;

/// One BEIR corpus line. `_id` may be a JSON string or integer (some collections use numbers).
#[derive(Deserialize)]
struct JsonlDoc {
    #[serde(rename = "_id")]
    id: Option<serde_json::Value>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

/// The longest corpus line read: far beyond any passage the model reads (a few hundred
/// tokens), yet small enough that a line that is really a whole dump fails at once, by name,
/// instead of becoming a multi-megabyte fragment every visitor who sees it downloads.
pub const MAX_LINE_BYTES: usize = 1 << 20;

fn at_line(file: &Path, line: usize, reason: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!("{}:{line}: {reason}", file.display()))
}

/// Reads a BEIR `corpus.jsonl`: one passage per document, encoded as title + " " + text.
/// A document with neither title nor text is an error, unless `skip_empty`: then it is
/// left out (real collections have some: Cranfield's 471 and 995) and its id reported.
pub fn read_jsonl(path: &Path, skip_empty: bool) -> Result<(Vec<PassageRecord>, Vec<String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for (n, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = n + 1;
        if raw.len() > MAX_LINE_BYTES {
            return Err(at_line(
                path,
                line,
                format!(
                    "a line of {:.1} MiB; a document may take at most {} MiB (the model reads only \
                     its first few hundred tokens: split long documents into several)",
                    raw.len() as f64 / f64::from(1 << 20),
                    MAX_LINE_BYTES >> 20
                ),
            ));
        }
        let text = std::str::from_utf8(raw)
            .map_err(|e| at_line(path, line, format!("not valid UTF-8 ({e})")))?;
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let doc: JsonlDoc = serde_json::from_str(text)
            .map_err(|e| at_line(path, line, format!("invalid JSON: {e}")))?;
        let id = match doc.id {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s,
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(_) => {
                return Err(at_line(
                    path,
                    line,
                    "\"_id\" must be a non-empty string or a number",
                ))
            }
            None => return Err(at_line(path, line, "missing \"_id\"")),
        };
        if let Some(first) = first_line.insert(id.clone(), line) {
            return Err(at_line(
                path,
                line,
                format!("duplicate _id {id:?} (first on line {first})"),
            ));
        }
        let title = doc.title.unwrap_or_default().trim().to_string();
        let body = doc.text.unwrap_or_default().trim().to_string();
        if title.is_empty() && body.is_empty() {
            if skip_empty {
                skipped.push(id);
                continue;
            }
            return Err(at_line(
                path,
                line,
                format!("document {id:?} has no title and no text (--skip-empty leaves such documents out)"),
            ));
        }
        records.push(PassageRecord {
            url: doc.url.unwrap_or_default(),
            doc_id: id.clone(),
            id,
            title,
            heading: String::new(),
            text: body,
        });
    }
    if records.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{}: no documents",
            path.display()
        )));
    }
    Ok((records, skipped))
}

/// Reads a corpus: a `.jsonl` file or a folder of built HTML pages (pages without text are
/// simply not passages). Returns the records and the ids of skipped empty documents.
pub fn read_corpus(path: &Path, skip_empty: bool) -> Result<(Vec<PassageRecord>, Vec<String>)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        Ok((super::html::read_site(path)?, Vec::new()))
    } else {
        read_jsonl(path, skip_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(text: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corpus.jsonl");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_beir_lines_with_string_or_number_ids() {
        let (_d, p) = corpus(
            b"{\"_id\": \"a\", \"title\": \"T\", \"text\": \"body\"}\n\n{\"_id\": 7, \"text\": \"only text\", \"url\": \"/x\"}\n",
        );
        let (r, _) = read_jsonl(&p, false).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].encoded_text(), "T body");
        assert_eq!(
            (r[1].id.as_str(), r[1].doc_id.as_str(), r[1].url.as_str()),
            ("7", "7", "/x")
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases: [(&[u8], &str); 6] = [
            (
                b"{\"_id\": \"a\", \"text\": \"x\"}\n{oops\n",
                ":2: invalid JSON: key must be a string at line 1 column 2",
            ),
            (b"{\"text\": \"x\"}\n", ":1: missing \"_id\""),
            (
                b"{\"_id\": \"a\", \"text\": \"x\"}\n{\"_id\": \"a\", \"text\": \"y\"}\n",
                ":2: duplicate _id \"a\" (first on line 1)",
            ),
            (
                b"{\"_id\": \"a\", \"title\": \" \", \"text\": \"\"}\n",
                ":1: document \"a\" has no title and no text (--skip-empty leaves such documents out)",
            ),
            (
                b"{\"_id\": \"a\", \"text\": \"caf\xe9\"}\n",
                ":1: not valid UTF-8 (invalid utf-8 sequence of 1 bytes from index 25)",
            ),
            (
                b"{\"_id\": [1], \"text\": \"x\"}\n",
                ":1: \"_id\" must be a non-empty string or a number",
            ),
        ];
        for (text, expected) in cases {
            let (_d, p) = corpus(text);
            let err = read_jsonl(&p, false).unwrap_err().to_string();
            assert_eq!(err, format!("invalid input: {}{expected}", p.display()));
        }
        let (_d, p) = corpus(b"\n\n");
        assert_eq!(
            read_jsonl(&p, false).unwrap_err().to_string(),
            format!("invalid input: {}: no documents", p.display())
        );
    }

    #[test]
    fn empty_documents_can_be_skipped_and_are_reported() {
        let (_d, p) = corpus(b"{\"_id\": \"a\", \"text\": \"x\"}\n{\"_id\": \"471\", \"title\": \"\", \"text\": \"\"}\n");
        let (records, skipped) = read_jsonl(&p, true).unwrap();
        assert_eq!(
            records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            vec!["a"]
        );
        assert_eq!(skipped, vec!["471"]);
    }

    #[test]
    fn missing_file_is_an_io_error_with_its_path() {
        let err = read_corpus(Path::new("/nonexistent/corpus.jsonl"), false)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "/nonexistent/corpus.jsonl: No such file or directory (os error 2)"
        );
    }
}
