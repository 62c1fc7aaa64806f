//! DeepSeek-V2/V3/R1 hyper-parameters (`general.architecture = deepseek2`) from the
//! `deepseek2.*` keys, as `llama_model::load_hparams` reads them in llama.cpp's
//! src/llama-model.cpp.

use super::config::{count, float, get, inconsistent};
use crate::backend::{Gating, RopeScaling, Router};
use crate::error::{Error, Result};
use crate::gguf::{File, Value};

/// How the per-head key/value up-projections are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvLayout {
    /// `attn_k_b` `[nope, kv_lora, heads]` and `attn_v_b` `[kv_lora, v, heads]` (files
    /// converted for MLA, 2025 on).
    Split,
    /// `attn_kv_b` `[kv_lora, heads * (nope + v)]` (older files, including the January
    /// 2025 R1 quants); split at load time.
    Merged,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Deepseek2Config {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub rms_eps: f32,
    pub rope_theta: f32,
    pub rope_scaling: RopeScaling,
    /// Layers `0..dense_lead` use a dense FFN of `n_ff`; the rest are MoE.
    pub dense_lead: usize,
    pub n_ff: usize,
    /// None: queries are projected directly (`attn_q`, DeepSeek-V2-Lite).
    pub q_lora: Option<usize>,
    pub kv_lora: usize,
    /// Per-head query/key dimensions without and with rotation, and value dimension.
    pub qk_nope: usize,
    pub qk_rope: usize,
    pub v_head: usize,
    pub kv_layout: KvLayout,
    pub n_expert: usize,
    pub n_used: usize,
    pub n_shared: usize,
    pub expert_ff: usize,
    pub weights_scale: f32,
    pub weights_norm: bool,
    pub gating: Gating,
    pub groups: usize,
    pub groups_used: usize,
    /// Attention-logit factor: `kq_scale = mscale² / sqrt(qk_nope + qk_rope)`.
    pub mscale: f32,
}

fn flag(file: &File, key: &str) -> Result<Option<bool>> {
    match file.metadata(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(inconsistent(key, format!("{v:?} is not a bool"))),
    }
}

fn optional_count(file: &File, key: &str) -> Result<Option<usize>> {
    match file.metadata(key).map(Value::as_u64) {
        None => Ok(None),
        Some(Some(0)) => Ok(None),
        Some(_) => count(file, key).map(Some),
    }
}

impl Deepseek2Config {
    pub fn from_gguf(file: &File) -> Result<Self> {
        let arch = get(file, "general.architecture")?.as_str().unwrap_or_default();
        if arch != "deepseek2" {
            return Err(Error::Unsupported(format!(
                "{}: architecture '{arch}' is not deepseek2",
                file.path().display()
            )));
        }
        let k = |s: &str| format!("deepseek2.{s}");
        let n_layer = count(file, &k("block_count"))?;
        let n_embd = count(file, &k("embedding_length"))?;
        let n_head = count(file, &k("attention.head_count"))?;
        let qk_rope = count(file, &k("rope.dimension_count"))?;
        let kv_lora = count(file, &k("attention.kv_lora_rank"))?;
        let q_lora = optional_count(file, &k("attention.q_lora_rank"))?;
        let kv_layout = if file.tensor("blk.0.attn_k_b.weight").is_ok() {
            KvLayout::Split
        } else if file.tensor("blk.0.attn_kv_b.weight").is_ok() {
            KvLayout::Merged
        } else {
            return Err(inconsistent(
                "blk.0.attn_k_b.weight",
                "neither attn_k_b/attn_v_b nor attn_kv_b is present".into(),
            ));
        };
        // MLA files state the decompressed head sizes in `*_mla`; older ones in
        // key_length/value_length.
        let (key_len, value_len) = match optional_count(file, &k("attention.key_length_mla"))? {
            Some(kl) => (kl, count(file, &k("attention.value_length_mla"))?),
            None => (
                count(file, &k("attention.key_length"))?,
                count(file, &k("attention.value_length"))?,
            ),
        };
        if key_len <= qk_rope || qk_rope % 2 != 0 {
            return Err(inconsistent(
                &k("rope.dimension_count"),
                format!("{qk_rope} rotated of a key head of {key_len}"),
            ));
        }
        let gating = match file.metadata(&k("expert_gating_func")).and_then(Value::as_u64) {
            None | Some(1) => Gating::Softmax,
            Some(2) => Gating::Sigmoid,
            Some(other) => {
                return Err(Error::Unsupported(format!("expert_gating_func {other}")));
            }
        };
        let rope_scaling = match file.metadata(&k("rope.scaling.type")).and_then(Value::as_str) {
            None | Some("none") => RopeScaling::None,
            Some("linear") => RopeScaling::Linear(float(file, &k("rope.scaling.factor"))?.unwrap_or(1.0)),
            Some("yarn") => RopeScaling::Yarn {
                factor: float(file, &k("rope.scaling.factor"))?
                    .ok_or_else(|| inconsistent(&k("rope.scaling.factor"), "missing for yarn".into()))?,
                original_context: count(file, &k("rope.scaling.original_context_length"))?,
                beta_fast: float(file, &k("rope.scaling.yarn_beta_fast"))?.unwrap_or(32.0),
                beta_slow: float(file, &k("rope.scaling.yarn_beta_slow"))?.unwrap_or(1.0),
            },
            Some(other) => return Err(Error::Unsupported(format!("rope scaling '{other}'"))),
        };
        // DeepSeek's YaRN attention factor: 1 + 0.1·mscale_all_dim·ln(factor), with the
        // GGUF's yarn_log_multiplier = 0.1·mscale_all_dim (0.1 for V3/R1).
        let mscale = match rope_scaling {
            RopeScaling::Yarn { factor, .. } => {
                1.0 + float(file, &k("rope.scaling.yarn_log_multiplier"))?.unwrap_or(0.0) * factor.ln()
            }
            _ => 1.0,
        };
        let n_expert = count(file, &k("expert_count"))?;
        let groups = optional_count(file, &k("expert_group_count"))?.unwrap_or(1);
        let embd = file.tensor("token_embd.weight")?;
        let n_vocab = embd.info.dims.get(1).copied().unwrap_or(0) as usize;
        if embd.info.dims.first() != Some(&(n_embd as u64)) {
            return Err(inconsistent(
                &k("embedding_length"),
                format!("token_embd.weight is {:?} for {n_embd}", embd.info.dims),
            ));
        }
        let config = Deepseek2Config {
            n_layer,
            n_embd,
            n_head,
            n_vocab,
            n_ctx_train: count(file, &k("context_length"))?,
            rms_eps: float(file, &k("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-6),
            rope_theta: float(file, &k("rope.freq_base"))?.unwrap_or(10_000.0),
            rope_scaling,
            dense_lead: optional_count(file, &k("leading_dense_block_count"))?.unwrap_or(0),
            n_ff: count(file, &k("feed_forward_length"))?,
            q_lora,
            kv_lora,
            qk_nope: key_len - qk_rope,
            qk_rope,
            v_head: value_len,
            kv_layout,
            n_expert,
            n_used: count(file, &k("expert_used_count"))?,
            n_shared: optional_count(file, &k("expert_shared_count"))?.unwrap_or(0),
            expert_ff: count(file, &k("expert_feed_forward_length"))?,
            weights_scale: float(file, &k("expert_weights_scale"))?.unwrap_or(1.0),
            weights_norm: flag(file, &k("expert_weights_norm"))?.unwrap_or(false),
            gating,
            groups,
            groups_used: optional_count(file, &k("expert_group_used_count"))?.unwrap_or(groups),
            mscale,
        };
        config
            .router()
            .check()
            .map_err(|e| inconsistent(&k("expert_count"), e.to_string()))?;
        if config.dense_lead > n_layer {
            return Err(inconsistent(
                &k("leading_dense_block_count"),
                format!("{} of {n_layer} layers", config.dense_lead),
            ));
        }
        Ok(config)
    }

    /// Per-head query/key size before absorption.
    pub fn qk_head(&self) -> usize {
        self.qk_nope + self.qk_rope
    }

    /// Values cached per token per layer: the latent plus the rotated key part
    /// (R1: 512 + 64 = 576).
    pub fn cache_width(&self) -> usize {
        self.kv_lora + self.qk_rope
    }

    pub fn kq_scale(&self) -> f32 {
        self.mscale * self.mscale / (self.qk_head() as f32).sqrt()
    }

    pub fn router(&self) -> Router {
        Router {
            n_expert: self.n_expert,
            n_used: self.n_used,
            gating: self.gating,
            groups: self.groups,
            groups_used: self.groups_used,
            normalize: self.weights_norm,
            scale: self.weights_scale,
        }
    }
}
