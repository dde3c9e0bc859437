//! A built static site (a folder of HTML pages, as Pagefind takes) into passages.
//!
//! Per page: title, URL (path relative to the site root, `index.html` dropped), and the main
//! text split into passages of the length the model was trained on (MS MARCO passages: ~60
//! words, at most ~200), cut at heading, paragraph and then sentence boundaries. Each passage
//! links to its page plus the anchor of the heading it sits under.

use std::path::{Path, PathBuf};

use scraper::{ElementRef, Html, Node, Selector};

use crate::error::{Error, Result};
use crate::index::PassageRecord;
use crate::search::text::is_cjk;

/// Passages are packed up to this many words (a CJK character counts as one word).
pub const MAX_PASSAGE_WORDS: usize = 200;

/// Elements whose content is never page text.
const SKIPPED: &[&str] = &[
    "script", "style", "noscript", "template", "nav", "svg", "iframe", "object", "canvas",
    "select", "button",
];
/// Elements that end a run of text: their content starts a new block.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "li",
    "ul",
    "ol",
    "pre",
    "blockquote",
    "table",
    "tr",
    "dd",
    "dt",
    "dl",
    "figcaption",
    "figure",
    "section",
    "article",
    "aside",
    "header",
    "footer",
    "main",
    "br",
    "hr",
    "details",
    "summary",
    "form",
];

/// Reads every `.html`/`.htm` file under `root` (sorted by path, for deterministic output).
pub fn read_site(root: &Path) -> Result<Vec<PassageRecord>> {
    let mut files = Vec::new();
    collect_pages(root, &mut files)?;
    files.sort();
    let mut records = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::InvalidInput(format!("{}: not valid UTF-8", file.display())))?;
        let rel = file.strip_prefix(root).unwrap_or(file);
        records.extend(page_passages(&page_url(rel), &text));
    }
    if records.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{}: no passages found ({} HTML files, none with text)",
            root.display(),
            files.len()
        )));
    }
    Ok(records)
}

fn collect_pages(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if kind.is_dir() {
            collect_pages(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("html" | "htm")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// `/docs/intro/` for `docs/intro/index.html`, `/about.html` for `about.html`.
pub fn page_url(rel: &Path) -> String {
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let mut url = format!("/{}", parts.join("/"));
    if url.ends_with("/index.html") || url == "/index.html" {
        url.truncate(url.len() - "index.html".len());
    }
    url
}

/// One heading's worth of text blocks.
#[derive(Default)]
struct Section {
    heading: String,
    anchor: Option<String>,
    blocks: Vec<String>,
}

struct Walker {
    sections: Vec<Section>,
    inline: String,
}

impl Walker {
    fn flush_block(&mut self) {
        let block = collapse_whitespace(&self.inline);
        self.inline.clear();
        if !block.is_empty() {
            if self.sections.is_empty() {
                self.sections.push(Section::default());
            }
            if let Some(s) = self.sections.last_mut() {
                s.blocks.push(block);
            }
        }
    }

    fn walk(&mut self, el: ElementRef) {
        let name = el.value().name();
        if SKIPPED.contains(&name) || el.value().attr("data-dotfind-ignore").is_some() {
            return;
        }
        if let Some(level) = name
            .strip_prefix('h')
            .and_then(|l| l.parse::<u8>().ok())
            .filter(|l| (1..=6).contains(l))
        {
            let _ = level;
            self.flush_block();
            let heading = collapse_whitespace(&el.text().collect::<String>());
            let anchor = el.value().id().map(str::to_string).or_else(|| {
                el.descendants().filter_map(ElementRef::wrap).find_map(|d| {
                    d.value()
                        .id()
                        .or_else(|| d.value().attr("name"))
                        .map(str::to_string)
                })
            });
            self.sections.push(Section {
                heading,
                anchor,
                blocks: Vec::new(),
            });
            return;
        }
        let block = BLOCKS.contains(&name);
        if block {
            self.flush_block();
        }
        if matches!(name, "td" | "th") && !self.inline.trim().is_empty() {
            self.inline.push_str(" | ");
        }
        for child in el.children() {
            match child.value() {
                Node::Text(t) => {
                    self.inline.push_str(t);
                }
                Node::Element(_) => {
                    if let Some(c) = ElementRef::wrap(child) {
                        self.walk(c);
                    }
                }
                _ => {}
            }
        }
        if block || matches!(name, "td" | "th") {
            if block {
                self.flush_block();
            } else {
                self.inline.push(' ');
            }
        }
    }
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Length in "words": whitespace-separated tokens, with each CJK character counted as one
/// (those scripts do not separate words with spaces).
pub fn word_count(s: &str) -> usize {
    s.split_whitespace()
        .map(|w| {
            let cjk = w.chars().filter(|&c| is_cjk(c)).count();
            let rest = w.chars().any(|c| !is_cjk(c)) as usize;
            (cjk + rest).max(1)
        })
        .sum()
}

/// Splits text into sentences, keeping the terminator with its sentence.
fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        current.push(c);
        let ends = matches!(c, '。' | '！' | '？')
            || (matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|n| n.is_whitespace()));
        if ends {
            out.push(current.trim().to_string());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

/// Cuts an over-long piece into chunks of at most `max` words (characters for CJK runs).
fn hard_split(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut words = 0;
    let push_unit = |unit: &str, out: &mut Vec<String>, current: &mut String, words: &mut usize| {
        let n = word_count(unit);
        if *words + n > max && !current.is_empty() {
            out.push(std::mem::take(current));
            *words = 0;
        }
        if !current.is_empty() && !unit.chars().next().is_some_and(is_cjk) {
            current.push(' ');
        }
        current.push_str(unit);
        *words += n;
    };
    for token in text.split_whitespace() {
        if word_count(token) > max {
            for c in token.chars() {
                push_unit(&c.to_string(), &mut out, &mut current, &mut words);
            }
        } else {
            push_unit(token, &mut out, &mut current, &mut words);
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Packs a section's blocks into passages of at most `max` words, splitting long blocks at
/// sentence boundaries first and at words only when a sentence alone is too long.
pub fn pack_passages(blocks: &[String], max: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    for block in blocks {
        if word_count(block) <= max {
            pieces.push(block.clone());
        } else {
            for s in sentences(block) {
                if word_count(&s) <= max {
                    pieces.push(s);
                } else {
                    pieces.extend(hard_split(&s, max));
                }
            }
        }
    }
    let mut passages: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut words = 0;
    for piece in pieces {
        let n = word_count(&piece);
        if words + n > max && !current.is_empty() {
            passages.push(std::mem::take(&mut current));
            words = 0;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(&piece);
        words += n;
    }
    if !current.is_empty() {
        passages.push(current);
    }
    passages
}

/// Extracts one page's passages.
pub fn page_passages(url: &str, html: &str) -> Vec<PassageRecord> {
    let doc = Html::parse_document(html);
    let select = |css: &str| {
        Selector::parse(css)
            .ok()
            .and_then(|s| doc.select(&s).next())
    };
    let title = select("title")
        .map(|t| collapse_whitespace(&t.text().collect::<String>()))
        .filter(|t| !t.is_empty())
        .or_else(|| select("h1").map(|h| collapse_whitespace(&h.text().collect::<String>())))
        .unwrap_or_else(|| url.to_string());
    let Some(root) = select("[data-dotfind-body]")
        .or_else(|| select("main"))
        .or_else(|| select("body"))
    else {
        return Vec::new();
    };
    if root.value().attr("data-dotfind-ignore").is_some() {
        return Vec::new();
    }
    let mut walker = Walker {
        sections: Vec::new(),
        inline: String::new(),
    };
    walker.walk(root);
    walker.flush_block();

    let mut records = Vec::new();
    for section in &walker.sections {
        for text in pack_passages(&section.blocks, MAX_PASSAGE_WORDS) {
            let n = records.len();
            records.push(PassageRecord {
                id: format!("{url}#p{n}"),
                doc_id: url.to_string(),
                url: match &section.anchor {
                    Some(a) => format!("{url}#{a}"),
                    None => url.to_string(),
                },
                title: title.clone(),
                heading: section.heading.clone(),
                text,
            });
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_drop_index_html() {
        assert_eq!(page_url(Path::new("index.html")), "/");
        assert_eq!(page_url(Path::new("docs/intro/index.html")), "/docs/intro/");
        assert_eq!(page_url(Path::new("about.html")), "/about.html");
    }

    #[test]
    fn words_count_cjk_characters() {
        assert_eq!(word_count("hello big world"), 3);
        assert_eq!(word_count("東京は日本"), 5);
        assert_eq!(word_count("Tokyo 東京"), 3);
    }

    #[test]
    fn long_blocks_split_at_sentences_then_words() {
        let sentence = format!("{}.", vec!["word"; 30].join(" "));
        let block = vec![sentence.clone(); 10].join(" "); // 300 words, 10 sentences
        let passages = pack_passages(&[block], 200);
        assert_eq!(
            passages.iter().map(|p| word_count(p)).collect::<Vec<_>>(),
            vec![180, 120]
        );
        assert!(
            passages.iter().all(|p| p.ends_with('.')),
            "cut at sentence ends"
        );

        let run_on = vec!["w"; 450].join(" ");
        let counts: Vec<_> = pack_passages(&[run_on], 200)
            .iter()
            .map(|p| word_count(p))
            .collect();
        assert_eq!(counts, vec![200, 200, 50]);

        let cjk = "東".repeat(450);
        let counts: Vec<_> = pack_passages(&[cjk], 200)
            .iter()
            .map(|p| word_count(p))
            .collect();
        assert_eq!(counts, vec![200, 200, 50]);
    }

    #[test]
    fn short_blocks_are_packed_together() {
        let blocks: Vec<String> = (0..5)
            .map(|i| format!("paragraph {i} {}", vec!["x"; 48].join(" ")))
            .collect();
        let counts: Vec<_> = pack_passages(&blocks, 200)
            .iter()
            .map(|p| word_count(p))
            .collect();
        assert_eq!(counts, vec![200, 50]);
    }
}
