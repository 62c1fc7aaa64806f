//! The fast backend's products on the CPU backend's tensors: `matmul`, `matmul_add` and
//! the pair products of `matmul_id` and the streamed experts.

use super::{Fast, Rows};
use crate::backend::ResidentExperts;
use crate::cpu::backend::{CpuExperts, CpuMatrix, CpuRoutes, CpuTensor, PairMatrices, pair_sums_into};
use crate::error::{Error, Result};
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

/// `silu(x · Gᵀ) ⊙ (x · Uᵀ)` of a stacked `[gate; up]` matrix (two parts of the same
/// rows, [`CpuMatrix::is_gate_up`]), fused ([`Fast::swiglu_product`]).
pub(in crate::cpu) fn fast_swiglu_product(fast: &Fast, w: &CpuMatrix, x: &CpuTensor) -> Result<CpuTensor> {
    if x.width != w.k {
        return Err(Error::Shape(format!(
            "{} inputs for a matrix of rows of {}",
            x.width, w.k
        )));
    }
    let input = fast.quantize(&x.data, x.width, w.k, DotType::of(w.ty)?)?;
    let parts: Vec<(usize, &[u8])> = w.parts.iter().map(|(rows, bytes)| (*rows, &bytes[..])).collect();
    let rows = Rows {
        ty: w.ty,
        k: w.k,
        parts: &parts,
    };
    let mut y = CpuTensor::zeros(x.n, w.rows / 2);
    fast.swiglu_product(rows, &input, &mut y.data)?;
    Ok(y)
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
    let input = fast.quantize(&x.data, x.width, m.k, DotType::of(m.ty)?)?;
    let col = |p: usize| routes.input_row(p, x.n);
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

/// A resident MoE layer's routed FFN ([`crate::backend::Backend::routed_ffn`]) on the
/// fast kernels: h quantized once, the gate and up products of every pair in one pool
/// pass, SwiGLU, the weighted down products in a second pass, the pair sums into `acc`.
/// Gate and up of different formats take the generic path (None).
pub(in crate::cpu) fn fast_routed_ffn(
    fast: &Fast,
    r: &ResidentExperts<CpuExperts>,
    h: &CpuTensor,
    routes: &CpuRoutes,
    acc: &mut CpuTensor,
) -> Option<Result<()>> {
    let [gate, up, down] = &r.parts;
    if gate.m.ty != up.m.ty || gate.m.k != up.m.k || gate.m.rows != up.m.rows {
        return None;
    }
    Some((|| {
        let pairs = routes.ids.len();
        let n_used = routes.n_used.max(1);
        let (m, ff) = (&gate.m, gate.m.rows);
        if h.n * n_used != pairs
            || h.width < m.k
            || [gate, up, down]
                .iter()
                .any(|e| routes.ids.iter().any(|&i| i as usize >= e.count))
        {
            return Err(Error::Shape(format!(
                "routed FFN: {pairs} pairs of {} experts for {} tokens of {}",
                gate.count, h.n, h.width
            )));
        }
        let input = fast.quantize(&h.data, h.width, m.k, DotType::of(m.ty)?)?;
        let size = m.ty.row_bytes(m.k)? * ff;
        // Pairs 0..pairs are gate products, pairs..2·pairs up products, of the same inputs.
        let mut gu = vec![0f32; 2 * pairs * ff];
        let matrix = |p: usize| {
            let (e, q) = if p < pairs { (gate, p) } else { (up, p - pairs) };
            Some(&e.m.bytes[routes.ids[q] as usize * size..][..size])
        };
        let col = |p: usize| routes.input_row(p % pairs, h.n);
        fast.pair_products(m.ty, m.k, ff, matrix, 2 * pairs, col, |_| 1.0, &input, &mut gu, ff)?;
        let mut a = CpuTensor {
            data: vec![0f32; pairs * ff],
            n: pairs,
            width: ff,
        };
        let (g, u) = gu.split_at(pairs * ff);
        fast.swiglu_rows(&mut a.data, ff, |i| (&g[i * ff..][..ff], &u[i * ff..][..ff]));
        let mut d = CpuTensor {
            data: vec![0f32; pairs * r.shape.n_embd],
            n: pairs,
            width: r.shape.n_embd,
        };
        let dm = PairMatrices {
            ty: down.m.ty,
            k: down.m.k,
            rows: down.m.rows,
        };
        let dsize = down.m.ty.row_bytes(down.m.k)? * down.m.rows;
        let dmatrix = |p: usize| Some(&down.m.bytes[routes.ids[p] as usize * dsize..][..dsize]);
        fast_pair_products(fast, dm, dmatrix, &a, routes, true, &mut d)?;
        pair_sums_into(&d, routes.n_used, acc)
    })())
}
