//! `tokenizer.json` for checkpoints that ship only `vocab.txt` (older BERT-family models,
//! the reference model among them): BERT's WordPiece tokenizer as `transformers` builds it —
//! BERT normalizer (lowercasing as `tokenizer_config.json` says, default yes), BERT
//! pre-tokenizer, `[CLS] text [SEP]`.

use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    TokenizerBuilder,
};

use crate::error::{Error, Result};

fn invalid(reason: String) -> Error {
    Error::InvalidTokenizer(format!("vocab.txt: {reason}"))
}

/// The `tokenizer.json` bytes of the WordPiece tokenizer `vocab` (one token per line, ids in
/// line order) defines, with `tokenizer_config.json`'s settings if given.
pub fn from_vocab(vocab: &[u8], settings: Option<&[u8]>) -> Result<Vec<u8>> {
    let text = std::str::from_utf8(vocab).map_err(|e| invalid(e.to_string()))?;
    let tokens: ahash::AHashMap<String, u32> = text
        .lines()
        .enumerate()
        .map(|(id, token)| (token.to_string(), id as u32))
        .collect();
    let id = |token: &str| {
        tokens
            .get(token)
            .copied()
            .ok_or_else(|| invalid(format!("no {token} token")))
    };
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    id("[UNK]")?;
    let lowercase = settings
        .and_then(|s| serde_json::from_slice::<serde_json::Value>(s).ok())
        .and_then(|v| v.get("do_lower_case").and_then(serde_json::Value::as_bool))
        .unwrap_or(true);
    let model = WordPiece::builder()
        .vocab(tokens)
        .unk_token("[UNK]".into())
        .continuing_subword_prefix("##".into())
        .max_input_chars_per_word(100)
        .build()
        .map_err(|e| invalid(e.to_string()))?;
    let template = TemplateProcessing::builder()
        .try_single("[CLS] $A [SEP]")
        .and_then(|b| b.try_pair("[CLS] $A [SEP] $B:1 [SEP]:1"))
        .map_err(invalid)?
        .special_tokens(vec![("[CLS]", cls), ("[SEP]", sep)])
        .build()
        .map_err(|e| invalid(e.to_string()))?;
    let tokenizer = TokenizerBuilder::<
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(ModelWrapper::WordPiece(model))
    .with_normalizer(Some(NormalizerWrapper::BertNormalizer(
        BertNormalizer::new(true, true, None, lowercase),
    )))
    .with_pre_tokenizer(Some(PreTokenizerWrapper::BertPreTokenizer(
        BertPreTokenizer,
    )))
    .with_post_processor(Some(PostProcessorWrapper::Template(template)))
    .with_decoder(Some(DecoderWrapper::WordPiece(WordPieceDecoder::default())))
    .build()
    .map_err(|e| invalid(e.to_string()))?;
    let tokenizer: tokenizers::Tokenizer = tokenizer.into();
    let json = tokenizer
        .to_string(true)
        .map_err(|e| invalid(e.to_string()))?;
    Ok(json.into_bytes())
}
