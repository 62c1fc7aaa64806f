//! AVX2 quantization of activation blocks, with exactly the results of the scalar
//! functions in `q8.rs` (ggml's `quantize_row_q8_*_ref`, whose `roundf` rounds halves
//! away from zero; ggml's own AVX2 `quantize_row_q8_0` rounds them to even and computes
//! its factor as `127 / amax`, so lowbit keeps the reference's arithmetic instead).

use super::q8::{BlockQ8_0, BlockQ8_1, BlockQ8K, f16_round};
use std::arch::x86_64::*;

/// The largest f32 below 0.5: `trunc(x + copysign(it, x))` rounds halves away from zero
/// (LLVM's lowering of `roundf` for SSE4.1).
const BELOW_HALF: f32 = 0.499_999_97;

/// |v| of 8 lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn abs(v: __m256) -> __m256 {
    _mm256_andnot_ps(_mm256_set1_ps(-0.0), v)
}

/// The largest of 8 lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn hmax(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
}

/// The 8 values at `x[i..]`.
#[inline]
#[target_feature(enable = "avx2")]
fn load(x: &[f32], i: usize) -> __m256 {
    let x = &x[i..i + 8];
    // SAFETY: x holds 8 values.
    unsafe { _mm256_loadu_ps(x.as_ptr()) }
}

/// 32 lanes of i32 in four vectors as 32 bytes in order (values within ±127).
#[inline]
#[target_feature(enable = "avx2")]
fn pack(q: [__m256i; 4]) -> __m256i {
    let lo = _mm256_packs_epi32(q[0], q[1]);
    let hi = _mm256_packs_epi32(q[2], q[3]);
    let bytes = _mm256_packs_epi16(lo, hi);
    // packs works within 128-bit lanes: put the dwords back in order.
    _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// Σ of 32 i32 lanes in four vectors.
#[inline]
#[target_feature(enable = "avx2")]
fn sum_i32(q: [__m256i; 4]) -> i32 {
    let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// One block of 32 as the reference does it: `d = amax / 127` (stored rounded to f16),
/// `q = roundf(x / d)`; the quants as i32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn block_32(x: &[f32]) -> (f32, [__m256i; 4]) {
    let v = [load(x, 0), load(x, 8), load(x, 16), load(x, 24)];
    let amax = hmax(_mm256_max_ps(
        _mm256_max_ps(abs(v[0]), abs(v[1])),
        _mm256_max_ps(abs(v[2]), abs(v[3])),
    ));
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    let half = _mm256_set1_ps(BELOW_HALF);
    let sign = _mm256_set1_ps(-0.0);
    let q = v.map(|v| {
        let s = _mm256_mul_ps(v, id);
        let r = _mm256_add_ps(s, _mm256_or_ps(half, _mm256_and_ps(s, sign)));
        _mm256_cvttps_epi32(r)
    });
    (f16_round(d), q)
}

/// [`super::quantize_q8_0`] on AVX2.
#[target_feature(enable = "avx2")]
pub(super) fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    for (xb, y) in x.chunks_exact(32).zip(out) {
        let (d, q) = block_32(xb);
        y.d = d;
        // SAFETY: qs is 32 bytes.
        unsafe { _mm256_storeu_si256(y.qs.as_mut_ptr().cast(), pack(q)) };
    }
}

/// [`super::quantize_q8_1`] on AVX2.
#[target_feature(enable = "avx2")]
pub(super) fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    for (xb, y) in x.chunks_exact(32).zip(out) {
        let (d, q) = block_32(xb);
        y.d = d;
        y.s = d * sum_i32(q) as f32;
        // SAFETY: qs is 32 bytes.
        unsafe { _mm256_storeu_si256(y.qs.as_mut_ptr().cast(), pack(q)) };
    }
}

/// [`super::quantize_q8_k`] on AVX2: the value of largest magnitude (the first, if
/// several) maps to -127, the rest round to even, capped at 127.
#[target_feature(enable = "avx2")]
pub(super) fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    for (xb, y) in x.chunks_exact(256).zip(out) {
        let mut m = _mm256_setzero_ps();
        for i in (0..256).step_by(8) {
            m = _mm256_max_ps(m, abs(load(xb, i)));
        }
        let amax = hmax(m);
        if amax == 0.0 {
            *y = BlockQ8K::default();
            continue;
        }
        let max = *xb.iter().find(|v| v.abs() == amax).expect("amax is one of the values");
        let scale = -127.0 / max;
        let iscale = _mm256_set1_ps(scale);
        let cap = _mm256_set1_epi32(127);
        for (j, (qs, sums)) in y.qs.chunks_exact_mut(32).zip(y.bsums.chunks_exact_mut(2)).enumerate() {
            let q = [0, 8, 16, 24].map(|o| {
                let s = _mm256_mul_ps(iscale, load(xb, 32 * j + o));
                let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(s);
                _mm256_min_epi32(_mm256_cvtps_epi32(r), cap)
            });
            sums[0] = sum_i32([q[0], q[1], _mm256_setzero_si256(), _mm256_setzero_si256()]) as i16;
            sums[1] = sum_i32([q[2], q[3], _mm256_setzero_si256(), _mm256_setzero_si256()]) as i16;
            // SAFETY: qs is 32 bytes.
            unsafe { _mm256_storeu_si256(qs.as_mut_ptr().cast(), pack(q)) };
        }
        y.d = 1.0 / scale;
    }
}
