//! The operations a forward pass needs, implemented once per device: [`crate::cpu::CpuBackend`]
//! (the readable reference) and [`crate::gpu::GpuBackend`] (fused WGSL kernels).
//!
//! Activations are 2-D: `n` rows of `width` values, row-major. A tensor can be reshaped
//! to other rows of the same data (`[n][heads * d]` as `[n * heads][d]`) without a copy.

use crate::error::{Error, Result};
use crate::gguf::{TensorRef, TensorView};
use crate::stream::{ExpertLayer, MemoryPlan, StreamOptions, StreamStats};

/// Largest rotated dimension count (`freqs` in `src/gpu/ops/rope.wgsl` holds `MAX_ROPE_DIMS / 2`).
pub const MAX_ROPE_DIMS: usize = 256;

/// Rotary embedding (llama.cpp's "normal" rope: adjacent pairs rotate), applied in each
/// of `heads` heads of `head_dim` values to the `2 * freqs.len()` values from `offset` on.
/// Pair i of position p rotates by `p * freqs[i]`, and both rotated values are multiplied
/// by `mscale` (YaRN's magnitude correction; 1 otherwise).
#[derive(Clone, Debug)]
pub struct Rope {
    pub heads: usize,
    pub head_dim: usize,
    pub offset: usize,
    pub freqs: Vec<f32>,
    pub mscale: f32,
}

/// How positions map to rotation frequencies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by the factor.
    Linear(f32),
    /// YaRN (`ggml_rope_yarn_corr_dims` and `rope_yarn` in ggml/src/ggml-cpu/ops.cpp):
    /// frequencies interpolated by `1 / factor` below the correction range, kept above
    /// it, ramped between.
    Yarn {
        factor: f32,
        original_context: usize,
        beta_fast: f32,
        beta_slow: f32,
    },
}

impl Rope {
    /// Frequencies for `dims` rotated values with base `theta`, and the magnitude factor
    /// `mscale` to apply with them.
    pub fn new(
        heads: usize,
        head_dim: usize,
        offset: usize,
        dims: usize,
        theta: f32,
        scaling: RopeScaling,
    ) -> Result<Self> {
        if dims == 0 || !dims.is_multiple_of(2) || dims > MAX_ROPE_DIMS || offset + dims > head_dim {
            return Err(Error::Shape(format!(
                "rope: {dims} rotated values at {offset} in heads of {head_dim} (even, at most {MAX_ROPE_DIMS})"
            )));
        }
        let base = |i: usize| theta.powf(-2.0 * i as f32 / dims as f32);
        let freqs = match scaling {
            RopeScaling::None => (0..dims / 2).map(base).collect(),
            RopeScaling::Linear(f) => (0..dims / 2).map(|i| base(i) / f).collect(),
            RopeScaling::Yarn {
                factor,
                original_context,
                beta_fast,
                beta_slow,
            } => {
                let corr = |rot: f32| {
                    dims as f32 * (original_context as f32 / (rot * 2.0 * std::f32::consts::PI)).ln()
                        / (2.0 * theta.ln())
                };
                let low = corr(beta_fast).floor().max(0.0);
                let high = corr(beta_slow).ceil().min(dims as f32 - 1.0);
                (0..dims / 2)
                    .map(|i| {
                        let y = (i as f32 - low) / (high - low).max(0.001);
                        let ramp = 1.0 - y.clamp(0.0, 1.0);
                        base(i) * (ramp + (1.0 - ramp) / factor)
                    })
                    .collect()
            }
        };
        Ok(Rope {
            heads,
            head_dim,
            offset,
            freqs,
            mscale: 1.0,
        })
    }

    pub fn dims(&self) -> usize {
        2 * self.freqs.len()
    }
}

/// Attention shape: `heads` query heads of `k_dim` share `kv_heads` key heads; each head
/// produces `v_dim` values. Scores are scaled by `scale`.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub k_dim: usize,
    pub v_dim: usize,
    pub scale: f32,
}

/// Where an attention layer's values come from.
pub enum Values<'a, T> {
    /// Their own rows `[n][kv_heads * v_dim]`, cached separately.
    Own(&'a T),
    /// The first `v_dim` values of each key head (MLA: the cached latent is both key and
    /// value), so the cache holds keys only.
    KeyPrefix,
}

impl<'a, T> Values<'a, T> {
    /// The values' own rows, None when they live in the keys.
    pub fn own(self) -> Option<&'a T> {
        match self {
            Values::Own(v) => Some(v),
            Values::KeyPrefix => None,
        }
    }
}

pub trait Backend {
    /// Activations `[n][width]`, f32.
    type Tensor;
    /// A weight matrix `[rows][k]` in its packed GGUF format.
    type Matrix;
    /// A stack of weight matrices `[count][rows][k]` (a layer's experts, or per-head
    /// projections), packed.
    type Experts;
    /// Per (token, slot) pair `t * n_used + j`: the matrix of an [`Self::Experts`] stack to
    /// use and its weight, on the device.
    type Routes;
    /// A key/value cache for one layer.
    type Cache;
    /// A MoE layer's routed experts (gate, up and down stacks), resident or streamed.
    type Routed;
    /// A read of a tensor to the host that does not block (see [`Self::read_start`]).
    type Read: Send;

    /// A short description of the device.
    fn name(&self) -> String;
    /// Memory held for the model and its caches, for `--stats`.
    fn memory_report(&self) -> String;
    /// Time every operation from now on (`--profile`), each waited for on its own, which
    /// slows the run. False where the backend cannot.
    fn start_profile(&mut self) -> Result<bool> {
        Ok(false)
    }
    /// Time per operation since `start_profile`, per forward pass over `passes`, as a
    /// Markdown table.
    fn profile_report(&self, passes: usize) -> Option<String> {
        let _ = passes;
        None
    }
    /// Plan memory before any weight is loaded. A backend whose experts cannot stream
    /// refuses both budgets.
    fn plan(&mut self, plan: &MemoryPlan, options: &StreamOptions) -> Result<()> {
        let _ = plan;
        refuse_vram_budget(&self.name(), options)?;
        match options.ram_budget {
            Some(_) => Err(Error::Unsupported(format!(
                "{} cannot stream experts (--ram-budget needs the CPU or GPU backend)",
                self.name()
            ))),
            None => Ok(()),
        }
    }
    /// Every weight is loaded (what a budget leaves can become expert pools now).
    fn loaded(&mut self) -> Result<()> {
        Ok(())
    }
    /// The routed experts of one MoE layer from its `[gate, up, down]` 3-D tensors
    /// `[k, rows, n_expert]`, which stay readable through their references.
    fn routed(&mut self, shape: &ExpertLayer, tensors: &[TensorRef; 3]) -> Result<Self::Routed>;
    /// The routed FFN of a MoE layer, into `acc`: for token t and its routes j,
    /// `acc[t] += Σ_j w_tj · down_e(silu(gate_e · h_t) ⊙ up_e · h_t)` with `e` the routed
    /// expert. `next`, when the backend [`predicts`](Self::predicts), is the next MoE
    /// layer's experts and the routes its router gives for `h` (a prediction to prefetch).
    fn routed_ffn(
        &mut self,
        experts: &Self::Routed,
        h: &Self::Tensor,
        routes: &Self::Routes,
        acc: &mut Self::Tensor,
        next: Option<(&Self::Routed, &Self::Routes)>,
    ) -> Result<()>;
    /// Whether [`routed_ffn`](Self::routed_ffn) wants the next layer's predicted routes.
    fn predicts(&self) -> bool {
        false
    }
    /// What expert streaming did since load, when experts stream.
    fn stream_stats(&self) -> Option<StreamStats> {
        None
    }
    /// What the host expert cache behind streamed device slots did, when there is one
    /// (a backend whose experts stream straight into host memory reports it as
    /// [`stream_stats`](Self::stream_stats)).
    fn host_stats(&self) -> Option<StreamStats> {
        None
    }
    fn matrix(&mut self, t: &TensorView) -> Result<Self::Matrix>;
    /// A 3-D tensor `[k, rows, count]` as `count` matrices.
    fn experts(&mut self, t: &TensorView) -> Result<Self::Experts>;
    /// A cache for `n_ctx` positions of `k_width` keys and `v_width` values (0: values are
    /// a prefix of the keys, [`Values::KeyPrefix`]).
    fn cache(&mut self, n_ctx: usize, k_width: usize, v_width: usize) -> Result<Self::Cache>;
    /// Rows of `x`.
    fn rows(&self, x: &Self::Tensor) -> usize;
    /// `[n][width]` from host values.
    fn upload(&mut self, data: &[f32], n: usize, width: usize) -> Result<Self::Tensor>;
    /// `[n][width]` zeros.
    fn zeros(&mut self, n: usize, width: usize) -> Result<Self::Tensor>;
    /// The same data as `[n][width]` (`n * width` must not change).
    fn reshape(&mut self, x: Self::Tensor, n: usize, width: usize) -> Result<Self::Tensor>;
    /// Rows `tokens` of the embedding table, dequantized.
    fn embed(&mut self, table: &Self::Matrix, tokens: &[u32]) -> Result<Self::Tensor>;
    /// `x / rms(x) * w` over the first `w.len()` values of each row: `[n][len(w)]`.
    fn rms_norm(&mut self, x: &Self::Tensor, w: &Self::Matrix, eps: f32) -> Result<Self::Tensor>;
    /// `x · Wᵀ`: `[n][k] -> [n][rows]`.
    fn matmul(&mut self, w: &Self::Matrix, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// `rms_norm(x, norm, eps) · Wᵀ`: `[n][k] -> [n][rows]`, the norm fused into the
    /// product where the backend can.
    fn norm_matmul(
        &mut self,
        w: &Self::Matrix,
        x: &Self::Tensor,
        norm: &Self::Matrix,
        eps: f32,
    ) -> Result<Self::Tensor> {
        let h = self.rms_norm(x, norm, eps)?;
        self.matmul(w, &h)
    }
    /// `silu(gate) · up` of a stacked `[gate; up]` matrix (`[2f][k]`) applied to x, or
    /// with `norm` to its RMSNorm: `[n][k] -> [n][f]`, fused where the backend can.
    fn swiglu_product(
        &mut self,
        gate_up: &Self::Matrix,
        x: &Self::Tensor,
        norm: Option<(&Self::Matrix, f32)>,
    ) -> Result<Self::Tensor> {
        swiglu_product_unfused(self, gate_up, x, norm)
    }
    /// `acc += x · Wᵀ` (a product and a residual add in one step).
    fn matmul_add(&mut self, w: &Self::Matrix, x: &Self::Tensor, acc: &mut Self::Tensor) -> Result<()>;
    /// Routes that send every token to the matrices `ids` in order (pair
    /// `t * ids.len() + j` uses matrix `ids[j]`, weight 1): per-head projections.
    fn fixed_routes(&mut self, n_tokens: usize, ids: &[u32]) -> Result<Self::Routes>;
    /// Choose experts from router logits `[n][n_expert]` (see [`Router`]).
    fn route(&mut self, logits: &Self::Tensor, bias: Option<&Self::Matrix>, router: &Router) -> Result<Self::Routes>;
    /// The routes' expert ids and weights, pair-major (waits for the device).
    fn routes_to_host(&mut self, routes: &Self::Routes) -> Result<(Vec<u32>, Vec<f32>)>;
    /// For every pair p of `routes`: `y[p][r] = s_p · Σ_k E_{id(p)}[r][k] · x_p[k]` for the
    /// matrix's rows r (the rest of y's row is left as is), with `s_p` the route weight
    /// when `weighted`, else 1. `x_p` is row p of `x` when x has one row per pair, else
    /// row `p / n_used` (all of a token's pairs share its input). Rows of x and y may be
    /// wider than the matrix's k and rows.
    fn matmul_id(
        &mut self,
        w: &Self::Experts,
        x: &Self::Tensor,
        routes: &Self::Routes,
        weighted: bool,
        y: &mut Self::Tensor,
    ) -> Result<()>;
    /// `acc[t] += Σ_j y[t * n_used + j]`.
    fn add_pair_sums(&mut self, y: &Self::Tensor, n_used: usize, acc: &mut Self::Tensor) -> Result<()>;
    /// `dst[i][dst_offset + c] = src[i][src_offset + c]` for `c < width` and every row i.
    fn copy_columns(
        &mut self,
        src: &Self::Tensor,
        src_offset: usize,
        dst: &mut Self::Tensor,
        dst_offset: usize,
        width: usize,
    ) -> Result<()>;
    /// One matrix `[Σ rows][k]` whose rows are those of `parts` in order, when this
    /// backend gains from one product over several (fewer dispatches) and the parts share
    /// format and row length; None otherwise, and by default.
    fn stacked_matrix(&mut self, parts: &[TensorView]) -> Result<Option<Self::Matrix>> {
        let _ = parts;
        Ok(None)
    }
    /// The columns of `x` (`[n][Σ widths]`) as tensors `[n][widths[i]]`, in order.
    fn split_columns(&mut self, x: &Self::Tensor, widths: &[usize]) -> Result<Vec<Self::Tensor>>;
    /// Rotate the first `heads * head_dim` values of each row of `x` in place (rows may be
    /// wider: the query and key heads of a stacked product rotate together); row i is at
    /// position `pos0 + i`.
    fn rope(&mut self, x: &mut Self::Tensor, rope: &Rope, pos0: usize) -> Result<()>;
    /// Store keys `k` (and values) at positions `pos0..pos0+n` in `cache`, then causal
    /// attention of `q` (`[n][heads * k_dim]`) over positions `0..=pos0+i` for row i.
    /// Returns `[n][heads * v_dim]`.
    fn attention(
        &mut self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: Values<Self::Tensor>,
        cache: &mut Self::Cache,
        heads: &Heads,
        pos0: usize,
    ) -> Result<Self::Tensor>;
    /// [`Backend::attention`] of the query, key and value parts of a stacked product
    /// `[n][q | k | v]` of those `widths`.
    fn attention_stacked(
        &mut self,
        qkv: &Self::Tensor,
        widths: [usize; 3],
        cache: &mut Self::Cache,
        heads: &Heads,
        pos0: usize,
    ) -> Result<Self::Tensor> {
        attention_of_parts(self, qkv, widths, cache, heads, pos0)
    }
    /// `silu(gate) * up`.
    fn swiglu(&mut self, gate: &Self::Tensor, up: &Self::Tensor) -> Result<Self::Tensor>;
    /// `silu(gate) * up` for each row `[gate | up]` of `gate_up` (`[n][2f] -> [n][f]`): a
    /// stacked gate and up product.
    fn swiglu_stacked(&mut self, gate_up: &Self::Tensor) -> Result<Self::Tensor>;
    /// The last row only.
    fn last_row(&mut self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// Copy to the host (waits for the device).
    fn to_host(&mut self, x: &Self::Tensor) -> Result<Vec<f32>>;

    /// Start reading `x` to the host and hand the recorded work to the device; returns
    /// at once. [`Self::read_poll`] gives the values when they arrive.
    fn read_start(&mut self, x: &Self::Tensor) -> Result<Self::Read>;

    /// The values of a started read once they have arrived, None while in flight. Never
    /// blocks; an error when the read already returned its values.
    fn read_poll(&mut self, read: &mut Self::Read) -> Result<Option<Vec<f32>>>;

    /// Wait for a started read's values (only for its own work, not later submissions).
    fn read_wait(&mut self, read: &mut Self::Read) -> Result<Vec<f32>>;

    /// Hand the work recorded so far to the device without waiting for it (a GPU
    /// submission; nothing on the CPU, which computes as it goes).
    fn submit(&mut self) -> Result<()> {
        Ok(())
    }

    /// `[n][1]`: the index of each row's largest value as [`crate::sample::argmax`] picks
    /// it (as an f32, exact below 2^24): greedy sampling where the logits are.
    fn argmax(&mut self, x: &Self::Tensor) -> Result<Self::Tensor> {
        let n = self.rows(x);
        let values = self.to_host(x)?;
        let width = values.len() / n.max(1);
        let ids: Vec<f32> = values
            .chunks(width.max(1))
            .map(|row| crate::sample::argmax(row) as f32)
            .collect();
        self.upload(&ids, n, 1)
    }
}

/// A MoE layer's routed experts as three resident stacks (gate, up, down).
pub struct ResidentExperts<E> {
    pub shape: ExpertLayer,
    pub parts: [E; 3],
}

/// The error of a backend `name` without device memory given a VRAM budget.
pub fn refuse_vram_budget(name: &str, options: &StreamOptions) -> Result<()> {
    match options.vram_budget {
        Some(_) => Err(Error::Unsupported(format!(
            "{name} has no VRAM budget (--vram-budget needs the GPU backend)"
        ))),
        None => Ok(()),
    }
}

/// [`Backend::routed`] by uploading the three stacks whole.
pub fn resident_routed<B: Backend + ?Sized>(
    b: &mut B,
    shape: &ExpertLayer,
    tensors: &[TensorRef; 3],
) -> Result<ResidentExperts<B::Experts>> {
    let [g, u, d] = tensors;
    Ok(ResidentExperts {
        shape: shape.clone(),
        parts: [b.experts(&g.view())?, b.experts(&u.view())?, b.experts(&d.view())?],
    })
}

/// [`Backend::routed_ffn`] of resident stacks through [`Backend::matmul_id`].
pub fn resident_routed_ffn<B: Backend + ?Sized>(
    b: &mut B,
    r: &ResidentExperts<B::Experts>,
    h: &B::Tensor,
    routes: &B::Routes,
    acc: &mut B::Tensor,
) -> Result<()> {
    let (s, [gate, up, down]) = (&r.shape, &r.parts);
    let pairs = b.rows(h) * s.n_used;
    let mut g = b.zeros(pairs, s.ff)?;
    let mut u = b.zeros(pairs, s.ff)?;
    b.matmul_id(gate, h, routes, false, &mut g)?;
    b.matmul_id(up, h, routes, false, &mut u)?;
    let a = b.swiglu(&g, &u)?;
    let mut d = b.zeros(pairs, s.n_embd)?;
    b.matmul_id(down, &a, routes, true, &mut d)?;
    b.add_pair_sums(&d, s.n_used, acc)
}

/// How a gate turns router logits into expert probabilities (`expert_gating_func`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gating {
    Softmax,
    Sigmoid,
}

/// Expert selection, as `llm_graph_context::build_moe_ffn` in llama.cpp's
/// src/llama-graph.cpp: probabilities from the gate; selection scores are the
/// probabilities plus the optional bias (`exp_probs_b`); with `groups > 1` only the
/// `groups_used` groups (contiguous runs of experts) with the largest sum of their two
/// best selection scores compete; the `n_used` best selection scores win. Weights are
/// the winners' unbiased probabilities, divided by their sum when `normalize` (clamped
/// below at 2^-14), times `scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Router {
    pub n_expert: usize,
    pub n_used: usize,
    pub gating: Gating,
    pub groups: usize,
    pub groups_used: usize,
    pub normalize: bool,
    pub scale: f32,
}

/// Largest `n_expert` the GPU router handles (`MAX_EXPERTS` in `src/gpu/ops/route.wgsl`).
pub const MAX_EXPERTS: usize = 512;
/// Largest `n_used`.
pub const MAX_USED: usize = 16;
/// Largest `groups` (`MAX_GROUPS` in `src/gpu/ops/route.wgsl`).
pub const MAX_GROUPS: usize = 64;

impl Router {
    /// Check the shape; the CPU and GPU routers rely on it.
    pub fn check(&self) -> Result<()> {
        let ok = self.n_expert > 0
            && self.n_expert <= MAX_EXPERTS
            && self.n_used > 0
            && self.n_used <= MAX_USED.min(self.n_expert)
            && self.groups > 0
            && self.groups <= MAX_GROUPS
            && self.n_expert.is_multiple_of(self.groups)
            && self.groups_used > 0
            && self.groups_used <= self.groups
            && (self.groups == 1 || self.n_expert / self.groups >= 2)
            && self.n_used <= self.groups_used * (self.n_expert / self.groups);
        if ok {
            Ok(())
        } else {
            Err(Error::Shape(format!("router: unsupported shape {self:?}")))
        }
    }

    /// The reference selection for one token: `(ids, weights)`, best first.
    pub fn select(&self, logits: &[f32], bias: Option<&[f32]>) -> (Vec<u32>, Vec<f32>) {
        let probs: Vec<f32> = match self.gating {
            Gating::Sigmoid => logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp())).collect(),
            Gating::Softmax => {
                let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let e: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
                let sum: f32 = e.iter().sum();
                e.iter().map(|v| v / sum).collect()
            }
        };
        let mut sel: Vec<f32> = match bias {
            Some(b) => probs.iter().zip(b).map(|(p, b)| p + b).collect(),
            None => probs.clone(),
        };
        if self.groups > 1 && self.groups_used < self.groups {
            let per = self.n_expert / self.groups;
            let score = |g: usize| {
                let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
                for &v in &sel[g * per..(g + 1) * per] {
                    if v > a {
                        b = a;
                        a = v;
                    } else if v > b {
                        b = v;
                    }
                }
                a + b
            };
            let scores: Vec<f32> = (0..self.groups).map(score).collect();
            let kept = top_k(&scores, self.groups_used);
            for g in 0..self.groups {
                if !kept.contains(&(g as u32)) {
                    sel[g * per..(g + 1) * per].fill(f32::NEG_INFINITY);
                }
            }
        }
        let ids = top_k(&sel, self.n_used);
        let mut weights: Vec<f32> = ids.iter().map(|&e| probs[e as usize]).collect();
        if self.normalize {
            let sum = weights.iter().sum::<f32>().max(6.103_515_6e-5);
            weights.iter_mut().for_each(|w| *w /= sum);
        }
        weights.iter_mut().for_each(|w| *w *= self.scale);
        (ids, weights)
    }
}

/// Indices of the `k` largest values, largest first (ties: the lower index first).
fn top_k(v: &[f32], k: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..v.len() as u32).collect();
    idx.sort_by(|&a, &b| v[b as usize].total_cmp(&v[a as usize]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// A tensor's shape, `[n][width]`, for the shape checks both backends share.
pub(crate) type Dims = (usize, usize);

fn shape_err(op: &str, detail: String) -> Error {
    Error::Shape(format!("{op}: {detail}"))
}

/// [`Backend::attention`]'s shape rules: `cache` is (k_width, v_width, n_ctx); `v` the
/// values' dims when they are their own.
pub(crate) fn check_attention(
    q: Dims,
    k: Dims,
    v: Option<Dims>,
    cache: (usize, usize, usize),
    h: &Heads,
    pos0: usize,
) -> Result<()> {
    let (kw, vw, n_ctx) = cache;
    let n = q.0;
    if pos0 + n > n_ctx {
        return Err(shape_err(
            "attention",
            format!("positions {pos0}..{} exceed the context of {n_ctx}", pos0 + n),
        ));
    }
    let ok = k == (n, kw)
        && q.1 == h.heads * h.k_dim
        && kw == h.kv_heads * h.k_dim
        && h.kv_heads > 0
        && h.heads.is_multiple_of(h.kv_heads)
        && match v {
            Some(v) => v == (n, vw) && vw == h.kv_heads * h.v_dim,
            None => vw == 0 && h.v_dim <= h.k_dim,
        };
    if ok {
        Ok(())
    } else {
        Err(shape_err(
            "attention",
            format!(
                "q {q:?}, k {k:?}, v {v:?} do not match {} heads of {} keys and {} values over {} key heads and a cache of ({kw}, {vw})",
                h.heads, h.k_dim, h.v_dim, h.kv_heads
            ),
        ))
    }
}

/// [`Backend::copy_columns`]'s shape rules.
pub(crate) fn check_copy_columns(
    src: Dims,
    src_offset: usize,
    dst: Dims,
    dst_offset: usize,
    width: usize,
) -> Result<()> {
    if src.0 != dst.0 || src_offset + width > src.1 || dst_offset + width > dst.1 {
        return Err(shape_err(
            "copy_columns",
            format!("{width} columns from {src:?} at {src_offset} to {dst:?} at {dst_offset}"),
        ));
    }
    Ok(())
}

/// [`Backend::add_pair_sums`]'s shape rules.
/// [`Backend::swiglu_product`] as the product (with the norm), then the SwiGLU.
pub(crate) fn swiglu_product_unfused<B: Backend + ?Sized>(
    b: &mut B,
    gate_up: &B::Matrix,
    x: &B::Tensor,
    norm: Option<(&B::Matrix, f32)>,
) -> Result<B::Tensor> {
    let all = match norm {
        Some((weight, eps)) => b.norm_matmul(gate_up, x, weight, eps)?,
        None => b.matmul(gate_up, x)?,
    };
    b.swiglu_stacked(&all)
}

/// [`Backend::attention_stacked`] by splitting the stacked product into its parts.
pub(crate) fn attention_of_parts<B: Backend + ?Sized>(
    b: &mut B,
    qkv: &B::Tensor,
    widths: [usize; 3],
    cache: &mut B::Cache,
    heads: &Heads,
    pos0: usize,
) -> Result<B::Tensor> {
    let parts = b.split_columns(qkv, &widths)?;
    let [q, k, v]: [B::Tensor; 3] = parts
        .try_into()
        .map_err(|_| Error::Shape("split_columns returned other than 3 parts".into()))?;
    b.attention(&q, &k, Values::Own(&v), cache, heads, pos0)
}

/// `split_columns` of rows of `width` into `widths`.
pub(crate) fn check_split(width: usize, widths: &[usize]) -> Result<()> {
    if widths.iter().sum::<usize>() != width {
        return Err(shape_err(
            "split_columns",
            format!("widths {widths:?} for rows of {width}"),
        ));
    }
    Ok(())
}

/// `swiglu_stacked` of rows of `width`: returns the width of each half.
pub(crate) fn check_swiglu_stacked(width: usize) -> Result<usize> {
    if !width.is_multiple_of(2) {
        return Err(shape_err("swiglu_stacked", format!("rows of odd width {width}")));
    }
    Ok(width / 2)
}

pub(crate) fn check_pair_sums(y: Dims, n_used: usize, acc: Dims) -> Result<()> {
    if y.0 != acc.0 * n_used || y.1 != acc.1 {
        return Err(shape_err(
            "add_pair_sums",
            format!("{y:?} into {acc:?} with {n_used} per token"),
        ));
    }
    Ok(())
}

/// [`Backend::matmul_id`]'s shape rules for `pairs` pairs of `n_tokens` tokens and
/// matrices of `rows` x `k`.
pub(crate) fn check_matmul_id(x: Dims, y: Dims, n_tokens: usize, pairs: usize, rows: usize, k: usize) -> Result<()> {
    if (x.0 != n_tokens && x.0 != pairs) || y.0 != pairs || x.1 < k || y.1 < rows {
        return Err(shape_err(
            "matmul_id",
            format!("x {x:?}, y {y:?} for {pairs} pairs of {rows} x {k} matrices"),
        ));
    }
    Ok(())
}
