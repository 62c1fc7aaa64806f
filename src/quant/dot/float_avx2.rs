//! AVX2 dot products of F32, F16 and BF16 rows with f32 activations (FMA, with F16C
//! for F16). ggml converts the activations to F16 for F16 weights
//! (`ggml_vec_dot_f16`); lowbit keeps them f32, which reads the same weight bytes and
//! rounds less.

use super::Column;
use std::arch::x86_64::*;

/// The f16 with bits `bits` as f32 (F16C). The bits are moved into a register with
/// `vmovd`, which clears its other lanes: left to itself LLVM loads them with `vpinsrw`
/// into whichever register is free, often a loop's accumulator, and that false
/// dependency chained every block of a row kernel to the one before (Q4_1 and Q8_0
/// products took 1.2x as long).
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn f16_bits(bits: u16) -> f32 {
    let v: __m128;
    // SAFETY: vmovd and vcvtph2ps only touch the named registers (F16C is enabled).
    unsafe {
        std::arch::asm!(
            "vmovd {v}, {b:e}",
            "vcvtph2ps {v}, {v}",
            b = in(reg) bits as u32,
            v = out(xmm_reg) v,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    _mm_cvtss_f32(v)
}

/// The 8 lanes' sum.
#[target_feature(enable = "avx2,fma")]
pub(super) fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// `Σ w·x` over rows whose 8 values at `i` load as `load(i)`, 32 values per step in four
/// accumulators.
#[target_feature(enable = "avx2,fma")]
fn dot_with(k: usize, x: &[f32], load: impl Fn(usize) -> __m256, scalar: impl Fn(usize) -> f32) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: every load is of 8 values below k, which x holds.
    unsafe {
        while i + 32 <= k {
            for (j, a) in acc.iter_mut().enumerate() {
                let xi = _mm256_loadu_ps(x.as_ptr().add(i + 8 * j));
                *a = _mm256_fmadd_ps(load(i + 8 * j), xi, *a);
            }
            i += 32;
        }
        while i + 8 <= k {
            acc[0] = _mm256_fmadd_ps(load(i), _mm256_loadu_ps(x.as_ptr().add(i)), acc[0]);
            i += 8;
        }
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    hsum(sum) + (i..k).map(|j| scalar(j) * x[j]).sum::<f32>()
}

#[target_feature(enable = "avx2,fma")]
pub(super) fn dot_f32(row: &[u8], x: Column) -> f32 {
    // SAFETY: an F32 column holds f32 values.
    let x = unsafe { x.blocks::<f32>() };
    let p = row.as_ptr().cast::<f32>();
    // SAFETY: the row holds x.len() f32 values (checked by Kernel::dot).
    dot_with(
        x.len(),
        x,
        |i| unsafe { _mm256_loadu_ps(p.add(i)) },
        |i| unsafe { p.add(i).read_unaligned() },
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_f16(row: &[u8], x: Column) -> f32 {
    // SAFETY: an F32 column holds f32 values.
    let x = unsafe { x.blocks::<f32>() };
    let p = row.as_ptr();
    // SAFETY: the row holds x.len() f16 values (checked by Kernel::dot).
    dot_with(
        x.len(),
        x,
        |i| unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.add(2 * i).cast())) },
        |i| half::f16::from_le_bytes([row[2 * i], row[2 * i + 1]]).to_f32(),
    )
}

#[target_feature(enable = "avx2,fma")]
pub(super) fn dot_bf16(row: &[u8], x: Column) -> f32 {
    // SAFETY: an F32 column holds f32 values.
    let x = unsafe { x.blocks::<f32>() };
    let p = row.as_ptr();
    // SAFETY: the row holds x.len() bf16 values (checked by Kernel::dot).
    dot_with(
        x.len(),
        x,
        |i| unsafe {
            let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.add(2 * i).cast()));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h))
        },
        |i| f32::from_bits((u16::from_le_bytes([row[2 * i], row[2 * i + 1]]) as u32) << 16),
    )
}
