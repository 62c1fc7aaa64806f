//! Reference matrix-vector product with an error bound, for checking GPU kernels.

use crate::error::Result;
use crate::quant::{self, BlockType};
use rayon::prelude::*;

/// `y[c][row] = Σ_k W[row][k] · x[c][k]` with W's rows dequantized by the bit-exact
/// codecs and each dot product accumulated in f64. Returns `(y, bound)` where
/// `bound[c][row] = Σ_k |W[row][k] · x[c][k]|`, the scale of the rounding error any
/// f32 implementation may make. `x` holds `cols` columns of `k` values.
pub fn matvec(ty: BlockType, weights: &[u8], k: usize, x: &[f32], cols: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let row_bytes = ty.row_bytes(k)?;
    let rows = weights.len() / row_bytes;
    let per_row: Vec<Vec<(f64, f64)>> = weights
        .par_chunks(row_bytes)
        .map(|row| {
            let mut w = vec![0f32; k];
            quant::dequantize_row(ty, row, &mut w)?;
            Ok((0..cols)
                .map(|c| {
                    let xc = &x[c * k..][..k];
                    w.iter().zip(xc).fold((0f64, 0f64), |(s, a), (&wi, &xi)| {
                        let p = wi as f64 * xi as f64;
                        (s + p, a + p.abs())
                    })
                })
                .collect())
        })
        .collect::<Result<_>>()?;
    let mut y = vec![0f32; cols * rows];
    let mut bound = vec![0f32; cols * rows];
    for (r, sums) in per_row.iter().enumerate() {
        for (c, &(s, a)) in sums.iter().enumerate() {
            y[c * rows + r] = s as f32;
            bound[c * rows + r] = a as f32;
        }
    }
    Ok((y, bound))
}
