//! A fast path for the tokenizers BERT-family bundles ship: `tokenizer.json` of a WordPiece
//! model parsed the way `tokenizers` does it, but in one pass, with the vocabulary read
//! straight into a map of its final size. The generic path buffers a model twice (an
//! untagged enum, then a JSON value tree) and grows the 30k-entry map as it reads, which was
//! most of a browser's tokenizer start-up.

use serde_json::value::RawValue;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, PaddingParams,
    PostProcessorWrapper, PreTokenizerWrapper, Tokenizer, TokenizerBuilder, TruncationParams,
};

/// The file's sections; absent ones read as `null`, as the generic path leaves them unset.
#[derive(serde::Deserialize)]
struct File<'a> {
    /// A string if present (`null` is not absent here, as in tokenizers).
    #[serde(default, borrow, deserialize_with = "present")]
    version: Option<&'a RawValue>,
    #[serde(borrow)]
    truncation: Option<&'a RawValue>,
    #[serde(borrow)]
    padding: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    added_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    normalizer: Option<&'a RawValue>,
    #[serde(borrow)]
    pre_tokenizer: Option<&'a RawValue>,
    #[serde(borrow)]
    post_processor: Option<&'a RawValue>,
    #[serde(borrow)]
    decoder: Option<&'a RawValue>,
    #[serde(deserialize_with = "object")]
    model: WordPieceModel,
}

/// An added token as tokenizers serializes it: with its id.
#[derive(serde::Deserialize)]
struct AddedTokenWithId {
    #[serde(rename = "id")]
    _id: u32,
    #[serde(flatten)]
    token: AddedToken,
}

/// A field's raw value, `null` included (`Option` alone reads `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}

/// `T` from a JSON object only: derived structs also accept an array of their fields,
/// which tokenizers does not.
fn object<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    struct Object<T>(std::marker::PhantomData<T>);
    impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Object<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<T, M::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(Object(std::marker::PhantomData))
}

/// `tokenizers`' WordPiece serialization; any other model type fails the parse.
#[derive(serde::Deserialize)]
struct WordPieceModel {
    #[serde(rename = "type")]
    kind: WordPieceTag,
    unk_token: String,
    continuing_subword_prefix: String,
    max_input_chars_per_word: usize,
    #[serde(deserialize_with = "vocab_entries")]
    vocab: Vec<(String, u32)>,
}

#[derive(serde::Deserialize)]
enum WordPieceTag {
    WordPiece,
}

/// The vocabulary object's entries in file order (a later duplicate wins, as in a map).
fn vocab_entries<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(String, u32)>, D::Error> {
    struct Entries;
    impl<'de> serde::de::Visitor<'de> for Entries {
        type Value = Vec<(String, u32)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a vocabulary object")
        }
        fn visit_map<M: serde::de::MapAccess<'de>>(
            self,
            mut map: M,
        ) -> Result<Self::Value, M::Error> {
            let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
            while let Some(entry) = map.next_entry()? {
                entries.push(entry);
            }
            Ok(entries)
        }
    }
    d.deserialize_map(Entries)
}

fn section<'a, T: serde::Deserialize<'a>>(raw: Option<&'a RawValue>) -> Option<T> {
    serde_json::from_str(raw.map_or("null", |raw| raw.get())).ok()
}

/// The tokenizer `bytes` define when they are a WordPiece `tokenizer.json` of the usual
/// shape; `None` for anything else, or anything unusual, so that the generic path parses it
/// (or names what is wrong with it).
pub(super) fn wordpiece_tokenizer(bytes: &[u8]) -> Option<Tokenizer> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let file: File = object(&mut json).ok()?;
    json.end().ok()?;
    if let Some(version) = file.version {
        if serde_json::from_str::<&str>(version.get()).ok()? != "1.0" {
            return None;
        }
    }
    // What would panic `tokenizers` goes to the generic path, which refuses it by name.
    let normalizer: serde_json::Value = section(file.normalizer)?;
    let post_processor: serde_json::Value = section(file.post_processor)?;
    if super::what_tokenizers_panics_on(Some(&normalizer), Some(&post_processor)).is_some() {
        return None;
    }
    let wordpiece = wordpiece_model(file.model)?;
    let added = added_tokens(file.added_tokens)?;
    let mut tokenizer = TokenizerBuilder::<
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(ModelWrapper::WordPiece(wordpiece))
    .with_normalizer(section(file.normalizer)?)
    .with_pre_tokenizer(section(file.pre_tokenizer)?)
    .with_post_processor(section(file.post_processor)?)
    .with_decoder(section(file.decoder)?)
    .with_truncation(section::<Option<TruncationParams>>(file.truncation)?)
    .with_padding(section::<Option<PaddingParams>>(file.padding)?)
    .build()
    .ok()?;
    tokenizer.add_tokens(&added);
    Some(tokenizer.into())
}

/// The WordPiece model, its vocabulary collected at its final size (the map reserves what
/// the entries' count says).
fn wordpiece_model(model: WordPieceModel) -> Option<WordPiece> {
    let WordPieceModel {
        kind: WordPieceTag::WordPiece,
        unk_token,
        continuing_subword_prefix,
        max_input_chars_per_word,
        vocab,
    } = model;
    let vocab: ahash::AHashMap<String, u32> = vocab.into_iter().collect();
    WordPiece::builder()
        .vocab(vocab)
        .unk_token(unk_token)
        .continuing_subword_prefix(continuing_subword_prefix)
        .max_input_chars_per_word(max_input_chars_per_word)
        .build()
        .ok()
}

/// The `added_tokens` section, without the ids tokenizers serializes with them.
fn added_tokens(raw: Option<&RawValue>) -> Option<Vec<AddedToken>> {
    Some(match raw {
        Some(raw) => serde_json::from_str::<Vec<AddedTokenWithId>>(raw.get())
            .ok()?
            .into_iter()
            .map(|t| t.token)
            .collect(),
        None => Vec::new(),
    })
}
