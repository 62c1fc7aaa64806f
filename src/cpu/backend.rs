//! The CPU backend: every operation written plainly, parallel over rows with rayon.
//! Weights stay packed; each matmul dequantizes one row at a time with the bit-exact
//! codecs (no dequantized copy of the model). They are computed straight from the file's
//! memory map, or under a RAM budget from owned memory (see [`WeightBytes`]).
//!
//! [`CpuBackend::fast`] is the same backend with the products, norms, rotations and
//! attention of [`super::fast`] instead (quantized activations, SIMD kernels, one thread
//! pool); [`CpuBackend::default`] is the exact reference.

use super::fast::{Fast, fast_pair_products, fast_product, fast_routed_ffn, fast_swiglu_product};
use super::weights::WeightBytes;
use crate::backend::{
    Backend, Heads, ResidentExperts, Rope, Router, Values, check_attention, check_copy_columns, check_matmul_id,
    check_pair_sums, check_split, check_swiglu_stacked, refuse_vram_budget, resident_routed, resident_routed_ffn,
};
use crate::error::{Error, Result};
use crate::gguf::{TensorRef, TensorView};
use crate::quant::dot::{Simd, dot_f32 as dot};
use crate::quant::{self, BlockType};
use crate::stream::host::HostExperts;
use crate::stream::plan::Memory;
use crate::stream::{ExpertLayer, MemoryPlan, StreamOptions, StreamStats};
use rayon::prelude::*;

/// Activations `[n][width]`.
#[derive(Clone, Debug)]
pub struct CpuTensor {
    pub data: Vec<f32>,
    pub n: usize,
    pub width: usize,
}

/// A packed weight matrix `[rows][k]`.
pub struct CpuMatrix {
    pub(super) ty: BlockType,
    pub(super) k: usize,
    pub(super) rows: usize,
    pub(super) bytes: WeightBytes,
    /// A one-row tensor's values, decoded at load by the fast backend (norm weights).
    pub(super) values: Option<Vec<f32>>,
    /// A fast backend's stacked matrix: its parts' rows and bytes, read in place (then
    /// `bytes` is empty).
    pub(super) parts: Vec<(usize, WeightBytes)>,
}

impl CpuMatrix {
    /// Whether this is a fast backend's stacked gate and up matrix: two parts of the same
    /// rows.
    pub(super) fn is_gate_up(&self) -> bool {
        matches!(self.parts.as_slice(), [(a, _), (b, _)] if a == b)
    }
}

/// `silu(g) · u`, SwiGLU of one gate and up value (`ggml_vec_swiglu_f32`), in the same
/// f32 arithmetic on every CPU path.
#[inline]
pub(super) fn swiglu(g: f32, u: f32) -> f32 {
    g / (1.0 + (-g).exp()) * u
}

/// `count` packed matrices `[rows][k]`, one after another.
pub struct CpuExperts {
    pub(super) m: CpuMatrix,
    pub(super) count: usize,
}

/// Pair `t * n_used + j` uses matrix `ids[pair]`, weight `weights[pair]`.
pub struct CpuRoutes {
    pub(super) ids: Vec<u32>,
    pub(super) weights: Vec<f32>,
    pub(super) n_used: usize,
}

impl CpuRoutes {
    /// The row of an input of `x_rows` rows that pair p reads: its own where the input has
    /// one row per pair, else its token's (`p / n_used`).
    pub(super) fn input_row(&self, p: usize, x_rows: usize) -> usize {
        if x_rows == self.ids.len() {
            p
        } else {
            p / self.n_used.max(1)
        }
    }
}

/// Keys `[pos][k_width]` and values `[pos][v_width]` for `n_ctx` positions (no values
/// when they are a prefix of the keys).
pub struct CpuCache {
    pub(super) k: Vec<f32>,
    pub(super) v: Vec<f32>,
    pub(super) k_width: usize,
    pub(super) v_width: usize,
    pub(super) n_ctx: usize,
}

/// The CPU backend: the exact reference by default, or [`CpuBackend::fast`]. Weights
/// are computed from the file's memory map, or, under a RAM budget, from memory it owns.
#[derive(Default)]
pub struct CpuBackend {
    /// Read weights into owned memory instead of computing from the map.
    owned: bool,
    /// Under a RAM budget: the host expert cache the routed experts stream through.
    pub(super) host: Option<HostExperts>,
    /// The fast kernels and their thread pool; None for the reference.
    pub(super) fast: Option<Fast>,
}

impl CpuBackend {
    /// The fast backend on `threads` threads (0: the physical cores) at the best SIMD
    /// level this CPU runs (capped by `LOWBIT_SIMD`).
    pub fn fast(threads: usize) -> Result<Self> {
        Ok(Self::fast_at(threads, Simd::detect()?))
    }

    /// The fast backend at SIMD level `simd` (one of [`Simd::available`]).
    pub fn fast_at(threads: usize, simd: Simd) -> Self {
        CpuBackend {
            fast: Some(Fast::new(threads, simd)),
            ..CpuBackend::default()
        }
    }
}

/// A MoE layer's routed experts: resident stacks, or streamed layer i of the host cache.
pub enum CpuRouted {
    Resident(Box<ResidentExperts<CpuExperts>>),
    Streamed(usize),
}

fn shape_err(op: &str, detail: String) -> Error {
    Error::Shape(format!("{op}: {detail}"))
}

/// `y[r] = Σ_k W[r][k] · x[k]` for the `y.len()` rows of `ty` rows of `k` in `bytes`.
fn rows_times(ty: BlockType, k: usize, bytes: &[u8], x: &[f32], y: &mut [f32]) -> Result<()> {
    let rb = ty.row_bytes(k)?;
    let mut buf = vec![0f32; k];
    for (r, out) in y.iter_mut().enumerate() {
        quant::dequantize_row(ty, &bytes[r * rb..][..rb], &mut buf)?;
        *out = dot(&buf, &x[..k]);
    }
    Ok(())
}

impl CpuTensor {
    pub(super) fn zeros(n: usize, width: usize) -> Self {
        CpuTensor {
            data: vec![0.0; n * width],
            n,
            width,
        }
    }
}

/// `acc[t] += Σ_j y[t * n_used + j]` ([`Backend::add_pair_sums`]).
pub(super) fn pair_sums_into(y: &CpuTensor, n_used: usize, acc: &mut CpuTensor) -> Result<()> {
    check_pair_sums((y.n, y.width), n_used, (acc.n, acc.width))?;
    for (t, row) in acc.data.chunks_mut(acc.width).enumerate() {
        for p in y.data[t * n_used * y.width..][..n_used * y.width].chunks(y.width) {
            row.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
    }
    Ok(())
}

/// `silu(gate) ⊙ up` of two tensors of the same size, on the fast pool when given.
pub(super) fn swiglu_values(fast: Option<&Fast>, gate: &CpuTensor, up: &CpuTensor) -> CpuTensor {
    if let Some(fast) = fast {
        let mut out = CpuTensor::zeros(gate.n, gate.width);
        let w = gate.width;
        fast.swiglu_rows(&mut out.data, w, |i| (&gate.data[i * w..][..w], &up.data[i * w..][..w]));
        return out;
    }
    let data = gate
        .data
        .par_iter()
        .zip(&up.data)
        .map(|(&g, &u)| swiglu(g, u))
        .collect();
    CpuTensor {
        data,
        n: gate.n,
        width: gate.width,
    }
}

/// The layout of the matrices a pair product reads: `rows` rows of `k` values of `ty`.
#[derive(Clone, Copy)]
pub(super) struct PairMatrices {
    pub ty: BlockType,
    pub k: usize,
    pub rows: usize,
}

/// `y[p][..rows] = W_p · x[p, or p / n_used]`, times the pair's weight when `weighted`,
/// for each pair p whose matrix bytes `matrix(p)` gives; other rows are left alone.
#[allow(clippy::too_many_arguments)]
pub(super) fn pair_products<'a>(
    fast: Option<&Fast>,
    m: PairMatrices,
    matrix: impl Fn(usize) -> Option<&'a [u8]> + Sync,
    x: &CpuTensor,
    routes: &CpuRoutes,
    weighted: bool,
    y: &mut CpuTensor,
) -> Result<()> {
    let pairs = routes.ids.len();
    check_matmul_id(
        (x.n, x.width),
        (y.n, y.width),
        pairs / routes.n_used.max(1),
        pairs,
        m.rows,
        m.k,
    )?;
    if let Some(fast) = fast {
        return fast_pair_products(fast, m, matrix, x, routes, weighted, y);
    }
    let yw = y.width;
    y.data.par_chunks_mut(yw).enumerate().try_for_each(|(p, out)| {
        let Some(bytes) = matrix(p) else {
            return Ok(());
        };
        let xi = routes.input_row(p, x.n);
        let out = &mut out[..m.rows];
        rows_times(m.ty, m.k, bytes, &x.data[xi * x.width..], out)?;
        if weighted {
            out.iter_mut().for_each(|v| *v *= routes.weights[p]);
        }
        Ok(())
    })
}

impl Backend for CpuBackend {
    type Tensor = CpuTensor;
    type Matrix = CpuMatrix;
    type Experts = CpuExperts;
    type Routes = CpuRoutes;
    type Cache = CpuCache;
    type Routed = CpuRouted;
    type Read = Option<Vec<f32>>;

    /// A VRAM budget is refused; under a RAM budget, weights are read into owned memory
    /// and the routed experts stream through a host cache in what it leaves
    /// ([`Memory::Host`]), refused now when the resident part does not fit.
    fn plan(&mut self, plan: &MemoryPlan, options: &StreamOptions) -> Result<()> {
        refuse_vram_budget(&self.name(), options)?;
        if let Some(budget) = options.ram_budget {
            let left = plan.pool_bytes(budget, Memory::Host)?;
            self.owned = true;
            self.host = Some(HostExperts::new(options.clone(), left, budget));
        }
        Ok(())
    }

    fn loaded(&mut self) -> Result<()> {
        self.host.as_mut().map_or(Ok(()), |h| h.allocate())
    }

    fn routed(&mut self, shape: &ExpertLayer, tensors: &[TensorRef; 3]) -> Result<Self::Routed> {
        match &mut self.host {
            Some(h) => Ok(CpuRouted::Streamed(h.register(shape, tensors)?)),
            None => Ok(CpuRouted::Resident(Box::new(resident_routed(self, shape, tensors)?))),
        }
    }

    fn routed_ffn(
        &mut self,
        experts: &Self::Routed,
        h: &CpuTensor,
        routes: &CpuRoutes,
        acc: &mut CpuTensor,
        next: Option<(&Self::Routed, &CpuRoutes)>,
    ) -> Result<()> {
        match experts {
            CpuRouted::Resident(r) => match self.fast.as_ref().and_then(|f| fast_routed_ffn(f, r, h, routes, acc)) {
                Some(done) => done,
                None => resident_routed_ffn(self, r, h, routes, acc),
            },
            &CpuRouted::Streamed(idx) => {
                let next = next.and_then(|(r, p)| match r {
                    &CpuRouted::Streamed(j) => Some((j, p)),
                    CpuRouted::Resident(_) => None,
                });
                self.streamed_ffn(idx, h, routes, acc, next)
            }
        }
    }

    fn predicts(&self) -> bool {
        self.host.as_ref().is_some_and(|h| h.prefetches())
    }

    fn stream_stats(&self) -> Option<StreamStats> {
        self.host.as_ref().map(|h| h.stats())
    }

    /// The fast backend times each of its operations; the reference cannot.
    fn start_profile(&mut self) -> Result<bool> {
        self.fast.as_ref().map(Fast::start_profile);
        Ok(self.fast.is_some())
    }

    fn profile_report(&self, passes: usize) -> Option<String> {
        self.fast.as_ref().and_then(|f| f.profile_report(passes))
    }

    fn name(&self) -> String {
        match &self.fast {
            Some(f) => format!("cpu ({} threads, {})", f.pool.threads(), f.simd.name()),
            None => format!("cpu-ref ({} threads)", rayon::current_num_threads()),
        }
    }

    fn memory_report(&self) -> String {
        // Resident set size from /proc (Linux); elsewhere unknown.
        let rss = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
            .map(|pages| pages * 4096);
        rss.map_or("resident size unknown".into(), |b| {
            format!("{:.1} MiB resident", b as f64 / (1 << 20) as f64)
        })
    }

    fn matrix(&mut self, t: &TensorView) -> Result<CpuMatrix> {
        let k = t.info.row_len() as usize;
        let rows = t.info.n_rows() as usize;
        let bytes = WeightBytes::of(t, self.owned)?;
        let values = match &self.fast {
            Some(_) if rows == 1 && t.info.ty.can_dequantize() => {
                let mut v = vec![0f32; k];
                quant::dequantize_row(t.info.ty, &bytes, &mut v)?;
                Some(v)
            }
            _ => None,
        };
        Ok(CpuMatrix {
            ty: t.info.ty,
            k,
            rows,
            bytes,
            values,
            parts: Vec::new(),
        })
    }

    /// The fast backend stacks 2-D parts of one format and row length, reading each in
    /// place: one product (one quantized input, one pool run) for all of them.
    fn stacked_matrix(&mut self, parts: &[TensorView]) -> Result<Option<CpuMatrix>> {
        let Some(first) = parts.first().filter(|_| self.fast.is_some()) else {
            return Ok(None);
        };
        let (ty, k) = (first.info.ty, first.info.row_len());
        if parts
            .iter()
            .any(|t| t.info.dims.len() != 2 || t.info.ty != ty || t.info.row_len() != k)
        {
            return Ok(None);
        }
        let parts = parts
            .iter()
            .map(|t| Ok((t.info.n_rows() as usize, WeightBytes::of(t, self.owned)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(CpuMatrix {
            ty,
            k: k as usize,
            rows: parts.iter().map(|p| p.0).sum(),
            bytes: WeightBytes::Owned(Vec::new()),
            values: None,
            parts,
        }))
    }

    fn experts(&mut self, t: &TensorView) -> Result<CpuExperts> {
        let dims = &t.info.dims;
        if dims.len() != 3 {
            return Err(shape_err("experts", format!("{} is {dims:?}, not 3-D", t.info.name)));
        }
        let mut m = self.matrix(t)?;
        m.rows = dims[1] as usize;
        Ok(CpuExperts {
            m,
            count: dims[2] as usize,
        })
    }

    fn cache(&mut self, n_ctx: usize, k_width: usize, v_width: usize) -> Result<CpuCache> {
        Ok(CpuCache {
            k: vec![0.0; n_ctx * k_width],
            v: vec![0.0; n_ctx * v_width],
            k_width,
            v_width,
            n_ctx,
        })
    }

    fn rows(&self, x: &CpuTensor) -> usize {
        x.n
    }

    fn upload(&mut self, data: &[f32], n: usize, width: usize) -> Result<CpuTensor> {
        if data.len() != n * width {
            return Err(shape_err("upload", format!("{} values for [{n}][{width}]", data.len())));
        }
        Ok(CpuTensor {
            data: data.to_vec(),
            n,
            width,
        })
    }

    fn zeros(&mut self, n: usize, width: usize) -> Result<CpuTensor> {
        Ok(CpuTensor::zeros(n, width))
    }

    fn reshape(&mut self, x: CpuTensor, n: usize, width: usize) -> Result<CpuTensor> {
        if n * width != x.data.len() {
            return Err(shape_err(
                "reshape",
                format!("[{}][{}] as [{n}][{width}]", x.n, x.width),
            ));
        }
        Ok(CpuTensor { data: x.data, n, width })
    }

    fn embed(&mut self, table: &CpuMatrix, tokens: &[u32]) -> Result<CpuTensor> {
        let rb = table.ty.row_bytes(table.k)?;
        let mut data = vec![0f32; tokens.len() * table.k];
        for (row, &t) in data.chunks_mut(table.k).zip(tokens) {
            if t as usize >= table.rows {
                return Err(shape_err(
                    "embed",
                    format!("token {t} is outside the vocabulary of {}", table.rows),
                ));
            }
            quant::dequantize_row(table.ty, &table.bytes[t as usize * rb..][..rb], row)?;
        }
        Ok(CpuTensor {
            data,
            n: tokens.len(),
            width: table.k,
        })
    }

    fn rms_norm(&mut self, x: &CpuTensor, w: &CpuMatrix, eps: f32) -> Result<CpuTensor> {
        let len = w.k * w.rows;
        if len > x.width {
            return Err(shape_err(
                "rms_norm",
                format!("weight of {len} for rows of {}", x.width),
            ));
        }
        if let (Some(fast), Some(weight)) = (&self.fast, &w.values) {
            let mut data = vec![0f32; x.n * len];
            fast.rms_norm(&x.data, x.width, weight, eps, &mut data);
            return Ok(CpuTensor {
                data,
                n: x.n,
                width: len,
            });
        }
        let mut weight = vec![0f32; len];
        quant::dequantize_row(w.ty, &w.bytes, &mut weight)?;
        let mut data = vec![0f32; x.n * len];
        data.par_chunks_mut(len)
            .zip(x.data.par_chunks(x.width))
            .for_each(|(out, row)| {
                let row = &row[..len];
                let ms = row.iter().map(|v| v * v).sum::<f32>() / len as f32;
                let scale = 1.0 / (ms + eps).sqrt();
                for ((o, v), g) in out.iter_mut().zip(row).zip(&weight) {
                    *o = v * scale * g;
                }
            });
        Ok(CpuTensor {
            data,
            n: x.n,
            width: len,
        })
    }

    fn matmul(&mut self, w: &CpuMatrix, x: &CpuTensor) -> Result<CpuTensor> {
        if x.width != w.k {
            return Err(shape_err(
                "matmul",
                format!("{} inputs for a matrix of rows of {}", x.width, w.k),
            ));
        }
        if let Some(fast) = &self.fast {
            let mut y = CpuTensor::zeros(x.n, w.rows);
            fast_product(fast, w, x, &mut y, false)?;
            return Ok(y);
        }
        let rb = w.ty.row_bytes(w.k)?;
        let cols: Vec<Vec<f32>> = w
            .bytes
            .par_chunks(rb)
            .map_init(
                || vec![0f32; w.k],
                |buf, row| {
                    quant::dequantize_row(w.ty, row, buf)
                        .map(|_| x.data.chunks(x.width).map(|xt| dot(buf, xt)).collect())
                },
            )
            .collect::<Result<_>>()?;
        let mut data = vec![0f32; x.n * w.rows];
        for (r, col) in cols.iter().enumerate() {
            for (t, v) in col.iter().enumerate() {
                data[t * w.rows + r] = *v;
            }
        }
        Ok(CpuTensor {
            data,
            n: x.n,
            width: w.rows,
        })
    }

    /// The fast backend fuses SwiGLU into a stacked gate and up product.
    fn swiglu_product(
        &mut self,
        gate_up: &CpuMatrix,
        x: &CpuTensor,
        norm: Option<(&CpuMatrix, f32)>,
    ) -> Result<CpuTensor> {
        if self.fast.is_none() || !gate_up.is_gate_up() {
            return crate::backend::swiglu_product_unfused(self, gate_up, x, norm);
        }
        let normed = norm.map(|(w, eps)| self.rms_norm(x, w, eps)).transpose()?;
        let fast = self.fast.as_ref().expect("checked above");
        fast_swiglu_product(fast, gate_up, normed.as_ref().unwrap_or(x))
    }

    fn matmul_add(&mut self, w: &CpuMatrix, x: &CpuTensor, acc: &mut CpuTensor) -> Result<()> {
        if let Some(fast) = &self.fast {
            if x.width != w.k || acc.n != x.n || acc.width != w.rows {
                return Err(shape_err("matmul_add", "accumulator and product differ in size".into()));
            }
            return fast_product(fast, w, x, acc, true);
        }
        let y = self.matmul(w, x)?;
        if acc.data.len() != y.data.len() {
            return Err(shape_err("matmul_add", "accumulator and product differ in size".into()));
        }
        acc.data.iter_mut().zip(&y.data).for_each(|(a, b)| *a += b);
        Ok(())
    }

    fn fixed_routes(&mut self, n_tokens: usize, ids: &[u32]) -> Result<CpuRoutes> {
        Ok(CpuRoutes {
            ids: ids.repeat(n_tokens),
            weights: vec![1.0; n_tokens * ids.len()],
            n_used: ids.len(),
        })
    }

    fn route(&mut self, logits: &CpuTensor, bias: Option<&CpuMatrix>, router: &Router) -> Result<CpuRoutes> {
        router.check()?;
        if logits.width != router.n_expert {
            return Err(shape_err(
                "route",
                format!("{} logits for {} experts", logits.width, router.n_expert),
            ));
        }
        let bias = match bias {
            Some(b) if b.k * b.rows == router.n_expert => {
                let mut v = vec![0f32; router.n_expert];
                quant::dequantize_row(b.ty, &b.bytes, &mut v)?;
                Some(v)
            }
            Some(b) => {
                return Err(shape_err(
                    "route",
                    format!("bias of {} for {} experts", b.k * b.rows, router.n_expert),
                ));
            }
            None => None,
        };
        let (mut ids, mut weights) = (Vec::new(), Vec::new());
        for row in logits.data.chunks(logits.width) {
            let (i, w) = router.select(row, bias.as_deref());
            ids.extend(i);
            weights.extend(w);
        }
        Ok(CpuRoutes {
            ids,
            weights,
            n_used: router.n_used,
        })
    }

    fn routes_to_host(&mut self, routes: &CpuRoutes) -> Result<(Vec<u32>, Vec<f32>)> {
        Ok((routes.ids.clone(), routes.weights.clone()))
    }

    fn matmul_id(
        &mut self,
        w: &CpuExperts,
        x: &CpuTensor,
        routes: &CpuRoutes,
        weighted: bool,
        y: &mut CpuTensor,
    ) -> Result<()> {
        if let Some(&bad) = routes.ids.iter().find(|&&e| e as usize >= w.count) {
            return Err(shape_err("matmul_id", format!("matrix {bad} of {}", w.count)));
        }
        let m = PairMatrices {
            ty: w.m.ty,
            k: w.m.k,
            rows: w.m.rows,
        };
        let size = w.m.ty.row_bytes(w.m.k)? * w.m.rows;
        let matrix = |p: usize| Some(&w.m.bytes[routes.ids[p] as usize * size..][..size]);
        pair_products(self.fast.as_ref(), m, matrix, x, routes, weighted, y)
    }

    fn add_pair_sums(&mut self, y: &CpuTensor, n_used: usize, acc: &mut CpuTensor) -> Result<()> {
        pair_sums_into(y, n_used, acc)
    }

    fn copy_columns(
        &mut self,
        src: &CpuTensor,
        src_offset: usize,
        dst: &mut CpuTensor,
        dst_offset: usize,
        width: usize,
    ) -> Result<()> {
        check_copy_columns((src.n, src.width), src_offset, (dst.n, dst.width), dst_offset, width)?;
        for (d, s) in dst.data.chunks_mut(dst.width).zip(src.data.chunks(src.width)) {
            d[dst_offset..dst_offset + width].copy_from_slice(&s[src_offset..src_offset + width]);
        }
        Ok(())
    }

    fn rope(&mut self, x: &mut CpuTensor, rope: &Rope, pos0: usize) -> Result<()> {
        let width = rope.heads * rope.head_dim;
        if x.width < width || rope.offset + rope.dims() > rope.head_dim {
            return Err(shape_err(
                "rope",
                format!("rows of {} for {} heads of {}", x.width, rope.heads, rope.head_dim),
            ));
        }
        if let Some(fast) = &self.fast {
            fast.rope(&mut x.data, x.width, rope, pos0);
            return Ok(());
        }
        x.data.par_chunks_mut(x.width).enumerate().for_each(|(i, row)| {
            let pos = (pos0 + i) as f32;
            for head in row[..width].chunks_mut(rope.head_dim) {
                let head = &mut head[rope.offset..];
                for (p, f) in rope.freqs.iter().enumerate() {
                    let (sin, cos) = (pos * f).sin_cos();
                    let (a, b) = (head[2 * p], head[2 * p + 1]);
                    head[2 * p] = (a * cos - b * sin) * rope.mscale;
                    head[2 * p + 1] = (a * sin + b * cos) * rope.mscale;
                }
            }
        });
        Ok(())
    }

    fn attention(
        &mut self,
        q: &CpuTensor,
        k: &CpuTensor,
        v: Values<CpuTensor>,
        cache: &mut CpuCache,
        h: &Heads,
        pos0: usize,
    ) -> Result<CpuTensor> {
        let n = q.n;
        let own_v = v.own();
        let (kw, vw) = (cache.k_width, cache.v_width);
        check_attention(
            (q.n, q.width),
            (k.n, k.width),
            own_v.map(|v| (v.n, v.width)),
            (kw, vw, cache.n_ctx),
            h,
            pos0,
        )?;
        cache.k[pos0 * kw..(pos0 + n) * kw].copy_from_slice(&k.data);
        if let Some(v) = own_v {
            cache.v[pos0 * vw..(pos0 + n) * vw].copy_from_slice(&v.data);
        }
        let group = h.heads / h.kv_heads;
        let (ck, cv) = (&cache.k, &cache.v);
        let value = |p: usize, kvh: usize| -> &[f32] {
            if own_v.is_some() {
                &cv[p * vw + kvh * h.v_dim..][..h.v_dim]
            } else {
                &ck[p * kw + kvh * h.k_dim..][..h.v_dim]
            }
        };
        let mut out = vec![0f32; n * h.heads * h.v_dim];
        if let Some(fast) = &self.fast {
            fast.attention(&q.data, q.width, ck, kw, value, h, pos0, &mut out);
            return Ok(CpuTensor {
                data: out,
                n,
                width: h.heads * h.v_dim,
            });
        }
        out.par_chunks_mut(h.v_dim).enumerate().for_each(|(idx, o)| {
            let (i, head) = (idx / h.heads, idx % h.heads);
            let kvh = head / group;
            let qv = &q.data[i * q.width + head * h.k_dim..][..h.k_dim];
            let len = pos0 + i + 1;
            let scores: Vec<f32> = (0..len)
                .map(|p| dot(qv, &ck[p * kw + kvh * h.k_dim..][..h.k_dim]) * h.scale)
                .collect();
            let max = scores.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let e: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f32 = e.iter().sum();
            for (p, ep) in e.iter().enumerate() {
                for (oj, vj) in o.iter_mut().zip(value(p, kvh)) {
                    *oj += ep / sum * vj;
                }
            }
        });
        Ok(CpuTensor {
            data: out,
            n,
            width: h.heads * h.v_dim,
        })
    }

    fn swiglu(&mut self, gate: &CpuTensor, up: &CpuTensor) -> Result<CpuTensor> {
        if gate.data.len() != up.data.len() {
            return Err(shape_err("swiglu", "gate and up differ in size".into()));
        }
        Ok(swiglu_values(self.fast.as_ref(), gate, up))
    }

    fn swiglu_stacked(&mut self, gate_up: &CpuTensor) -> Result<CpuTensor> {
        let f = check_swiglu_stacked(gate_up.width)?;
        if let Some(fast) = &self.fast {
            let mut out = CpuTensor::zeros(gate_up.n, f);
            let w = gate_up.width;
            fast.swiglu_rows(&mut out.data, f, |i| gate_up.data[i * w..][..w].split_at(f));
            return Ok(out);
        }
        let mut data = vec![0.0; gate_up.n * f];
        data.par_chunks_mut(f.max(1))
            .zip(gate_up.data.par_chunks(gate_up.width.max(1)))
            .for_each(|(out, row)| {
                let (gate, up) = row.split_at(f);
                for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
                    *o = swiglu(*g, *u);
                }
            });
        Ok(CpuTensor {
            data,
            n: gate_up.n,
            width: f,
        })
    }

    fn split_columns(&mut self, x: &CpuTensor, widths: &[usize]) -> Result<Vec<CpuTensor>> {
        check_split(x.width, widths)?;
        let mut offset = 0;
        Ok(widths
            .iter()
            .map(|&width| {
                let data = x
                    .data
                    .chunks(x.width.max(1))
                    .flat_map(|row| &row[offset..offset + width])
                    .copied()
                    .collect();
                offset += width;
                CpuTensor { data, n: x.n, width }
            })
            .collect())
    }

    fn last_row(&mut self, x: &CpuTensor) -> Result<CpuTensor> {
        Ok(CpuTensor {
            data: x.data[(x.n - 1) * x.width..].to_vec(),
            n: 1,
            width: x.width,
        })
    }

    fn to_host(&mut self, x: &CpuTensor) -> Result<Vec<f32>> {
        Ok(x.data.clone())
    }

    /// The values at once: the CPU computed them as the operations were called.
    fn read_start(&mut self, x: &CpuTensor) -> Result<Option<Vec<f32>>> {
        Ok(Some(x.data.clone()))
    }

    fn read_poll(&mut self, read: &mut Option<Vec<f32>>) -> Result<Option<Vec<f32>>> {
        read.take()
            .map(Some)
            .ok_or_else(|| Error::Unsupported("polling a read that already returned its values".into()))
    }

    fn read_wait(&mut self, read: &mut Option<Vec<f32>>) -> Result<Vec<f32>> {
        read.take()
            .ok_or_else(|| Error::Unsupported("waiting for a read that already returned its values".into()))
    }
}
