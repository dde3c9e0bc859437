//! Token ids equal the Python `tokenizers` package's, on the hard strings of
//! tests/fixtures/hard_strings.json (the preparation tool's reference). Needs the prepared
//! default model (`./build.sh test` does it).

mod common;

use common::{bundle, open_bundle, own_reference};
use dotfind::model::tokenize::TextTokenizer;

#[test]
fn token_ids_equal_python_tokenizers_on_hard_strings() {
    let reference = own_reference();
    assert!(
        reference.tokenization.len() >= 20,
        "reference lacks tokenization cases"
    );
    let tokenizer_json = std::fs::read(bundle("int8").join("tokenizer.json")).unwrap();
    let manifest = open_bundle("int8").manifest;
    let query = TextTokenizer::from_json(&tokenizer_json, manifest.max_query_tokens).unwrap();
    let passage = TextTokenizer::from_json(&tokenizer_json, manifest.max_passage_tokens).unwrap();
    for case in &reference.tokenization {
        let t = if case.kind == "query" {
            &query
        } else {
            &passage
        };
        let ids = t.tokenize(&case.text).unwrap().ids;
        assert_eq!(
            ids, case.input_ids,
            "{} tokenization of {:?}",
            case.kind, case.text
        );
    }
    // The 2,000-word case really hit truncation at both limits.
    assert!(reference
        .tokenization
        .iter()
        .any(|c| c.kind == "passage" && c.input_ids.len() == manifest.max_passage_tokens));
}
