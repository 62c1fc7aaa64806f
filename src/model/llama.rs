//! The llama architecture (`general.architecture = llama`): pre-norm transformer blocks
//! with RMSNorm, rotary attention with grouped KV heads, and a SwiGLU feed-forward;
//! as `llm_build_llama` in llama.cpp's `src/llama-model.cpp`.

use super::Session;
use super::config::LlamaConfig;
use super::projections::{Product, Projections};
use crate::backend::{Backend, Heads, Rope, RopeScaling, Values};
use crate::error::{Error, Result};
use crate::gguf::File;

struct Layer<B: Backend> {
    attn_norm: B::Matrix,
    /// Query, key and value.
    qkv: Projections<B>,
    wo: B::Matrix,
    ffn_norm: B::Matrix,
    /// Gate and up.
    gate_up: Projections<B>,
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
    /// Rotations of the query heads, the key heads, and both (the leading heads of a
    /// stacked query, key and value product), built once at load.
    rope_q: Rope,
    rope_k: Rope,
    rope_qk: Rope,
}

impl<B: Backend> Llama<B> {
    /// Load every weight onto `backend`; `progress(done, total)` counts tensors, called
    /// after the leading ones and after each layer.
    pub fn load(file: &File, backend: &mut B, mut progress: impl FnMut(usize, usize)) -> Result<Self> {
        let config = LlamaConfig::from_gguf(file)?;
        let total = 3 + 9 * config.n_layer;
        let mut done = 0;
        let mut tick = |n: usize| {
            done += n;
            progress(done, total);
        };
        let matrix = |backend: &mut B, name: &str| backend.matrix(&file.tensor(name)?);
        let embed = matrix(backend, "token_embd.weight")?;
        let output_norm = matrix(backend, "output_norm.weight")?;
        let output = if config.tied_output {
            None
        } else {
            Some(matrix(backend, "output.weight")?)
        };
        tick(3);
        let mut layers = Vec::with_capacity(config.n_layer);
        for l in 0..config.n_layer {
            let name = |s: &str| format!("blk.{l}.{s}.weight");
            layers.push(Layer {
                attn_norm: matrix(backend, &name("attn_norm"))?,
                qkv: Projections::load(file, backend, &[name("attn_q"), name("attn_k"), name("attn_v")])?,
                wo: matrix(backend, &name("attn_output"))?,
                ffn_norm: matrix(backend, &name("ffn_norm"))?,
                gate_up: Projections::load(file, backend, &[name("ffn_gate"), name("ffn_up")])?,
                down: matrix(backend, &name("ffn_down"))?,
            });
            tick(9);
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
        let rope_qk = Rope {
            heads: c.n_head + c.n_head_kv,
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
            rope_qk,
        })
    }

    /// A fresh session with room for `n_ctx` positions.
    pub fn session(&self, backend: &mut B, n_ctx: usize) -> Result<Session<B>> {
        let caches = (0..self.config.n_layer)
            .map(|_| backend.cache(n_ctx, self.config.kv_dim(), self.config.kv_dim()))
            .collect::<Result<_>>()?;
        Ok(Session::new(caches, n_ctx))
    }

    /// The embedded rows of `tokens`: the residual stream before the first layer.
    pub(crate) fn embed(&self, backend: &mut B, tokens: &[u32]) -> Result<B::Tensor> {
        backend.embed(&self.embed, tokens)
    }

    /// Layer `l` over the residual stream `x` of tokens at `pos0..`, with its cache.
    pub(crate) fn layer(
        &self,
        backend: &mut B,
        l: usize,
        cache: &mut B::Cache,
        x: &mut B::Tensor,
        pos0: usize,
    ) -> Result<()> {
        let c = &self.config;
        let layer = &self.layers[l];
        let heads = Heads {
            heads: c.n_head,
            kv_heads: c.n_head_kv,
            k_dim: c.head_dim,
            v_dim: c.head_dim,
            scale: 1.0 / (c.head_dim as f32).sqrt(),
        };
        let a = match layer.qkv.product(backend, x, Some((&layer.attn_norm, c.rms_eps)))? {
            Product::Stacked(mut qkv, widths) => {
                // The query heads, then the key heads: one rotation for both.
                backend.rope(&mut qkv, &self.rope_qk, pos0)?;
                let widths = widths
                    .try_into()
                    .map_err(|_| Error::Shape(format!("{} stacked attention projections", widths.len())))?;
                backend.attention_stacked(&qkv, widths, cache, &heads, pos0)?
            }
            separate => {
                let [mut q, mut k, v] = separate.separate()?;
                backend.rope(&mut q, &self.rope_q, pos0)?;
                backend.rope(&mut k, &self.rope_k, pos0)?;
                backend.attention(&q, &k, Values::Own(&v), cache, &heads, pos0)?
            }
        };
        backend.matmul_add(&layer.wo, &a, x)?;
        let s = layer.gate_up.swiglu(backend, x, Some((&layer.ffn_norm, c.rms_eps)))?;
        backend.matmul_add(&layer.down, &s, x)
    }

    /// The output norm and head over rows `x` (after the last layer): logits `[rows][n_vocab]`.
    pub(crate) fn head(&self, backend: &mut B, x: &B::Tensor) -> Result<B::Tensor> {
        let output = self.output.as_ref().unwrap_or(&self.embed);
        backend.norm_matmul(output, x, &self.output_norm, self.config.rms_eps)
    }
}
