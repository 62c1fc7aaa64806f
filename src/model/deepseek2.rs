//! The DeepSeek-V2/V3/R1 architecture (`general.architecture = deepseek2`), as
//! `llm_build_deepseek2` in llama.cpp's src/models/deepseek2.cpp:
//!
//! - **MLA attention**, in the absorbed form: the cache holds per token only the
//!   normalized latent `c` (`kv_lora` values) and the rotated key part `k_pe` (`qk_rope`).
//!   Each head's query is `[W_kb·q_nope | q_pe]`, so a score is `q·[c | k_pe]`; the head's
//!   output is `W_vb · Σ softmax · c`. All heads share the one cached latent (MQA).
//! - **MoE FFN** after `dense_lead` dense layers: a router picks `n_used` of `n_expert`
//!   experts per token (see [`Router`](crate::backend::Router)), routed experts run
//!   through the indexed products, and the shared expert is added.

use super::deepseek2_config::{Deepseek2Config, KvLayout};
use super::projections::Projections;
use super::{RouteRecord, Session};
use crate::backend::{Backend, Heads, Rope, Values};
use crate::error::{Error, Result};
use crate::gguf::{File, TensorInfo, TensorView};
use crate::quant::{self, BlockType};
use crate::stream::{ExpertLayer, MemoryPlan, StreamOptions};

enum Query<B: Backend> {
    /// `attn_q_a` → RMSNorm (`attn_q_a_norm`) → `attn_q_b`.
    Lora {
        a: B::Matrix,
        norm: B::Matrix,
        b: B::Matrix,
    },
    /// `attn_q`.
    Direct(B::Matrix),
}

struct Attention<B: Backend> {
    q: Query<B>,
    /// `[kv_lora + qk_rope][n_embd]`: the latent and the shared rotated key.
    kv_a: B::Matrix,
    kv_a_norm: B::Matrix,
    /// Per head `[kv_lora][qk_nope]`: absorbs the key up-projection into the query.
    k_b: B::Experts,
    /// Per head `[v_head][kv_lora]`: the value up-projection, applied after attention.
    v_b: B::Experts,
    output: B::Matrix,
}

struct Mlp<B: Backend> {
    /// Gate and up.
    gate_up: Projections<B>,
    down: B::Matrix,
}

struct Moe<B: Backend> {
    router: B::Matrix,
    bias: Option<B::Matrix>,
    /// Gate, up and down of the routed experts.
    experts: B::Routed,
    shared: Option<Mlp<B>>,
}

enum Ffn<B: Backend> {
    Dense(Mlp<B>),
    Moe(Moe<B>),
}

struct Layer<B: Backend> {
    attn_norm: B::Matrix,
    attn: Attention<B>,
    ffn_norm: B::Matrix,
    ffn: Ffn<B>,
}

/// A deepseek2 model whose weights live on backend `B`.
pub struct Deepseek2<B: Backend> {
    pub config: Deepseek2Config,
    embed: B::Matrix,
    output_norm: B::Matrix,
    output: B::Matrix,
    layers: Vec<Layer<B>>,
    /// Rotation of the queries' `qk_rope` part in each head, and of the cached key part.
    rope_q: Rope,
    rope_k: Rope,
}

/// Loads tensors with their expected shapes checked, counting progress.
struct Loader<'f, P> {
    file: &'f File,
    done: usize,
    total: usize,
    progress: P,
}

impl<P: FnMut(usize, usize)> Loader<'_, P> {
    fn view(&self, name: &str, dims: &[usize]) -> Result<TensorView<'_>> {
        let t = self.file.tensor(name)?;
        if t.info.dims.iter().map(|&d| d as usize).ne(dims.iter().copied()) {
            return Err(Error::Tensor {
                path: self.file.path().to_path_buf(),
                tensor: name.into(),
                reason: format!("shape {:?}, the config expects {dims:?}", t.info.dims),
            });
        }
        Ok(t)
    }

    fn tick(&mut self) {
        self.done += 1;
        (self.progress)(self.done, self.total);
    }

    fn matrix<B: Backend>(&mut self, b: &mut B, name: &str, dims: &[usize]) -> Result<B::Matrix> {
        let m = b.matrix(&self.view(name, dims)?)?;
        self.tick();
        Ok(m)
    }

    /// 2-D matrices of the same row length, stacked where the backend stacks them.
    fn projections<B: Backend>(&mut self, b: &mut B, parts: &[(String, [usize; 2])]) -> Result<Projections<B>> {
        let views = parts
            .iter()
            .map(|(name, dims)| self.view(name, dims))
            .collect::<Result<Vec<_>>>()?;
        let p = Projections::from_views(b, &views)?;
        for _ in parts {
            self.tick();
        }
        Ok(p)
    }

    fn experts<B: Backend>(&mut self, b: &mut B, name: &str, dims: &[usize]) -> Result<B::Experts> {
        let m = b.experts(&self.view(name, dims)?)?;
        self.tick();
        Ok(m)
    }

    /// A reference to a tensor of the expected shape that keeps its shard open.
    fn tensor_ref(&self, name: &str, dims: &[usize]) -> Result<crate::gguf::TensorRef> {
        self.view(name, dims)?;
        self.file.tensor_ref(name)
    }

    fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_ok()
    }
}

/// Split `attn_kv_b` (`[kv_lora, heads * (nope + v)]`: per head, `nope` key rows then `v`
/// value rows) into the absorbed layout: `k_b` per head `[kv_lora][nope]` (the key rows
/// transposed, stored F16) and `v_b` per head `[v][kv_lora]` (the value rows as stored).
fn split_kv_b(kv_b: &TensorView, c: &Deepseek2Config) -> Result<(TensorInfo, Vec<u8>, TensorInfo, Vec<u8>)> {
    let (lora, nope, v, heads) = (c.kv_lora, c.qk_nope, c.v_head, c.n_head);
    let all = kv_b.dequantize()?;
    let row_bytes = kv_b.info.ty.row_bytes(lora)?;
    let mut k = Vec::with_capacity(heads * lora * nope);
    let mut v_bytes = Vec::with_capacity(heads * v * row_bytes);
    for h in 0..heads {
        let first = h * (nope + v);
        for r in 0..lora {
            k.extend((0..nope).map(|d| all[(first + d) * lora + r]));
        }
        v_bytes.extend_from_slice(&kv_b.bytes[(first + nope) * row_bytes..(first + nope + v) * row_bytes]);
    }
    let info = |name: &str, ty, dims: [usize; 3], bytes: &[u8]| TensorInfo {
        name: kv_b.info.name.replace("kv_b", name),
        ty,
        dims: dims.iter().map(|&d| d as u64).collect(),
        file_offset: 0,
        size: bytes.len() as u64,
    };
    let k_bytes = quant::quantize(BlockType::F16, &k, nope, None)?;
    Ok((
        info("k_b", BlockType::F16, [nope, lora, heads], &k_bytes),
        k_bytes,
        info("v_b", kv_b.info.ty, [lora, v, heads], &v_bytes),
        v_bytes,
    ))
}

/// The routed-expert layers of a deepseek2 file, typed and sized from its tensors.
fn expert_layers(file: &File, c: &Deepseek2Config) -> Result<Vec<ExpertLayer>> {
    (c.dense_lead..c.n_layer)
        .map(|l| {
            let part = |name: &str| -> Result<(BlockType, u64)> {
                let t = file.tensor(&format!("blk.{l}.ffn_{name}_exps.weight"))?;
                Ok((t.info.ty, t.info.size / c.n_expert.max(1) as u64))
            };
            let parts = [part("gate")?, part("up")?, part("down")?];
            Ok(ExpertLayer {
                layer: l,
                n_expert: c.n_expert,
                n_used: c.n_used,
                n_embd: c.n_embd,
                ff: c.expert_ff,
                types: parts.map(|p| p.0),
                part_bytes: parts.map(|p| p.1),
            })
        })
        .collect()
}

/// The device-memory plan of a deepseek2 file for `n_ctx` positions: the latent cache,
/// and scratch for a forward pass of `n_ctx` tokens (every activation of a layer live
/// at once, generously, plus 2 MiB for routes, parameters and page rounding).
pub fn memory_plan(file: &File, n_ctx: usize) -> Result<MemoryPlan> {
    let c = Deepseek2Config::from_gguf(file)?;
    let kv = (c.n_layer * n_ctx * c.cache_width() * 4) as u64;
    let per_token = 6 * c.n_embd
        + 2 * c.n_head * c.qk_head()
        + 2 * c.n_head * c.cache_width()
        + c.n_head * (c.kv_lora + c.v_head)
        + 2 * c.cache_width()
        + 2 * c.n_expert
        + c.n_used * (3 * c.expert_ff + c.n_embd)
        + 3 * c.n_ff.max(c.expert_ff * c.n_shared)
        + c.n_vocab;
    let scratch = (4 * n_ctx * per_token) as u64 + (2 << 20);
    // Per layer the per-head tables of attn_k_b and attn_v_b, per MoE layer a slot table.
    let table = |n: usize| (4 * n as u64).div_ceil(16) * 16;
    let tables = c.n_layer as u64 * 2 * table(c.n_head) + (c.n_layer - c.dense_lead) as u64 * table(c.n_expert);
    Ok(MemoryPlan::of(file, tables, kv, scratch, expert_layers(file, &c)?))
}

impl<B: Backend> Deepseek2<B> {
    /// Load every weight onto `backend`, everything resident; `progress(done, total)`
    /// is called per tensor.
    pub fn load(file: &File, backend: &mut B, progress: impl FnMut(usize, usize)) -> Result<Self> {
        Self::load_with(file, backend, &StreamOptions::default(), progress)
    }

    /// Load under `options`: with a VRAM budget, the memory plan is checked before any
    /// upload, and the routed experts stream.
    pub fn load_with(
        file: &File,
        backend: &mut B,
        options: &StreamOptions,
        progress: impl FnMut(usize, usize),
    ) -> Result<Self> {
        let c = Deepseek2Config::from_gguf(file)?;
        let plan = memory_plan(file, options.n_ctx)?;
        backend.plan(&plan, options)?;
        let experts = plan.expert_layers;
        let mut ld = Loader {
            file,
            done: 0,
            total: file.tensors().count(),
            progress,
        };
        let embed = ld.matrix(backend, "token_embd.weight", &[c.n_embd, c.n_vocab])?;
        let output_norm = ld.matrix(backend, "output_norm.weight", &[c.n_embd])?;
        let output = ld.matrix(backend, "output.weight", &[c.n_embd, c.n_vocab])?;
        // DeepSeek-V3 has a router bias in every MoE layer, V2 in none: once any layer has
        // one, every MoE layer must (a single missing one is a damaged file, and loading
        // it without would silently change that layer's routing).
        let bias_name = |l: usize| format!("blk.{l}.exp_probs_b.bias");
        let biased = (c.dense_lead..c.n_layer).any(|l| ld.has(&bias_name(l)));
        let mut layers = Vec::with_capacity(c.n_layer);
        let q_width = c.n_head * c.qk_head();
        for l in 0..c.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            let q = match c.q_lora {
                Some(r) => Query::Lora {
                    a: ld.matrix(backend, &n("attn_q_a"), &[c.n_embd, r])?,
                    norm: ld.matrix(backend, &n("attn_q_a_norm"), &[r])?,
                    b: ld.matrix(backend, &n("attn_q_b"), &[r, q_width])?,
                },
                None => Query::Direct(ld.matrix(backend, &n("attn_q"), &[c.n_embd, q_width])?),
            };
            let kv_a = ld.matrix(backend, &n("attn_kv_a_mqa"), &[c.n_embd, c.cache_width()])?;
            let kv_a_norm = ld.matrix(backend, &n("attn_kv_a_norm"), &[c.kv_lora])?;
            let (k_b, v_b) = match c.kv_layout {
                KvLayout::Split => (
                    ld.experts(backend, &n("attn_k_b"), &[c.qk_nope, c.kv_lora, c.n_head])?,
                    ld.experts(backend, &n("attn_v_b"), &[c.kv_lora, c.v_head, c.n_head])?,
                ),
                KvLayout::Merged => {
                    let kv_b = ld.view(&n("attn_kv_b"), &[c.kv_lora, c.n_head * (c.qk_nope + c.v_head)])?;
                    let (ki, kb, vi, vb) = split_kv_b(&kv_b, &c)?;
                    let path = kv_b.path;
                    let k_b = backend.experts(&TensorView {
                        info: &ki,
                        bytes: &kb,
                        path,
                        shard: None,
                    })?;
                    let v_b = backend.experts(&TensorView {
                        info: &vi,
                        bytes: &vb,
                        path,
                        shard: None,
                    })?;
                    ld.tick();
                    (k_b, v_b)
                }
            };
            let attn = Attention {
                q,
                kv_a,
                kv_a_norm,
                k_b,
                v_b,
                output: ld.matrix(backend, &n("attn_output"), &[c.n_head * c.v_head, c.n_embd])?,
            };
            let attn_norm = ld.matrix(backend, &n("attn_norm"), &[c.n_embd])?;
            let ffn_norm = ld.matrix(backend, &n("ffn_norm"), &[c.n_embd])?;
            let mut mlp = |ld: &mut Loader<_>, suffix: &str, ff: usize| -> Result<Mlp<B>> {
                let part = |name: &str| (n(&format!("{name}{suffix}")), [c.n_embd, ff]);
                Ok(Mlp {
                    gate_up: ld.projections(backend, &[part("ffn_gate"), part("ffn_up")])?,
                    down: ld.matrix(backend, &n(&format!("ffn_down{suffix}")), &[ff, c.n_embd])?,
                })
            };
            let ffn = if l < c.dense_lead {
                Ffn::Dense(mlp(&mut ld, "", c.n_ff)?)
            } else {
                let shared = if c.n_shared > 0 {
                    Some(mlp(&mut ld, "_shexp", c.expert_ff * c.n_shared)?)
                } else {
                    None
                };
                let (e, f, d) = (c.n_expert, c.expert_ff, c.n_embd);
                let router = ld.matrix(backend, &n("ffn_gate_inp"), &[d, e])?;
                let bias = if biased {
                    Some(ld.matrix(backend, &bias_name(l), &[e])?)
                } else {
                    None
                };
                let tensors = [
                    ld.tensor_ref(&n("ffn_gate_exps"), &[d, f, e])?,
                    ld.tensor_ref(&n("ffn_up_exps"), &[d, f, e])?,
                    ld.tensor_ref(&n("ffn_down_exps"), &[f, d, e])?,
                ];
                let experts = backend.routed(&experts[l - c.dense_lead], &tensors)?;
                for _ in 0..3 {
                    ld.tick();
                }
                Ffn::Moe(Moe {
                    router,
                    bias,
                    experts,
                    shared,
                })
            };
            layers.push(Layer {
                attn_norm,
                attn,
                ffn_norm,
                ffn,
            });
        }
        backend.loaded()?;
        let rope_q = Rope::new(
            c.n_head,
            c.qk_head(),
            c.qk_nope,
            c.qk_rope,
            c.rope_theta,
            c.rope_scaling,
        )?;
        let rope_k = Rope::new(1, c.cache_width(), c.kv_lora, c.qk_rope, c.rope_theta, c.rope_scaling)?;
        Ok(Deepseek2 {
            config: c,
            embed,
            output_norm,
            output,
            layers,
            rope_q,
            rope_k,
        })
    }

    /// A fresh session with room for `n_ctx` positions (latent cache only).
    pub fn session(&self, backend: &mut B, n_ctx: usize) -> Result<Session<B>> {
        let caches = (0..self.config.n_layer)
            .map(|_| backend.cache(n_ctx, self.config.cache_width(), 0))
            .collect::<Result<_>>()?;
        Ok(Session::new(caches, n_ctx))
    }

    /// MLA for the rows of `h`, added to `x`. `per_head` routes pair (token, head) to
    /// head's matrices of `attn_k_b`/`attn_v_b`.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        b: &mut B,
        a: &Attention<B>,
        h: &B::Tensor,
        per_head: &B::Routes,
        cache: &mut B::Cache,
        pos0: usize,
        x: &mut B::Tensor,
    ) -> Result<()> {
        let c = &self.config;
        let (n, heads) = (b.rows(h), c.n_head);
        let mut q = match &a.q {
            Query::Lora { a: qa, norm, b: qb } => {
                let t = b.matmul(qa, h)?;
                let t = b.rms_norm(&t, norm, c.rms_eps)?;
                b.matmul(qb, &t)?
            }
            Query::Direct(w) => b.matmul(w, h)?,
        };
        let mut kv = b.matmul(&a.kv_a, h)?;
        b.rope(&mut q, &self.rope_q, pos0)?;
        b.rope(&mut kv, &self.rope_k, pos0)?;
        let latent = b.rms_norm(&kv, &a.kv_a_norm, c.rms_eps)?;
        b.copy_columns(&latent, 0, &mut kv, 0, c.kv_lora)?;
        let q = b.reshape(q, n * heads, c.qk_head())?;
        let mut qc = b.zeros(n * heads, c.cache_width())?;
        b.matmul_id(&a.k_b, &q, per_head, false, &mut qc)?;
        b.copy_columns(&q, c.qk_nope, &mut qc, c.kv_lora, c.qk_rope)?;
        let qc = b.reshape(qc, n, heads * c.cache_width())?;
        let shape = Heads {
            heads,
            kv_heads: 1,
            k_dim: c.cache_width(),
            v_dim: c.kv_lora,
            scale: c.kq_scale(),
        };
        let att = b.attention(&qc, &kv, Values::KeyPrefix, cache, &shape, pos0)?;
        let att = b.reshape(att, n * heads, c.kv_lora)?;
        let mut o = b.zeros(n * heads, c.v_head)?;
        b.matmul_id(&a.v_b, &att, per_head, false, &mut o)?;
        let o = b.reshape(o, n, heads * c.v_head)?;
        b.matmul_add(&a.output, &o, x)
    }

    /// The shared expert: `x += down(silu(gate(h)) · up(h))`.
    fn shared_expert(b: &mut B, m: &Mlp<B>, h: &B::Tensor, x: &mut B::Tensor) -> Result<()> {
        let s = m.gate_up.swiglu(b, h, None)?;
        b.matmul_add(&m.down, &s, x)
    }

    /// The MoE FFN of one layer into `x` (`h` is x normalized by the layer's
    /// `ffn_norm`). `next` is the next MoE layer, whose router is applied to `x` to
    /// predict its experts when the backend prefetches.
    fn moe(
        &self,
        b: &mut B,
        m: &Moe<B>,
        h: &B::Tensor,
        x: &mut B::Tensor,
        next: Option<(&B::Matrix, &Moe<B>)>,
        trace: Trace,
    ) -> Result<()> {
        let c = &self.config;
        let n = b.rows(h);
        let logits = b.matmul(&m.router, h)?;
        let routes = b.route(&logits, m.bias.as_ref(), &c.router())?;
        if let Some((records, pos0, layer)) = trace {
            let (ids, weights) = b.routes_to_host(&routes)?;
            for t in 0..n {
                let span = t * c.n_used..(t + 1) * c.n_used;
                records.push(RouteRecord {
                    position: pos0 + t,
                    layer,
                    experts: ids[span.clone()].to_vec(),
                    weights: weights[span].to_vec(),
                });
            }
        }
        let predicted = match next {
            Some((norm, next)) if b.predicts() => {
                let hn = b.rms_norm(x, norm, c.rms_eps)?;
                let logits = b.matmul(&next.router, &hn)?;
                Some((&next.experts, b.route(&logits, next.bias.as_ref(), &c.router())?))
            }
            _ => None,
        };
        b.routed_ffn(&m.experts, h, &routes, x, predicted.as_ref().map(|(e, r)| (*e, r)))?;
        if let Some(shared) = &m.shared {
            Self::shared_expert(b, shared, h, x)?;
        }
        Ok(())
    }

    /// The embedded rows of `tokens` and the routes that pair each (token, head) with
    /// the head's matrices of `attn_k_b`/`attn_v_b` (for [`Self::layer`]).
    pub(crate) fn embed(&self, b: &mut B, tokens: &[u32]) -> Result<(B::Tensor, B::Routes)> {
        let heads: Vec<u32> = (0..self.config.n_head as u32).collect();
        Ok((b.embed(&self.embed, tokens)?, b.fixed_routes(tokens.len(), &heads)?))
    }

    /// Layer `l` over the residual stream `x` of tokens at `pos0..`, with its cache;
    /// routes go to `trace` when tracing.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn layer(
        &self,
        b: &mut B,
        l: usize,
        cache: &mut B::Cache,
        x: &mut B::Tensor,
        pos0: usize,
        per_head: &B::Routes,
        trace: Option<&mut Vec<RouteRecord>>,
    ) -> Result<()> {
        let c = &self.config;
        let layer = &self.layers[l];
        let h = b.rms_norm(x, &layer.attn_norm, c.rms_eps)?;
        self.attention(b, &layer.attn, &h, per_head, cache, pos0, x)?;
        match &layer.ffn {
            Ffn::Dense(m) => {
                let s = m.gate_up.swiglu(b, x, Some((&layer.ffn_norm, c.rms_eps)))?;
                b.matmul_add(&m.down, &s, x)
            }
            Ffn::Moe(m) => {
                let h = b.rms_norm(x, &layer.ffn_norm, c.rms_eps)?;
                let next = self.layers.get(l + 1).and_then(|n| match &n.ffn {
                    Ffn::Moe(next) => Some((&n.ffn_norm, next)),
                    Ffn::Dense(_) => None,
                });
                self.moe(b, m, &h, x, next, trace.map(|r| (r, pos0, l)))
            }
        }
    }

    /// The output norm and head over rows `x` (after the last layer): logits `[rows][n_vocab]`.
    pub(crate) fn head(&self, b: &mut B, x: &B::Tensor) -> Result<B::Tensor> {
        b.norm_matmul(&self.output, x, &self.output_norm, self.config.rms_eps)
    }
}

/// Where to record routes: the records, the first position, the layer.
type Trace<'a> = Option<(&'a mut Vec<RouteRecord>, usize, usize)>;
