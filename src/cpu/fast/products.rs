//! The fast backend's products on the CPU backend's tensors: `matmul`, `matmul_add` and
//! the pair products of `matmul_id` and the streamed experts.

use super::{Fast, Rows};
use crate::cpu::backend::{CpuMatrix, CpuRoutes, CpuTensor, PairMatrices};
use crate::error::Result;
use crate::quant::dot::DotType;

/// `y (+)= x · Wᵀ` (`add`: accumulate), x quantized once for all of W's rows.
pub(in crate::cpu) fn fast_product(
    fast: &Fast,
    w: &CpuMatrix,
    x: &CpuTensor,
    y: &mut CpuTensor,
    add: bool,
) -> Result<()> {
    let input = fast.quantize(&x.data, x.width, w.k, DotType::of(w.ty)?)?;
    let parts: Vec<(usize, &[u8])> = if w.parts.is_empty() {
        vec![(w.rows, &w.bytes)]
    } else {
        w.parts.iter().map(|(rows, bytes)| (*rows, &bytes[..])).collect()
    };
    let rows = Rows {
        ty: w.ty,
        k: w.k,
        parts: &parts,
    };
    fast.product(rows, &input, &mut y.data, y.width, add)
}

/// [`crate::cpu::backend::pair_products`] with the fast kernels: x's rows quantized once
/// (a token's input serves all its pairs), every pair's rows in one pool run.
pub(in crate::cpu) fn fast_pair_products<'a>(
    fast: &Fast,
    m: PairMatrices,
    matrix: impl Fn(usize) -> Option<&'a [u8]> + Sync,
    x: &CpuTensor,
    routes: &CpuRoutes,
    weighted: bool,
    y: &mut CpuTensor,
) -> Result<()> {
    let pairs = routes.ids.len();
    let per_pair = x.n == pairs;
    let n_used = routes.n_used.max(1);
    let input = fast.quantize(&x.data, x.width, m.k, DotType::of(m.ty)?)?;
    let col = |p: usize| if per_pair { p } else { p / n_used };
    let scale = |p: usize| if weighted { routes.weights[p] } else { 1.0 };
    fast.pair_products(
        m.ty,
        m.k,
        m.rows,
        matrix,
        pairs,
        col,
        scale,
        &input,
        &mut y.data,
        y.width,
    )
}
