//! The operations a forward pass needs, implemented once per device: [`crate::cpu::CpuBackend`]
//! (the readable reference) and [`crate::gpu::GpuBackend`] (fused WGSL kernels).
//!
//! Activations are 2-D: `n` tokens (rows) of `width` values, token-major.

use crate::error::Result;
use crate::gguf::TensorView;

/// Rotary embedding parameters (llama.cpp's "normal" rope: adjacent pairs rotate).
#[derive(Clone, Copy, Debug)]
pub struct Rope {
    pub heads: usize,
    pub head_dim: usize,
    /// Leading dimensions of each head that rotate (the rest pass through).
    pub dims: usize,
    pub theta: f32,
    /// Positions are divided by this (linear scaling).
    pub scale: f32,
}

/// Attention shape: `heads` query heads share `kv_heads` key/value heads.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

pub trait Backend {
    /// Activations `[n][width]`, f32.
    type Tensor;
    /// A weight matrix `[rows][k]` in its packed GGUF format.
    type Matrix;
    /// A key/value cache for one layer.
    type Cache;

    /// A short description of the device.
    fn name(&self) -> String;
    /// Memory held for the model and its caches, for `--stats`.
    fn memory_report(&self) -> String;
    fn matrix(&mut self, t: &TensorView) -> Result<Self::Matrix>;
    /// A cache for `n_ctx` positions of `width` keys and `width` values.
    fn cache(&mut self, n_ctx: usize, width: usize) -> Result<Self::Cache>;
    /// Rows `tokens` of the embedding table, dequantized.
    fn embed(&mut self, table: &Self::Matrix, tokens: &[u32]) -> Result<Self::Tensor>;
    /// `x / rms(x) * w` per row, `w` an F32 vector.
    fn rms_norm(&mut self, x: &Self::Tensor, w: &Self::Matrix, eps: f32) -> Result<Self::Tensor>;
    /// `x · Wᵀ`: `[n][k] -> [n][rows]`.
    fn matmul(&mut self, w: &Self::Matrix, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// `acc += x · Wᵀ` (a product and a residual add in one step).
    fn matmul_add(&mut self, w: &Self::Matrix, x: &Self::Tensor, acc: &mut Self::Tensor) -> Result<()>;
    /// Rotate `x` (`[n][heads * head_dim]`) in place; row i is at position `pos0 + i`.
    fn rope(&mut self, x: &mut Self::Tensor, rope: &Rope, pos0: usize) -> Result<()>;
    /// Store `k`, `v` at positions `pos0..pos0+n` in `cache`, then causal attention of `q`
    /// over positions `0..=pos0+i` for row i. Returns `[n][heads * head_dim]`.
    fn attention(
        &mut self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        cache: &mut Self::Cache,
        heads: &Heads,
        pos0: usize,
    ) -> Result<Self::Tensor>;
    /// `silu(gate) * up`.
    fn swiglu(&mut self, gate: &Self::Tensor, up: &Self::Tensor) -> Result<Self::Tensor>;
    /// The last row only.
    fn last_row(&mut self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// Copy to the host (waits for the device).
    fn to_host(&mut self, x: &Self::Tensor) -> Result<Vec<f32>>;
}
