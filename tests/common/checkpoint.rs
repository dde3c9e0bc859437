//! The random DistilBERT checkpoints of the tests: the weights tools/model/make_fixtures.py
//! computed PyTorch's references from, written as a Hugging Face folder. Shared by the
//! integration tests and `examples/reference_checkpoint.rs` (which writes the reference
//! model's shape for the browser test and the bytes benchmark), so it uses no other helper.

use std::error::Error;
use std::path::Path;

/// Element `i` of the pseudo-random tensor `name`: `center + (2u − 1)·amplitude` with `u`
/// from splitmix64 of fnv1a64(name) + i, in f64, rounded to f32 — the generator of
/// tools/model/make_fixtures.py, which computed the reference of the same weights.
pub fn random_tensor(name: &str, len: usize, center: f64, amplitude: f64) -> Vec<f32> {
    let seed = name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    });
    (0..len as u64)
        .map(|i| {
            let mut z = seed.wrapping_add(i).wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = (z >> 11) as f64 * 2f64.powi(-53);
            (center + (2.0 * u - 1.0) * amplitude) as f32
        })
        .collect()
}

/// The tensors of the random DistilBERT of tools/model/make_fixtures.py, in its order:
/// (name, shape, values).
pub fn random_distilbert(config: &serde_json::Value) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let get = |k: &str| config[k].as_u64().unwrap() as usize;
    let (h, inner) = (get("dim"), get("hidden_dim"));
    let mut spec: Vec<(String, Vec<usize>, f64, f64)> = vec![
        (
            "embeddings.word_embeddings.weight".into(),
            vec![get("vocab_size"), h],
            0.0,
            0.1,
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![get("max_position_embeddings"), h],
            0.0,
            0.1,
        ),
        ("embeddings.LayerNorm.weight".into(), vec![h], 1.0, 0.1),
        ("embeddings.LayerNorm.bias".into(), vec![h], 0.0, 0.1),
    ];
    for i in 0..get("n_layers") {
        let p = format!("transformer.layer.{i}");
        for lin in ["q_lin", "k_lin", "v_lin", "out_lin"] {
            spec.push((format!("{p}.attention.{lin}.weight"), vec![h, h], 0.0, 0.05));
            spec.push((format!("{p}.attention.{lin}.bias"), vec![h], 0.0, 0.02));
        }
        spec.extend([
            (format!("{p}.sa_layer_norm.weight"), vec![h], 1.0, 0.1),
            (format!("{p}.sa_layer_norm.bias"), vec![h], 0.0, 0.1),
            (format!("{p}.ffn.lin1.weight"), vec![inner, h], 0.0, 0.05),
            (format!("{p}.ffn.lin1.bias"), vec![inner], 0.0, 0.02),
            (format!("{p}.ffn.lin2.weight"), vec![h, inner], 0.0, 0.05),
            (format!("{p}.ffn.lin2.bias"), vec![h], 0.0, 0.02),
            (format!("{p}.output_layer_norm.weight"), vec![h], 1.0, 0.1),
            (format!("{p}.output_layer_norm.bias"), vec![h], 0.0, 0.1),
        ]);
    }
    spec.into_iter()
        .map(|(name, shape, c, a)| {
            let values = random_tensor(&name, shape.iter().product(), c, a);
            (name, shape, values)
        })
        .collect()
}

/// sha256 over every tensor's little-endian f32 bytes, in order (as the fixture records).
pub fn weights_sha256(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> String {
    let mut bytes = Vec::new();
    for (_, _, values) in tensors {
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
    dotfind::checksum::sha256_hex(&bytes)
}

/// A checkpoint folder: `config` as config.json, the tensors as model.safetensors, and
/// `tokenizer` (the stand-in's: its vocabulary is DistilBERT-base's size) as tokenizer.json.
pub fn write_checkpoint(
    dir: &Path,
    config: &serde_json::Value,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    tokenizer: &Path,
) -> Result<(), Box<dyn Error>> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("config.json"), config.to_string())?;
    std::fs::copy(tokenizer, dir.join("tokenizer.json"))?;
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::new();
    for ((name, shape, _), data) in tensors.iter().zip(&bytes) {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)?;
        views.push((name.clone(), view));
    }
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors"))?;
    Ok(())
}
