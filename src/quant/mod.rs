//! ggml block formats: layouts, bit-exact dequantization and ggml-compatible quantization.
//!
//! Every format mirrors `ggml/src/ggml-quants.c` and `ggml/src/ggml-common.h`
//! (<https://github.com/ggml-org/llama.cpp/blob/master/ggml/src/ggml-quants.c>).
//! A row of `n` elements is `n / block_size` blocks laid end to end, `type_size`
//! bytes each; element `i` of the row belongs to block `i / block_size`.
//!
//! * [`dequantize_row`] gives the same f32 bits as ggml's `dequantize_row_*`.
//! * [`quantize_row`] without importance weights gives the same bytes as ggml's
//!   `quantize_row_*_ref`; with weights it follows ggml's `quantize_row_*_impl`,
//!   the path `llama-quantize --imatrix` takes.
//! * [`quantize`] runs [`quantize_row`] over many rows in parallel (rayon).

// The codecs keep ggml's indexed loops so that each can be read side by side with the C.
#![allow(clippy::needless_range_loop)]

pub mod dot;
mod float;
pub mod grids;
mod iq1;
mod iq2;
mod kquants;
mod legacy;
mod search;
mod ternary;

use crate::error::{Error, Result};
use rayon::prelude::*;

/// Elements per K-quant super-block (`QK_K` in ggml).
pub const QK_K: usize = 256;

macro_rules! block_types {
    ($($name:ident = $id:literal, $label:literal, $block:expr, $size:expr;)*) => {
        /// A ggml tensor type, under its ggml type id (`enum ggml_type`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(non_camel_case_types)]
        pub enum BlockType { $($name = $id,)* }

        impl BlockType {
            /// Every type lowbit can store.
            pub const ALL: &'static [BlockType] = &[$(BlockType::$name,)*];

            /// The type with ggml type id `id`.
            pub fn from_id(id: u32) -> Result<Self> {
                match id {
                    $($id => Ok(BlockType::$name),)*
                    _ => Err(Error::UnknownType(id)),
                }
            }

            /// ggml's name for the type, as `ggml_type_name` prints it.
            pub fn name(self) -> &'static str {
                match self { $(BlockType::$name => $label,)* }
            }

            /// Elements per block.
            pub fn block_size(self) -> usize {
                match self { $(BlockType::$name => $block,)* }
            }

            /// Bytes per block.
            pub fn type_size(self) -> usize {
                match self { $(BlockType::$name => $size,)* }
            }
        }
    };
}

block_types! {
    F32 = 0, "f32", 1, 4;
    F16 = 1, "f16", 1, 2;
    Q4_0 = 2, "q4_0", 32, 18;
    Q4_1 = 3, "q4_1", 32, 20;
    Q5_0 = 6, "q5_0", 32, 22;
    Q5_1 = 7, "q5_1", 32, 24;
    Q8_0 = 8, "q8_0", 32, 34;
    Q2_K = 10, "q2_K", 256, 84;
    Q3_K = 11, "q3_K", 256, 110;
    Q4_K = 12, "q4_K", 256, 144;
    Q5_K = 13, "q5_K", 256, 176;
    Q6_K = 14, "q6_K", 256, 210;
    IQ2_XXS = 16, "iq2_xxs", 256, 66;
    IQ1_S = 19, "iq1_s", 256, 50;
    IQ4_NL = 20, "iq4_nl", 32, 18;
    I8 = 24, "i8", 1, 1;
    I16 = 25, "i16", 1, 2;
    I32 = 26, "i32", 1, 4;
    I64 = 27, "i64", 1, 8;
    F64 = 28, "f64", 1, 8;
    IQ1_M = 29, "iq1_m", 256, 56;
    BF16 = 30, "bf16", 1, 2;
    TQ1_0 = 34, "tq1_0", 256, 54;
    TQ2_0 = 35, "tq2_0", 256, 66;
}

impl BlockType {
    /// The ggml type id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Parse a type name, case-insensitively: `Q4_K`, `iq1_s`, `F16`.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::Unsupported(format!("unknown tensor type '{name}'")))
    }

    /// Bits per weight of a full block.
    pub fn bits_per_weight(self) -> f64 {
        (self.type_size() * 8) as f64 / self.block_size() as f64
    }

    /// Whether lowbit can dequantize this type to f32.
    pub fn can_dequantize(self) -> bool {
        !matches!(
            self,
            BlockType::I8 | BlockType::I16 | BlockType::I32 | BlockType::I64 | BlockType::F64
        )
    }

    /// Whether lowbit can quantize f32 values to this type.
    pub fn can_quantize(self) -> bool {
        self.can_dequantize()
    }

    /// Bytes of a row of `n` elements, or an error if `n` is not a whole number of blocks.
    pub fn row_bytes(self, n: usize) -> Result<usize> {
        if !n.is_multiple_of(self.block_size()) {
            return Err(Error::Shape(format!(
                "{} elements is not a multiple of the {} block size {}",
                n,
                self.name(),
                self.block_size()
            )));
        }
        Ok(n / self.block_size() * self.type_size())
    }
}

impl std::fmt::Display for BlockType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name().to_ascii_uppercase())
    }
}

fn check_row(ty: BlockType, n: usize, bytes: usize) -> Result<()> {
    let want = ty.row_bytes(n)?;
    if bytes != want {
        return Err(Error::Shape(format!(
            "{} row of {} elements needs {} bytes, got {}",
            ty.name(),
            n,
            want,
            bytes
        )));
    }
    Ok(())
}

/// Dequantize one row: `src` holds `out.len() / block_size` blocks of `ty`.
pub fn dequantize_row(ty: BlockType, src: &[u8], out: &mut [f32]) -> Result<()> {
    check_row(ty, out.len(), src.len())?;
    match ty {
        BlockType::F32 => float::dequantize_f32(src, out),
        BlockType::F16 => float::dequantize_f16(src, out),
        BlockType::BF16 => float::dequantize_bf16(src, out),
        BlockType::Q4_0 => legacy::dequantize_q4_0(src, out),
        BlockType::Q4_1 => legacy::dequantize_q4_1(src, out),
        BlockType::Q5_0 => legacy::dequantize_q5_0(src, out),
        BlockType::Q5_1 => legacy::dequantize_q5_1(src, out),
        BlockType::Q8_0 => legacy::dequantize_q8_0(src, out),
        BlockType::IQ4_NL => legacy::dequantize_iq4_nl(src, out),
        BlockType::Q2_K => kquants::dequantize_q2_k(src, out),
        BlockType::Q3_K => kquants::dequantize_q3_k(src, out),
        BlockType::Q4_K => kquants::dequantize_q4_k(src, out),
        BlockType::Q5_K => kquants::dequantize_q5_k(src, out),
        BlockType::Q6_K => kquants::dequantize_q6_k(src, out),
        BlockType::TQ1_0 => ternary::dequantize_tq1_0(src, out),
        BlockType::TQ2_0 => ternary::dequantize_tq2_0(src, out),
        BlockType::IQ2_XXS => iq2::dequantize_iq2_xxs(src, out),
        BlockType::IQ1_S => iq1::dequantize_iq1_s(src, out),
        BlockType::IQ1_M => iq1::dequantize_iq1_m(src, out),
        other => {
            return Err(Error::Unsupported(format!(
                "dequantizing {} is not supported",
                other.name()
            )));
        }
    }
    Ok(())
}

/// Quantize one row `x` into `out` (`x.len() / block_size` blocks).
///
/// `weights`, when given, holds one importance weight per element (an imatrix row,
/// as `llama-quantize --imatrix` passes it). Without weights the K-quant and legacy
/// formats use ggml's deterministic `*_ref` quantizers; the IQ formats, which ggml
/// only runs with weights, then use a weight of 1 per element.
pub fn quantize_row(ty: BlockType, x: &[f32], weights: Option<&[f32]>, out: &mut [u8]) -> Result<()> {
    check_row(ty, x.len(), out.len())?;
    if let Some(w) = weights
        && w.len() != x.len()
    {
        return Err(Error::Shape(format!(
            "{} importance weights for a row of {} elements",
            w.len(),
            x.len()
        )));
    }
    match ty {
        BlockType::F32 => float::quantize_f32(x, out),
        BlockType::F16 => float::quantize_f16(x, out),
        BlockType::BF16 => float::quantize_bf16(x, out),
        BlockType::Q4_0 => legacy::quantize_q4_0(x, weights, out),
        BlockType::Q4_1 => legacy::quantize_q4_1(x, weights, out),
        BlockType::Q5_0 => legacy::quantize_q5_0(x, weights, out),
        BlockType::Q5_1 => legacy::quantize_q5_1(x, weights, out),
        BlockType::Q8_0 => legacy::quantize_q8_0(x, out),
        BlockType::IQ4_NL => legacy::quantize_iq4_nl(x, weights, out),
        BlockType::Q2_K => kquants::quantize_q2_k(x, weights, out),
        BlockType::Q3_K => kquants::quantize_q3_k(x, weights, out),
        BlockType::Q4_K => kquants::quantize_q4_k(x, weights, out),
        BlockType::Q5_K => kquants::quantize_q5_k(x, weights, out),
        BlockType::Q6_K => kquants::quantize_q6_k(x, weights, out),
        BlockType::TQ1_0 => ternary::quantize_tq1_0(x, out),
        BlockType::TQ2_0 => ternary::quantize_tq2_0(x, out),
        BlockType::IQ2_XXS => iq2::quantize_iq2_xxs(x, weights, out),
        BlockType::IQ1_S => iq1::quantize_iq1_s(x, weights, out),
        BlockType::IQ1_M => iq1::quantize_iq1_m(x, weights, out),
        other => {
            return Err(Error::Unsupported(format!(
                "quantizing to {} is not supported",
                other.name()
            )));
        }
    }
    Ok(())
}

/// Quantize `data` (rows of `n_per_row` elements, row-major) in parallel over rows.
///
/// `weights`, when given, holds `n_per_row` importance weights shared by every row
/// (one imatrix entry per input column, as ggml uses it).
pub fn quantize(ty: BlockType, data: &[f32], n_per_row: usize, weights: Option<&[f32]>) -> Result<Vec<u8>> {
    if n_per_row == 0 || !data.len().is_multiple_of(n_per_row) {
        return Err(Error::Shape(format!(
            "{} values do not split into rows of {}",
            data.len(),
            n_per_row
        )));
    }
    let row_bytes = ty.row_bytes(n_per_row)?;
    let mut out = vec![0u8; data.len() / n_per_row * row_bytes];
    out.par_chunks_mut(row_bytes)
        .zip(data.par_chunks(n_per_row))
        .try_for_each(|(dst, row)| quantize_row(ty, row, weights, dst))?;
    Ok(out)
}

/// Dequantize `data` (rows of `n_per_row` elements) in parallel over rows.
pub fn dequantize(ty: BlockType, data: &[u8], n_per_row: usize) -> Result<Vec<f32>> {
    let row_bytes = ty.row_bytes(n_per_row)?;
    if row_bytes == 0 || !data.len().is_multiple_of(row_bytes) {
        return Err(Error::Shape(format!(
            "{} bytes are not whole {} rows of {} elements",
            data.len(),
            ty.name(),
            n_per_row
        )));
    }
    let mut out = vec![0f32; data.len() / row_bytes * n_per_row];
    out.par_chunks_mut(n_per_row)
        .zip(data.par_chunks(row_bytes))
        .try_for_each(|(dst, row)| dequantize_row(ty, row, dst))?;
    Ok(out)
}
