//! Collecting an importance matrix: [`Collect`] wraps any backend and, around every
//! matrix product, adds the squares of the product's inputs to the weight tensor's
//! [`Entry`], per expert for routed products counting only the tokens routed there
//! (llama.cpp's `IMatrixCollector::collect_imatrix`). Inputs are read back to the host,
//! so collecting is slower than inference.

use super::imatrix::{Entry, Imatrix};
use crate::backend::{Backend, Heads, ResidentExperts, Rope, Router, Values, resident_routed, resident_routed_ffn};
use crate::error::Result;
use crate::gguf::{TensorRef, TensorView};
use crate::stream::ExpertLayer;
use std::collections::BTreeMap;

/// A backend value with the GGUF name of the tensor it came from.
pub struct Named<T> {
    name: String,
    k: usize,
    n_mat: usize,
    inner: T,
}

/// Routes, their token count, and whether they are fixed (per-head products, which
/// keep one count for the whole tensor).
pub struct CollectRoutes<R> {
    inner: R,
    n_tokens: usize,
    fixed: bool,
}

/// How a record counts its inputs.
#[derive(Clone, Copy)]
enum Counting {
    /// Each recorded row counts for its matrix.
    PerMatrix,
    /// One count for the tensor, raised by this many tokens.
    Tokens(usize),
}

pub struct Collect<B: Backend> {
    pub inner: B,
    pub entries: BTreeMap<String, Entry>,
}

impl<B: Backend> Collect<B> {
    pub fn new(inner: B) -> Self {
        Collect {
            inner,
            entries: BTreeMap::new(),
        }
    }

    /// The collected statistics.
    pub fn imatrix(&self, datasets: Vec<String>, chunks: usize, chunk_size: usize) -> Imatrix {
        Imatrix {
            entries: self.entries.clone(),
            datasets,
            chunks,
            chunk_size,
        }
    }

    /// Add each row r of `x` (its first k values) to matrix `mat_of(r)` of `w`'s entry.
    fn record<T>(
        &mut self,
        w: &Named<T>,
        x: &B::Tensor,
        counting: Counting,
        mat_of: impl Fn(usize) -> usize,
    ) -> Result<()> {
        let rows = self.inner.rows(x).max(1);
        let data = self.inner.to_host(x)?;
        let per_matrix = matches!(counting, Counting::PerMatrix);
        let e = self
            .entries
            .entry(w.name.clone())
            .or_insert_with(|| Entry::new(w.k, w.n_mat, per_matrix));
        for (r, row) in data.chunks(data.len() / rows).enumerate() {
            let m = mat_of(r);
            for (s, v) in e.sum2[m * w.k..(m + 1) * w.k].iter_mut().zip(&row[..w.k]) {
                *s += v * v;
            }
            if per_matrix {
                e.counts[m] += 1.0;
            }
        }
        if let Counting::Tokens(n) = counting {
            e.counts[0] += n as f32;
        }
        Ok(())
    }
}

impl<B: Backend> Backend for Collect<B> {
    type Tensor = B::Tensor;
    type Matrix = Named<B::Matrix>;
    type Experts = Named<B::Experts>;
    type Routes = CollectRoutes<B::Routes>;
    type Cache = B::Cache;
    type Routed = ResidentExperts<Named<B::Experts>>;
    type Read = B::Read;

    fn routed(&mut self, shape: &ExpertLayer, tensors: &[TensorRef; 3]) -> Result<Self::Routed> {
        resident_routed(self, shape, tensors)
    }
    fn routed_ffn(
        &mut self,
        experts: &Self::Routed,
        h: &Self::Tensor,
        routes: &Self::Routes,
        acc: &mut Self::Tensor,
        _next: Option<(&Self::Routed, &Self::Routes)>,
    ) -> Result<()> {
        resident_routed_ffn(self, experts, h, routes, acc)
    }

    fn name(&self) -> String {
        format!("{} (collecting an imatrix)", self.inner.name())
    }
    fn memory_report(&self) -> String {
        self.inner.memory_report()
    }
    fn matrix(&mut self, t: &TensorView) -> Result<Self::Matrix> {
        Ok(Named {
            name: t.info.name.clone(),
            k: t.info.row_len() as usize,
            n_mat: 1,
            inner: self.inner.matrix(t)?,
        })
    }
    fn experts(&mut self, t: &TensorView) -> Result<Self::Experts> {
        Ok(Named {
            name: t.info.name.clone(),
            k: t.info.row_len() as usize,
            n_mat: t.info.dims.get(2).copied().unwrap_or(1) as usize,
            inner: self.inner.experts(t)?,
        })
    }
    fn cache(&mut self, n_ctx: usize, k_width: usize, v_width: usize) -> Result<Self::Cache> {
        self.inner.cache(n_ctx, k_width, v_width)
    }
    fn rows(&self, x: &Self::Tensor) -> usize {
        self.inner.rows(x)
    }
    fn upload(&mut self, data: &[f32], n: usize, width: usize) -> Result<Self::Tensor> {
        self.inner.upload(data, n, width)
    }
    fn zeros(&mut self, n: usize, width: usize) -> Result<Self::Tensor> {
        self.inner.zeros(n, width)
    }
    fn reshape(&mut self, x: Self::Tensor, n: usize, width: usize) -> Result<Self::Tensor> {
        self.inner.reshape(x, n, width)
    }
    fn embed(&mut self, table: &Self::Matrix, tokens: &[u32]) -> Result<Self::Tensor> {
        self.inner.embed(&table.inner, tokens)
    }
    fn rms_norm(&mut self, x: &Self::Tensor, w: &Self::Matrix, eps: f32) -> Result<Self::Tensor> {
        self.inner.rms_norm(x, &w.inner, eps)
    }
    fn matmul(&mut self, w: &Self::Matrix, x: &Self::Tensor) -> Result<Self::Tensor> {
        let n = self.inner.rows(x);
        self.record(w, x, Counting::Tokens(n), |_| 0)?;
        self.inner.matmul(&w.inner, x)
    }
    fn matmul_add(&mut self, w: &Self::Matrix, x: &Self::Tensor, acc: &mut Self::Tensor) -> Result<()> {
        let n = self.inner.rows(x);
        self.record(w, x, Counting::Tokens(n), |_| 0)?;
        self.inner.matmul_add(&w.inner, x, acc)
    }
    fn fixed_routes(&mut self, n_tokens: usize, ids: &[u32]) -> Result<Self::Routes> {
        Ok(CollectRoutes {
            inner: self.inner.fixed_routes(n_tokens, ids)?,
            n_tokens,
            fixed: true,
        })
    }
    fn route(&mut self, logits: &Self::Tensor, bias: Option<&Self::Matrix>, router: &Router) -> Result<Self::Routes> {
        Ok(CollectRoutes {
            inner: self.inner.route(logits, bias.map(|b| &b.inner), router)?,
            n_tokens: self.inner.rows(logits),
            fixed: false,
        })
    }
    fn routes_to_host(&mut self, routes: &Self::Routes) -> Result<(Vec<u32>, Vec<f32>)> {
        self.inner.routes_to_host(&routes.inner)
    }
    fn matmul_id(
        &mut self,
        w: &Self::Experts,
        x: &Self::Tensor,
        routes: &Self::Routes,
        weighted: bool,
        y: &mut Self::Tensor,
    ) -> Result<()> {
        let (ids, _) = self.inner.routes_to_host(&routes.inner)?;
        let counting = if routes.fixed {
            Counting::Tokens(routes.n_tokens)
        } else {
            Counting::PerMatrix
        };
        let n_used = ids.len() / routes.n_tokens.max(1);
        if self.inner.rows(x) == ids.len() {
            self.record(w, x, counting, |p| ids[p] as usize)?;
        } else {
            // All pairs of token t read row t: record it once per routed expert.
            for j in 0..n_used {
                let c = match counting {
                    Counting::Tokens(_) if j > 0 => Counting::Tokens(0),
                    c => c,
                };
                self.record(w, x, c, |t| ids[t * n_used + j] as usize)?;
            }
        }
        self.inner.matmul_id(&w.inner, x, &routes.inner, weighted, y)
    }
    fn add_pair_sums(&mut self, y: &Self::Tensor, n_used: usize, acc: &mut Self::Tensor) -> Result<()> {
        self.inner.add_pair_sums(y, n_used, acc)
    }
    fn copy_columns(
        &mut self,
        src: &Self::Tensor,
        src_offset: usize,
        dst: &mut Self::Tensor,
        dst_offset: usize,
        width: usize,
    ) -> Result<()> {
        self.inner.copy_columns(src, src_offset, dst, dst_offset, width)
    }
    fn split_columns(&mut self, x: &Self::Tensor, widths: &[usize]) -> Result<Vec<Self::Tensor>> {
        self.inner.split_columns(x, widths)
    }
    fn rope(&mut self, x: &mut Self::Tensor, rope: &Rope, pos0: usize) -> Result<()> {
        self.inner.rope(x, rope, pos0)
    }
    fn attention(
        &mut self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: Values<Self::Tensor>,
        cache: &mut Self::Cache,
        heads: &Heads,
        pos0: usize,
    ) -> Result<Self::Tensor> {
        self.inner.attention(q, k, v, cache, heads, pos0)
    }
    fn swiglu(&mut self, gate: &Self::Tensor, up: &Self::Tensor) -> Result<Self::Tensor> {
        self.inner.swiglu(gate, up)
    }
    fn swiglu_stacked(&mut self, gate_up: &Self::Tensor) -> Result<Self::Tensor> {
        self.inner.swiglu_stacked(gate_up)
    }
    fn last_row(&mut self, x: &Self::Tensor) -> Result<Self::Tensor> {
        self.inner.last_row(x)
    }
    fn to_host(&mut self, x: &Self::Tensor) -> Result<Vec<f32>> {
        self.inner.to_host(x)
    }
    fn read_start(&mut self, x: &Self::Tensor) -> Result<B::Read> {
        self.inner.read_start(x)
    }
    fn read_poll(&mut self, read: &mut B::Read) -> Result<Option<Vec<f32>>> {
        self.inner.read_poll(read)
    }
    fn read_wait(&mut self, read: &mut B::Read) -> Result<Vec<f32>> {
        self.inner.read_wait(read)
    }
    fn submit(&mut self) -> Result<()> {
        self.inner.submit()
    }
    fn argmax(&mut self, x: &Self::Tensor) -> Result<Self::Tensor> {
        self.inner.argmax(x)
    }
}
