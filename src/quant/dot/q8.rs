//! The activation blocks of the dot products, quantized as ggml's
//! `quantize_row_q8_0_ref`, `quantize_row_q8_1_ref` and `quantize_row_q8_K_ref`
//! (`ggml/src/ggml-quants.c`). Scales are kept as f32: Q8_0's and Q8_1's `d` rounded
//! to f16 as ggml stores it, Q8_1's `s` as exactly `d · Σ q` (ggml rounds it to f16 too).

use half::f16;

/// 32 values as `d · qs[i]` (`block_q8_0`).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: f32,
    pub qs: [i8; 32],
}

/// 32 values as `d · qs[i]`, with `s = d · Σ qs` (`block_q8_1`).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct BlockQ8_1 {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; 32],
}

/// 256 values as `d · qs[i]`, with the sums of each 16 quants (`block_q8_K`).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; 256],
    pub bsums: [i16; 16],
}

impl Default for BlockQ8K {
    fn default() -> Self {
        BlockQ8K {
            d: 0.0,
            qs: [0; 256],
            bsums: [0; 16],
        }
    }
}

/// `d` rounded to f16, as ggml stores the scale of Q8_0 and Q8_1 blocks.
pub(super) fn f16_round(d: f32) -> f32 {
    f16::from_f32(d).to_f32()
}

/// `amax / 127` rounded to f16 as the block stores it, and the factor to quantize with.
fn scale_127(x: &[f32]) -> (f32, f32) {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    (f16_round(d), id)
}

/// Whether the AVX2 quantizers of `q8_avx2.rs` run here. They give the same blocks as
/// the scalar code, so every SIMD level of the dot kernels uses them.
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    is_x86_feature_detected!("avx2")
}

/// `quantize_row_q8_0_ref`: blocks of 32 (`x.len() == 32 * out.len()`).
pub fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2.
        return unsafe { super::q8_avx2::quantize_q8_0(x, out) };
    }
    quantize_q8_0_scalar(x, out)
}

/// [`quantize_q8_0`] in scalar code.
pub(super) fn quantize_q8_0_scalar(x: &[f32], out: &mut [BlockQ8_0]) {
    for (xb, y) in x.chunks_exact(32).zip(out) {
        let (d, id) = scale_127(xb);
        y.d = d;
        for (q, &v) in y.qs.iter_mut().zip(xb) {
            *q = (v * id).round() as i8;
        }
    }
}

/// `quantize_row_q8_1_ref`: blocks of 32 with their sums.
pub fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2.
        return unsafe { super::q8_avx2::quantize_q8_1(x, out) };
    }
    quantize_q8_1_scalar(x, out)
}

/// [`quantize_q8_1`] in scalar code.
pub(super) fn quantize_q8_1_scalar(x: &[f32], out: &mut [BlockQ8_1]) {
    for (xb, y) in x.chunks_exact(32).zip(out) {
        let (d, id) = scale_127(xb);
        y.d = d;
        let mut sum = 0i32;
        for (q, &v) in y.qs.iter_mut().zip(xb) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        y.s = d * sum as f32;
    }
}

/// `quantize_row_q8_K_ref`: blocks of 256, scaled by the value of largest magnitude
/// (its sign kept, so that it maps to -127 exactly), with the 16 partial sums.
pub fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2.
        return unsafe { super::q8_avx2::quantize_q8_k(x, out) };
    }
    quantize_q8_k_scalar(x, out)
}

/// [`quantize_q8_k`] in scalar code.
pub(super) fn quantize_q8_k_scalar(x: &[f32], out: &mut [BlockQ8K]) {
    for (xb, y) in x.chunks_exact(256).zip(out) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *y = BlockQ8K::default();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in y.qs.iter_mut().zip(xb) {
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
        }
        for (s, q) in y.bsums.iter_mut().zip(y.qs.chunks_exact(16)) {
            *s = q.iter().map(|&v| v as i16).sum();
        }
        y.d = 1.0 / iscale;
    }
}

/// `d · q` of each block `(d, qs)` into `out`.
pub(super) fn dequantize<'a>(blocks: impl Iterator<Item = (f32, &'a [i8])>, out: &mut [f32]) {
    let mut o = out.iter_mut();
    for (d, qs) in blocks {
        for (&q, v) in qs.iter().zip(o.by_ref()) {
            *v = d * q as f32;
        }
    }
}
