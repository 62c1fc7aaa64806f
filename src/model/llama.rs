//! The llama architecture (`general.architecture = llama`): pre-norm transformer blocks
//! with RMSNorm, rotary attention with grouped KV heads, and a SwiGLU feed-forward;
//! as `llm_build_llama` in llama.cpp's `src/llama-model.cpp`.

use super::Session;
use super::config::LlamaConfig;
use crate::backend::{Backend, Heads, Rope, RopeScaling, Values};
use crate::error::Result;
use crate::gguf::File;

struct Layer<B: Backend> {
    attn_norm: B::Matrix,
    wq: B::Matrix,
    wk: B::Matrix,
    wv: B::Matrix,
    wo: B::Matrix,
    ffn_norm: B::Matrix,
    gate: B::Matrix,
    up: B::Matrix,
    down: B::Matrix,
}

/// A llama model whose weights live on backend `B`.
pub struct Llama<B: Backend> {
    pub config: LlamaConfig,
    embed: B::Matrix,
    output_norm: B::Matrix,
    /// None when tied to `embed`.
    output: Option<B::Matrix>,
    layers: Vec<Layer<B>>,
    /// Rotations of the query and key heads, built once at load.
    rope_q: Rope,
    rope_k: Rope,
}

impl<B: Backend> Llama<B> {
    /// Load every weight onto `backend`; `progress(done, total)` is called per tensor.
    pub fn load(file: &File, backend: &mut B, mut progress: impl FnMut(usize, usize)) -> Result<Self> {
        let config = LlamaConfig::from_gguf(file)?;
        let total = 3 + 9 * config.n_layer;
        let mut done = 0;
        let mut load = |backend: &mut B, name: &str| -> Result<B::Matrix> {
            let m = backend.matrix(&file.tensor(name)?)?;
            done += 1;
            progress(done, total);
            Ok(m)
        };
        let embed = load(backend, "token_embd.weight")?;
        let output_norm = load(backend, "output_norm.weight")?;
        let output = if config.tied_output {
            None
        } else {
            Some(load(backend, "output.weight")?)
        };
        let mut layers = Vec::with_capacity(config.n_layer);
        for l in 0..config.n_layer {
            let mut t = |s: &str| load(backend, &format!("blk.{l}.{s}.weight"));
            layers.push(Layer {
                attn_norm: t("attn_norm")?,
                wq: t("attn_q")?,
                wk: t("attn_k")?,
                wv: t("attn_v")?,
                wo: t("attn_output")?,
                ffn_norm: t("ffn_norm")?,
                gate: t("ffn_gate")?,
                up: t("ffn_up")?,
                down: t("ffn_down")?,
            });
        }
        let c = &config;
        let rope_q = Rope::new(
            c.n_head,
            c.head_dim,
            0,
            c.rope_dim,
            c.rope_theta,
            RopeScaling::Linear(c.rope_linear_factor),
        )?;
        let rope_k = Rope {
            heads: c.n_head_kv,
            ..rope_q.clone()
        };
        Ok(Llama {
            config,
            embed,
            output_norm,
            output,
            layers,
            rope_q,
            rope_k,
        })
    }

    /// A fresh session with room for `n_ctx` positions.
    pub fn session(&self, backend: &mut B, n_ctx: usize) -> Result<Session<B>> {
        let caches = (0..self.config.n_layer)
            .map(|_| backend.cache(n_ctx, self.config.kv_dim(), self.config.kv_dim()))
            .collect::<Result<_>>()?;
        Ok(Session::new(caches, n_ctx))
    }

    /// Run `tokens` at the session's next positions (one batched pass) and return logits:
    /// `[tokens.len()][n_vocab]` when `all_logits`, else the last position's `[n_vocab]`.
    pub fn forward(
        &self,
        backend: &mut B,
        session: &mut Session<B>,
        tokens: &[u32],
        all_logits: bool,
    ) -> Result<Vec<f32>> {
        let c = &self.config;
        session.check(tokens)?;
        let pos0 = session.pos;
        let heads = Heads {
            heads: c.n_head,
            kv_heads: c.n_head_kv,
            k_dim: c.head_dim,
            v_dim: c.head_dim,
            scale: 1.0 / (c.head_dim as f32).sqrt(),
        };
        let mut x = backend.embed(&self.embed, tokens)?;
        for (layer, cache) in self.layers.iter().zip(session.caches.iter_mut()) {
            let h = backend.rms_norm(&x, &layer.attn_norm, c.rms_eps)?;
            let mut q = backend.matmul(&layer.wq, &h)?;
            let mut k = backend.matmul(&layer.wk, &h)?;
            let v = backend.matmul(&layer.wv, &h)?;
            backend.rope(&mut q, &self.rope_q, pos0)?;
            backend.rope(&mut k, &self.rope_k, pos0)?;
            let a = backend.attention(&q, &k, Values::Own(&v), cache, &heads, pos0)?;
            backend.matmul_add(&layer.wo, &a, &mut x)?;
            let h = backend.rms_norm(&x, &layer.ffn_norm, c.rms_eps)?;
            let g = backend.matmul(&layer.gate, &h)?;
            let u = backend.matmul(&layer.up, &h)?;
            let s = backend.swiglu(&g, &u)?;
            backend.matmul_add(&layer.down, &s, &mut x)?;
        }
        session.pos += tokens.len();
        let x = if all_logits { x } else { backend.last_row(&x)? };
        let h = backend.rms_norm(&x, &self.output_norm, c.rms_eps)?;
        let logits = backend.matmul(self.output.as_ref().unwrap_or(&self.embed), &h)?;
        backend.to_host(&logits)
    }
}
