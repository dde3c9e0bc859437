//! Text → token ids, exactly as the Python `tokenizers` package does it.
//!
//! Shipped `tokenizer.json` files often enable padding (all-MiniLM pads to 128) and a
//! truncation length that is not the bundle's; both are overridden here so that a query
//! costs only its own tokens and the model never sees more than the bundle allows.

mod wordpiece;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};
use wordpiece::wordpiece_tokenizer;

/// Queries longer than this are rejected before tokenization: nobody types 64 KiB into a
/// search box, and tokenizing megabytes in a browser would look like a hang.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

/// Token ids and attention mask of one text, ready for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedText {
    pub ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
}

impl TokenizedText {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A tokenizer fixed to one maximum length, with padding disabled.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    max_tokens: usize,
    /// Id used when a batch pads shorter texts; masked out, so any valid id works.
    pad_id: i64,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

impl TextTokenizer {
    /// Parses `tokenizer.json` bytes and pins truncation to `max_tokens` (special tokens included).
    pub fn from_json(bytes: &[u8], max_tokens: usize) -> Result<Self> {
        if bytes.is_empty() {
            return Err(Error::InvalidTokenizer("empty file".into()));
        }
        let parsed = match wordpiece_tokenizer(bytes) {
            Some(tokenizer) => Ok(tokenizer),
            None => {
                refuse_what_tokenizers_panics_on(bytes)?;
                Tokenizer::from_bytes(bytes)
            }
        };
        let mut inner = parsed.map_err(|e| {
            Error::InvalidTokenizer(format!("not a valid tokenizer definition: {e}"))
        })?;
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| inner.token_to_id("[PAD]"))
            .unwrap_or(0);
        inner.with_padding(None);
        truncate(&mut inner, max_tokens)?;
        Ok(Self {
            inner,
            max_tokens,
            pad_id: i64::from(pad_id),
        })
    }

    /// The same tokenizer truncating at `max_tokens` instead: a copy, much cheaper than
    /// parsing `tokenizer.json` again (a 30k-entry vocabulary), e.g. for passages vs queries.
    pub fn with_max_tokens(&self, max_tokens: usize) -> Result<Self> {
        let mut inner = self.inner.clone();
        truncate(&mut inner, max_tokens)?;
        Ok(Self {
            inner,
            max_tokens,
            pad_id: self.pad_id,
        })
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// Tokenizes one text with special tokens. Any Unicode is accepted; the tokenizer's
    /// normalizer decides what survives (control characters are dropped by BERT's).
    pub fn tokenize(&self, text: &str) -> Result<TokenizedText> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::InvalidTokenizer(format!("cannot tokenize input: {e}")))?;
        let ids: Vec<i64> = encoding.get_ids().iter().map(|&id| i64::from(id)).collect();
        let attention_mask = encoding
            .get_attention_mask()
            .iter()
            .map(|&m| i64::from(m))
            .collect();
        Ok(TokenizedText {
            ids,
            attention_mask,
        })
    }
}

/// The `tokenizers` crate panics, rather than failing, on some input a fetched file can hold
/// (found by fuzzing, `fuzz/`): malformed JSON inside a `decoder`, and the sections
/// [`what_tokenizers_panics_on`] names. A panic in wasm kills the worker, so these are
/// refused here, by name, before the crate sees them.
fn refuse_what_tokenizers_panics_on(bytes: &[u8]) -> Result<()> {
    let json: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::InvalidTokenizer(format!("not valid JSON: {e}")))?;
    match what_tokenizers_panics_on(json.get("normalizer"), json.get("post_processor")) {
        Some(reason) => Err(Error::InvalidTokenizer(reason)),
        None => Ok(()),
    }
}

/// Why `tokenizers` would panic on these sections, if it would: a `Precompiled` normalizer
/// (SentencePiece's, never BERT's) whose map may not parse; a template naming a special
/// token it does not define, or a second sequence in the single-text template.
fn what_tokenizers_panics_on(
    normalizer: Option<&serde_json::Value>,
    post_processor: Option<&serde_json::Value>,
) -> Option<String> {
    let precompiled =
        |o: &serde_json::Map<_, _>| o.get("type").and_then(|t| t.as_str()) == Some("Precompiled");
    if normalizer.is_some_and(|n| !objects_where(n, &precompiled).is_empty()) {
        return Some("normalizer Precompiled (SentencePiece) is not supported: dotfind runs WordPiece tokenizers".into());
    }
    // Any object shaped like a template: `tokenizers` reads post-processors by shape too,
    // whatever their `type` says.
    let templates = post_processor.map_or(vec![], |p| {
        objects_where(p, &|o| o.contains_key("single") || o.contains_key("pair"))
    });
    for template in templates {
        let defined = template.get("special_tokens").and_then(|t| t.as_object());
        for (which, pieces) in ["single", "pair"]
            .iter()
            .filter_map(|w| Some((*w, template.get(*w)?.as_array()?)))
        {
            for piece in pieces {
                if let Some(id) = piece.pointer("/SpecialToken/id").and_then(|id| id.as_str()) {
                    if !defined.is_some_and(|d| d.contains_key(id)) {
                        return Some(format!("post_processor: template {which} uses special token {id:?}, which special_tokens does not define"));
                    }
                }
                if which == "single"
                    && piece.pointer("/Sequence/id").and_then(|id| id.as_str()) == Some("B")
                {
                    return Some("post_processor: the single-text template uses sequence B".into());
                }
            }
        }
    }
    None
}

/// The objects `keep` accepts, at any depth (sequences nest them).
fn objects_where<'a>(
    value: &'a serde_json::Value,
    keep: &dyn Fn(&serde_json::Map<String, serde_json::Value>) -> bool,
) -> Vec<&'a serde_json::Map<String, serde_json::Value>> {
    match value {
        serde_json::Value::Object(map) => {
            let mut found: Vec<_> = map.values().flat_map(|v| objects_where(v, keep)).collect();
            if keep(map) {
                found.push(map);
            }
            found
        }
        serde_json::Value::Array(items) => {
            items.iter().flat_map(|v| objects_where(v, keep)).collect()
        }
        _ => vec![],
    }
}

/// Sets `tokenizer` to truncate at `max_tokens`, special tokens included.
fn truncate(tokenizer: &mut Tokenizer, max_tokens: usize) -> Result<()> {
    tokenizer
        .with_truncation(Some(TruncationParams {
            direction: TruncationDirection::Right,
            max_length: max_tokens,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        }))
        .map_err(|e| {
            Error::InvalidTokenizer(format!("cannot truncate at {max_tokens} tokens: {e}"))
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real (tiny) WordPiece tokenizer with BERT's normalizer, pre-tokenizer and template.
    pub(crate) fn tiny_bert_tokenizer_json() -> String {
        let vocab = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "##s", "!", "cafe",
        ];
        let vocab: serde_json::Map<String, serde_json::Value> = vocab
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i.into()))
            .collect();
        serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": {"strategy": {"Fixed": 16}, "direction": "Right", "pad_to_multiple_of": null,
                        "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
            "added_tokens": [],
            "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                           "strip_accents": null, "lowercase": true},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                           {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}}],
                "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                                   "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
            "decoder": null,
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                      "max_input_chars_per_word": 100, "vocab": vocab}
        })
        .to_string()
    }

    #[test]
    fn shipped_padding_is_disabled_and_special_tokens_added() {
        let t = TextTokenizer::from_json(tiny_bert_tokenizer_json().as_bytes(), 8).unwrap();
        let out = t.tokenize("Hello worlds!").unwrap();
        assert_eq!(out.ids, vec![2, 4, 5, 6, 7, 3]);
        assert_eq!(out.attention_mask, vec![1; 6]);
    }

    #[test]
    fn truncation_keeps_special_tokens_within_the_limit() {
        let t = TextTokenizer::from_json(tiny_bert_tokenizer_json().as_bytes(), 4).unwrap();
        let out = t.tokenize("hello hello hello hello hello").unwrap();
        assert_eq!(out.ids, vec![2, 4, 4, 3]);
        // A copy with another limit truncates at its own, and leaves the original's alone.
        let longer = t.with_max_tokens(6).unwrap();
        assert_eq!(longer.max_tokens(), 6);
        let out = longer.tokenize("hello hello hello hello hello").unwrap();
        assert_eq!(out.ids, vec![2, 4, 4, 4, 4, 3]);
        assert_eq!(
            t.tokenize("hello hello hello").unwrap().ids,
            vec![2, 4, 4, 3]
        );
        assert_eq!(longer.pad_id(), t.pad_id());
    }

    #[test]
    fn unknown_words_and_control_characters() {
        let t = TextTokenizer::from_json(tiny_bert_tokenizer_json().as_bytes(), 16).unwrap();
        assert_eq!(t.tokenize("zzz\u{0}\u{7}").unwrap().ids, vec![2, 1, 3]);
        assert_eq!(t.tokenize("").unwrap().ids, vec![2, 3]);
    }

    #[test]
    fn the_wordpiece_fast_path_builds_what_tokenizers_builds() {
        let json = tiny_bert_tokenizer_json();
        let mut with_added: serde_json::Value = serde_json::from_str(&json).unwrap();
        with_added["added_tokens"] = serde_json::json!([
            {"id": 0, "content": "[PAD]", "single_word": false, "lstrip": false, "rstrip": false,
             "normalized": false, "special": true},
            {"id": 9, "content": "dotfind", "single_word": false, "lstrip": false, "rstrip": false,
             "normalized": true, "special": false}
        ]);
        // Escaped tokens, a token listed twice (the last id wins, as in a map) and a section
        // left out.
        let mut unusual = with_added.clone();
        unusual.as_object_mut().unwrap().remove("decoder");
        let unusual = unusual.to_string().replacen(
            "\"cafe\":8",
            r#""cafe":8,"caf\u00e9":9,"\"q\"":10,"cafe":11"#,
            1,
        );
        assert!(unusual.contains(r#""cafe":11"#), "{unusual}");
        for json in [json, with_added.to_string(), unusual] {
            let fast = wordpiece_tokenizer(json.as_bytes()).expect("a WordPiece tokenizer");
            let generic = Tokenizer::from_bytes(json.as_bytes()).unwrap();
            assert_eq!(
                fast.to_string(false).unwrap(),
                generic.to_string(false).unwrap()
            );
        }
        // Not WordPiece, or not version 1.0: left to the generic path.
        let mut other: serde_json::Value =
            serde_json::from_str(&tiny_bert_tokenizer_json()).unwrap();
        other["version"] = "2.0".into();
        assert!(wordpiece_tokenizer(other.to_string().as_bytes()).is_none());
        other["version"] = "1.0".into();
        other["model"]["type"] = "WordLevel".into();
        assert!(wordpiece_tokenizer(other.to_string().as_bytes()).is_none());
        // What tokenizers refuses is left to it too (it names the problem): a null version
        // or added-token list, an added token without its id, fields given as arrays.
        let base: serde_json::Value = serde_json::from_str(&tiny_bert_tokenizer_json()).unwrap();
        let mut refused = Vec::new();
        for (key, value) in [
            ("version", serde_json::Value::Null),
            ("added_tokens", serde_json::Value::Null),
            (
                "added_tokens",
                serde_json::json!([{"content": "x", "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": true, "special": false}]),
            ),
        ] {
            let mut v = base.clone();
            v[key] = value;
            refused.push(v.to_string());
        }
        let mut array_model = base.clone();
        array_model["model"] = serde_json::json!(["WordPiece", "[UNK]", "##", 100, {"[UNK]": 0}]);
        refused.push(array_model.to_string());
        refused.push(format!("[{}]", base["version"]));
        for json in refused {
            assert!(wordpiece_tokenizer(json.as_bytes()).is_none(), "{json:.80}");
            assert!(
                Tokenizer::from_bytes(json.as_bytes()).is_err(),
                "{json:.80}"
            );
        }
    }

    #[test]
    fn bad_tokenizer_files_are_named() {
        assert_eq!(
            TextTokenizer::from_json(b"", 8).unwrap_err().to_string(),
            "tokenizer.json: empty file"
        );
        let err = TextTokenizer::from_json(b"{\"model\": 3}", 8)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("tokenizer.json: not a valid tokenizer definition:"),
            "{err}"
        );
    }

    /// Inputs on which the `tokenizers` crate panics (found by `fuzz/`, target
    /// tokenizer_json): refused by name before they reach it.
    #[test]
    fn what_tokenizers_panics_on_is_refused_by_name() {
        let base: serde_json::Value = serde_json::from_str(&tiny_bert_tokenizer_json()).unwrap();
        let broken_decoder =
            base.to_string()
                .replacen("\"decoder\":", "\"decoder\": full, \"x\":", 1);
        assert!(broken_decoder.contains("full"), "the fixture has a decoder");
        let err = TextTokenizer::from_json(broken_decoder.as_bytes(), 8).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tokenizer.json: not valid JSON: expected ident at line 1 column 13".replace(
                "13",
                &(broken_decoder.find("full").unwrap() + 2).to_string()
            )
        );
        let mut precompiled = base.clone();
        precompiled["normalizer"] = serde_json::json!({"type": "Sequence", "normalizers": [
            {"type": "Precompiled", "precompiled_charsmap": "AAAA"}
        ]});
        assert_eq!(
            TextTokenizer::from_json(precompiled.to_string().as_bytes(), 8)
                .unwrap_err()
                .to_string(),
            "tokenizer.json: normalizer Precompiled (SentencePiece) is not supported: dotfind runs WordPiece tokenizers"
        );
        let error_of = |json: serde_json::Value| {
            TextTokenizer::from_json(json.to_string().as_bytes(), 8)
                .unwrap_err()
                .to_string()
        };
        let mut undefined = base.clone();
        undefined["post_processor"]["single"][0]["SpecialToken"]["id"] = "[$LS]".into();
        assert_eq!(
            error_of(undefined),
            "tokenizer.json: post_processor: template single uses special token \"[$LS]\", which special_tokens does not define"
        );
        // `tokenizers` reads a template by its shape, whatever its type says.
        let mut mistyped = base.clone();
        mistyped["post_processor"]["type"] = "e TpmlateProce!sing".into();
        mistyped["post_processor"]["special_tokens"]["[CLS]"]["id"] = "[cLS]".into();
        let special = mistyped["post_processor"]["special_tokens"]["[CLS]"].take();
        mistyped["post_processor"]["special_tokens"]["[cLS]"] = special;
        mistyped["post_processor"]["special_tokens"]
            .as_object_mut()
            .unwrap()
            .remove("[CLS]");
        assert_eq!(
            error_of(mistyped),
            "tokenizer.json: post_processor: template single uses special token \"[CLS]\", which special_tokens does not define"
        );
        let mut second = base.clone();
        second["post_processor"]["single"][1]["Sequence"]["id"] = "B".into();
        assert_eq!(
            error_of(second),
            "tokenizer.json: post_processor: the single-text template uses sequence B"
        );
    }
}
