//! Model hyper-parameters from GGUF metadata (`{arch}.*` keys, as llama.cpp names them).

use crate::error::{Error, Result};
use crate::gguf::{File, Value};

/// A llama-architecture model (SmolLM2, Llama 2/3, …).
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub rms_eps: f32,
    pub rope_theta: f32,
    /// Dimensions per head that are rotated.
    pub rope_dim: usize,
    /// Linear position scaling (`rope.scaling.type = linear`, factor f: positions / f).
    pub rope_linear_factor: f32,
    /// Output projection shares the token embedding.
    pub tied_output: bool,
}

pub(crate) fn get<'a>(file: &'a File, key: &str) -> Result<&'a Value> {
    file.metadata(key).ok_or_else(|| Error::Metadata {
        key: key.into(),
        reason: format!("missing from {}", file.path().display()),
    })
}

pub(crate) fn count(file: &File, key: &str) -> Result<usize> {
    match get(file, key)?.as_u64() {
        Some(v) if v > 0 && v < (1 << 31) => Ok(v as usize),
        _ => Err(Error::Metadata {
            key: key.into(),
            reason: format!("{:?} is not a positive count", get(file, key)?),
        }),
    }
}

pub(crate) fn float(file: &File, key: &str) -> Result<Option<f32>> {
    match file.metadata(key) {
        None => Ok(None),
        Some(v) => v.as_f64().map(|f| Some(f as f32)).ok_or_else(|| Error::Metadata {
            key: key.into(),
            reason: format!("{v:?} is not a number"),
        }),
    }
}

pub(crate) fn inconsistent(key: &str, reason: String) -> Error {
    Error::Metadata {
        key: key.into(),
        reason,
    }
}

impl LlamaConfig {
    pub fn from_gguf(file: &File) -> Result<Self> {
        let arch = get(file, "general.architecture")?
            .as_str()
            .unwrap_or_default()
            .to_string();
        if arch != "llama" {
            return Err(Error::Unsupported(format!(
                "{}: architecture '{arch}' is not llama",
                file.path().display()
            )));
        }
        let k = |s: &str| format!("llama.{s}");
        let n_embd = count(file, &k("embedding_length"))?;
        let n_head = count(file, &k("attention.head_count"))?;
        let n_head_kv = match file.metadata(&k("attention.head_count_kv")) {
            Some(_) => count(file, &k("attention.head_count_kv"))?,
            None => n_head,
        };
        if n_embd % n_head != 0 || n_head % n_head_kv != 0 {
            return Err(inconsistent(
                &k("attention.head_count"),
                format!("{n_head} heads ({n_head_kv} kv) do not divide {n_embd}"),
            ));
        }
        let head_dim = n_embd / n_head;
        let rope_dim = match file.metadata(&k("rope.dimension_count")) {
            Some(_) => count(file, &k("rope.dimension_count"))?,
            None => head_dim,
        };
        if rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(inconsistent(
                &k("rope.dimension_count"),
                format!("{rope_dim} for heads of {head_dim}"),
            ));
        }
        let rope_linear_factor = match file.metadata(&k("rope.scaling.type")).and_then(Value::as_str) {
            None | Some("none") => 1.0,
            Some("linear") => float(file, &k("rope.scaling.factor"))?.unwrap_or(1.0),
            Some(other) => {
                return Err(Error::Unsupported(format!("rope scaling '{other}' for llama")));
            }
        };
        let tokens = get(file, "tokenizer.ggml.tokens")
            .ok()
            .and_then(Value::as_array)
            .map(<[Value]>::len);
        let n_vocab = match file.metadata(&k("vocab_size")) {
            Some(_) => count(file, &k("vocab_size"))?,
            None => tokens
                .ok_or_else(|| inconsistent("tokenizer.ggml.tokens", "missing: vocabulary size unknown".into()))?,
        };
        let embd = file.tensor("token_embd.weight")?;
        if embd.info.dims != [n_embd as u64, n_vocab as u64] {
            return Err(inconsistent(
                &k("embedding_length"),
                format!(
                    "token_embd.weight is {:?}, metadata says [{n_embd}, {n_vocab}]",
                    embd.info.dims
                ),
            ));
        }
        Ok(LlamaConfig {
            n_layer: count(file, &k("block_count"))?,
            n_embd,
            n_head,
            n_head_kv,
            head_dim,
            n_ff: count(file, &k("feed_forward_length"))?,
            n_vocab,
            n_ctx_train: count(file, &k("context_length"))?,
            rms_eps: float(file, &k("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
            rope_theta: float(file, &k("rope.freq_base"))?.unwrap_or(10_000.0),
            rope_dim,
            rope_linear_factor,
            tied_output: file.tensor("output.weight").is_err(),
        })
    }

    /// Width of the K and V projections.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}
