//! `tokenizer.json`: parsed with a truncation limit, then used on text of every script.
#![no_main]
use dotfind::model::tokenize::TextTokenizer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tokenizer) = TextTokenizer::from_json(data, 64) else {
        return;
    };
    for text in [
        "",
        "what is rust ownership?",
        "東京の天気 🙂 naïve café",
        "a\u{0}b\u{200b}c",
    ] {
        if let Ok(tokens) = tokenizer.tokenize(text) {
            assert!(tokens.len() <= 64);
        }
    }
});
