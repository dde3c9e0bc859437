//! Text helpers of search: the word split BM25 and the HTML reader share, and snippets.

/// Hiragana, katakana, CJK ideographs and Hangul: scripts written without spaces between
/// words, so each character is treated as a word (BM25 terms, passage lengths).
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF)
}

/// Lowercased alphanumeric runs; each CJK character is a term of its own.
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if is_cjk(c) {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            out.push(c.to_string());
        } else if c.is_alphanumeric() {
            current.extend(c.to_lowercase());
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A passage text cut to about `max_chars` characters at a word boundary, for result lists.
pub fn snippet(text: &str, max_chars: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some((cut, _)) = one_line.char_indices().nth(max_chars) else {
        return one_line;
    };
    let head = &one_line[..cut];
    let head = head
        .rfind(' ')
        .filter(|&i| i > cut / 2)
        .map_or(head, |i| &head[..i]);
    format!("{head}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_lowercase_words_and_cjk_characters() {
        assert_eq!(
            terms("Rust's HashMap<K, V>: 東京!"),
            vec!["rust", "s", "hashmap", "k", "v", "東", "京"]
        );
    }

    #[test]
    fn snippets_cut_at_words() {
        assert_eq!(snippet("short  text\n here", 50), "short text here");
        assert_eq!(snippet("alpha beta gamma delta", 13), "alpha beta…");
        assert_eq!(snippet("東京は日本の首都です", 4), "東京は日…");
    }
}
