//! AVX2 dot products of IQ2_XXS, IQ1_S, IQ1_M, TQ1_0 and TQ2_0 rows with Q8_K activations, as
//! `ggml_vec_dot_iq2_xxs_q8_K`, `ggml_vec_dot_iq1_s_q8_K`, `ggml_vec_dot_iq1_m_q8_K`,
//! `ggml_vec_dot_tq1_0_q8_K` and `ggml_vec_dot_tq2_0_q8_K` in `ggml/src/ggml-cpu/arch/x86/quants.c`.
//!
//! IQ2_XXS, TQ1_0 and TQ2_0 follow ggml's AVX2 code step for step. IQ1_S and IQ1_M keep its
//! structure (four 8-byte `iq1s_grid` rows per vector, `maddubs` then `madd` by the scales, one
//! FMA per block) and change three things:
//! * a block's 32 grid indices, and its scales, are made with a few vector operations (as
//!   ggml's BMI2 `pdep` path does the indices) and read back from memory one load each;
//! * the weights, times 8 with their `±IQ1S_DELTA`, are shifted to be unsigned, so `maddubs`
//!   takes them without `sign_epi8`;
//! * the shift is taken back (and for IQ1_S the delta term added) from the `bsums` in one
//!   `madd` per block.
//!
//! Their integer sums are exact (each block's is `8 / (d·d_y)` times its product), so they
//! differ from ggml's results only in f32 rounding.

use super::float_avx2::{f16_bits, hsum};
use super::{BlockQ8K, Column, RowDot, TileSums, Tiled};
use crate::quant::BlockType;
use crate::quant::grids::{IQ1S_GRID, IQ2XXS_GRID, ksigns_iq2xs};
use crate::quant::iq1::{BlockIq1M, BlockIq1S};
use crate::quant::iq2::BlockIq2Xxs;
use crate::quant::ternary::{BlockTq1_0, BlockTq2_0};
use std::arch::x86_64::*;

/// The AVX2 tile kernel of `ty`, None where it has none: one row against up to four
/// columns, each block unpacked once for all of them.
pub(super) fn tiled(ty: BlockType) -> Option<Tiled> {
    let dot = match ty {
        BlockType::IQ2_XXS => tile_iq2_xxs,
        BlockType::IQ1_S => tile_iq1_s,
        BlockType::IQ1_M => tile_iq1_m,
        _ => return None,
    };
    Some(Tiled::one_row(dot))
}

/// The AVX2 kernel of `ty`, None for the formats of other files.
pub(super) fn kernel(ty: BlockType) -> Option<RowDot> {
    Some(match ty {
        BlockType::IQ2_XXS => dot_iq2_xxs,
        BlockType::IQ1_S => dot_iq1_s,
        BlockType::IQ1_M => dot_iq1_m,
        BlockType::TQ1_0 => dot_tq1_0,
        BlockType::TQ2_0 => dot_tq2_0,
        _ => return None,
    })
}

/// `keven_signs_q2xs` as u64 rows: byte `j` of row `i` is -1 where bit `j` of
/// `ksigns_iq2xs(i)` is set, else 1.
static KEVEN_SIGNS: [u64; 128] = {
    let mut rows = [0u64; 128];
    let mut i = 0;
    while i < 128 {
        let signs = ksigns_iq2xs(i as u32);
        let mut j = 0;
        while j < 8 {
            let byte: u64 = if signs >> j & 1 == 1 { 0xff } else { 0x01 };
            rows[i] |= byte << (8 * j);
            j += 1;
        }
        i += 1;
    }
    rows
};

/// The 32 bytes as a vector.
const fn m256(bytes: [u8; 32]) -> __m256i {
    // SAFETY: __m256i is 32 plain bytes.
    unsafe { std::mem::transmute(bytes) }
}

/// A `_mm256_shuffle_epi8` control that puts 16-bit word `words[i]` of a 128-bit source
/// (broadcast to both halves) into lane `i`.
const fn word_lanes(words: [u8; 16]) -> __m256i {
    let mut bytes = [0u8; 32];
    let mut i = 0;
    while i < 16 {
        bytes[2 * i] = 2 * words[i];
        bytes[2 * i + 1] = 2 * words[i] + 1;
        i += 1;
    }
    m256(bytes)
}

/// A `_mm256_shuffle_epi8` control that zero-extends byte `src[i]` of a 128-bit source
/// (broadcast to both halves) into 16-bit lane `i`.
const fn byte_lanes(src: [u8; 16]) -> __m256i {
    let mut bytes = [0x80u8; 32];
    let mut i = 0;
    while i < 16 {
        bytes[2 * i] = src[i];
        i += 1;
    }
    m256(bytes)
}

/// IQ1_S: word `i / 4` (the `qh` of the sub-block of group `i`), for groups 0..16 and 16..32.
const IQ1S_QH_LO: __m256i = word_lanes([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
const IQ1S_QH_HI: __m256i = word_lanes([4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7]);
/// IQ1_S: the sub-block word of each 16-quant `bsums` lane.
const IQ1S_QH_PAIRS: __m256i = word_lanes([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]);
/// IQ1_M: `qh` byte `i / 2` of group `i`, for groups 0..16 and 16..32.
const IQ1M_QH_LO: __m256i = byte_lanes([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]);
const IQ1M_QH_HI: __m256i = byte_lanes([8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15]);
/// IQ1_M: `qh` byte `i / 2` of group `i` in byte `i`.
const IQ1M_QH_GROUPS: __m256i = m256([
    0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15,
]);
/// IQ1_M: scale word `b / 4` of 16-quant block `b`.
const IQ1M_SCALE_WORDS: __m256i = word_lanes([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
/// IQ1_M: bytes 0..4 of a broadcast dword each over the 8 values of its group.
const IQ1M_GROUP_SPREAD: __m256i = m256([
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
]);
/// IQ1_M: words 0 and 1 of a broadcast dword over the low and high 16 values.
const IQ1M_HALF_SPREAD: __m256i = word_lanes([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]);

/// The f16 at `bits` (little-endian) as f32.
#[target_feature(enable = "avx2,f16c")]
fn f16_value(bits: [u8; 2]) -> f32 {
    f16_bits(u16::from_le_bytes(bits))
}

/// 32 bytes at `p`.
///
/// # Safety
/// `p` points at 32 readable bytes.
#[target_feature(enable = "avx2")]
unsafe fn load32<T>(p: *const T) -> __m256i {
    // SAFETY: by the caller.
    unsafe { _mm256_loadu_si256(p.cast()) }
}

/// 16 bytes at `p`.
///
/// # Safety
/// `p` points at 16 readable bytes.
#[target_feature(enable = "avx2")]
unsafe fn load16<T>(p: *const T) -> __m128i {
    // SAFETY: by the caller.
    unsafe { _mm_loadu_si128(p.cast()) }
}

/// 32 bytes of `v` to `p`.
///
/// # Safety
/// `p` points at 32 writable bytes.
#[target_feature(enable = "avx2")]
unsafe fn store32<T>(p: *mut T, v: __m256i) {
    // SAFETY: by the caller.
    unsafe { _mm256_storeu_si256(p.cast(), v) }
}

column_kernels!(iq2_xxs_columns, dot_iq2_xxs, tile_iq2_xxs);

/// Mirrors `ggml_vec_dot_iq2_xxs_q8_K`.
/// Block: `d` f16, then per 32 values 4 grid index bytes and a u32 of 4 × 7 sign bits and a 4-bit scale.
///
/// One row against N Q8_K columns.
#[inline(always)]
fn iq2_xxs_columns<const N: usize>(row: &[u8], xs: [Column; N]) -> [f32; N] {
    // SAFETY: IQ2_XXS rows are multiplied with Q8_K columns.
    let ys = xs.map(|x| unsafe { x.blocks::<BlockQ8K>() });
    let blocks: &[BlockIq2Xxs] = bytemuck::cast_slice(row);
    let grid = |i: u8| IQ2XXS_GRID[i as usize] as i64;
    let signs = |aux: u32, k: u32| KEVEN_SIGNS[(aux >> (7 * k) & 127) as usize] as i64;
    // SAFETY (every intrinsic): the callers enable AVX2, FMA and F16C.
    unsafe {
        let mut accumf = [_mm256_setzero_ps(); N];
        for (i, b) in blocks.iter().enumerate() {
            let d = f16_value(b.d);
            let mut sumi = [_mm256_setzero_si256(); N];
            for ib32 in 0..8 {
                let q = &b.qs[8 * ib32..][..8];
                let aux = u32::from_le_bytes([q[4], q[5], q[6], q[7]]);
                let q2 = _mm256_set_epi64x(grid(q[3]), grid(q[2]), grid(q[1]), grid(q[0]));
                let s2 = _mm256_set_epi64x(signs(aux, 3), signs(aux, 2), signs(aux, 1), signs(aux, 0));
                let ls = _mm256_set1_epi16((2 * (aux >> 28) + 1) as i16);
                for (sumi, y) in sumi.iter_mut().zip(&ys) {
                    // Values 32·ib32 .. 32·ib32 + 32 of the block's 256.
                    let q8 = load32(y[i].qs.as_ptr().add(32 * ib32));
                    let dot = _mm256_maddubs_epi16(q2, _mm256_sign_epi8(q8, s2));
                    *sumi = _mm256_add_epi32(*sumi, _mm256_madd_epi16(dot, ls));
                }
            }
            for ((acc, sumi), y) in accumf.iter_mut().zip(sumi).zip(&ys) {
                *acc = _mm256_fmadd_ps(_mm256_set1_ps(d * y[i].d), _mm256_cvtepi32_ps(sumi), *acc);
            }
        }
        accumf.map(|a| 0.125 * hsum(a))
    }
}

/// The `iq1s_grid` rows `idx[0..4]` as one vector, the first lowest.
#[target_feature(enable = "avx2")]
fn iq1s_rows(idx: &[u16]) -> __m256i {
    // SAFETY: the IQ1 kernels make each index of a qs byte and 3 bits above it (masked by
    // 0x700), below 2048.
    let row = |l: usize| unsafe { *IQ1S_GRID.get_unchecked(idx[l] as usize) } as i64;
    _mm256_set_epi64x(row(3), row(2), row(1), row(0))
}

column_kernels!(iq1_s_columns, dot_iq1_s, tile_iq1_s);

/// Mirrors `ggml_vec_dot_iq1_s_q8_K`.
/// Block: `d` f16, `qs[32]` low grid index bytes, `qh[8]` (per 32 values 4 × 3 index bits, scale, delta sign).
///
/// The sum of 32 values with scale `2s + 1` is taken as `(2s + 1)·(8·Σ (grid + 1)·q + (±1 - 8)·Σ q)`,
/// the second sum from `bsums`.
///
/// One row against N Q8_K columns.
#[inline(always)]
fn iq1_s_columns<const N: usize>(row: &[u8], xs: [Column; N]) -> [f32; N] {
    // SAFETY: IQ1_S rows are multiplied with Q8_K columns.
    let ys = xs.map(|x| unsafe { x.blocks::<BlockQ8K>() });
    let blocks: &[BlockIq1S] = bytemuck::cast_slice(row);
    // SAFETY (every intrinsic): the callers enable AVX2, FMA and F16C. (No closures here:
    // they would not inherit the callers' target features.)
    unsafe {
        let ones8 = _mm256_set1_epi8(1);
        let ones16 = _mm256_set1_epi16(1);
        let high_mask = _mm256_set1_epi16(0x700);
        // Group l of a sub-block has its high index bits at 3l..3l+3 of qh: times
        // 2^(9 - 3l), then halved, they land at 8..11.
        let high_shift = _mm256_set1_epi64x(0x0001_0008_0040_0200);
        let mut accum = [_mm256_setzero_ps(); N];
        for (i, b) in blocks.iter().enumerate() {
            // qh is 16 bytes, qs 32.
            let qh = _mm256_broadcastsi128_si256(load16(b.qh.as_ptr()));
            let qs_lo = _mm256_cvtepu8_epi16(load16(b.qs.as_ptr()));
            let qs_hi = _mm256_cvtepu8_epi16(load16(b.qs.as_ptr().add(16)));
            // Each sub-block's qh twice, as the bsums come: its scale 2s + 1 times 8 for the
            // grid sums, and (±1 - 8)(2s + 1) for the bsums.
            let qh2 = _mm256_shuffle_epi8(qh, IQ1S_QH_PAIRS);
            let ls = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<11>(qh2), _mm256_set1_epi16(0xe)),
                ones16,
            );
            let ls8 = _mm256_slli_epi16::<3>(ls);
            let delta = _mm256_or_si256(_mm256_srai_epi16::<15>(qh2), ones16);
            let shift = _mm256_sub_epi16(_mm256_sign_epi16(ls, delta), ls8);
            let mut idx = [0u16; 32];
            let mut scales = [0u32; 8];
            let high_lo = _mm256_mullo_epi16(_mm256_shuffle_epi8(qh, IQ1S_QH_LO), high_shift);
            let high_hi = _mm256_mullo_epi16(_mm256_shuffle_epi8(qh, IQ1S_QH_HI), high_shift);
            let idx_lo = _mm256_or_si256(qs_lo, _mm256_and_si256(_mm256_srli_epi16::<1>(high_lo), high_mask));
            let idx_hi = _mm256_or_si256(qs_hi, _mm256_and_si256(_mm256_srli_epi16::<1>(high_hi), high_mask));
            // idx holds two vectors, scales one.
            store32(idx.as_mut_ptr(), idx_lo);
            store32(idx.as_mut_ptr().add(16), idx_hi);
            store32(scales.as_mut_ptr(), ls8);
            // Opaque to LLVM, which would take each index out of its vector with a two-uop
            // `vpextrw`: read back with one load per use.
            let (idx, scales) = (std::hint::black_box(&idx), std::hint::black_box(&scales));
            let mut sumi = [_mm256_setzero_si256(); N];
            for (sumi, y) in sumi.iter_mut().zip(&ys) {
                // bsums is 32 bytes.
                *sumi = _mm256_madd_epi16(load32(y[i].bsums.as_ptr()), shift);
            }
            for ib in 0..8 {
                let q1 = _mm256_add_epi8(iq1s_rows(&idx[4 * ib..]), ones8);
                let scale = _mm256_set1_epi32(scales[ib] as i32);
                for (sumi, y) in sumi.iter_mut().zip(&ys) {
                    // Values 32·ib .. 32·ib + 32 of the block's 256.
                    let q8b = load32(y[i].qs.as_ptr().add(32 * ib));
                    *sumi = _mm256_add_epi32(*sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q1, q8b), scale));
                }
            }
            let dw = 0.125 * f16_value(b.d);
            for ((acc, sumi), y) in accum.iter_mut().zip(sumi).zip(&ys) {
                *acc = _mm256_fmadd_ps(_mm256_set1_ps(dw * y[i].d), _mm256_cvtepi32_ps(sumi), *acc);
            }
        }
        accum.map(|a| hsum(a))
    }
}

column_kernels!(iq1_m_columns, dot_iq1_m, tile_iq1_m);

/// Mirrors `ggml_vec_dot_iq1_m_q8_K`.
/// Block: `qs[32]` low grid index bytes, `qh[16]` (high index bits, delta signs), `scales[8]` (16 × 3 bits, f16 `d`).
///
/// Each weight's `8·(grid ± 1/8) + 9`, in `0..=18`, goes to `maddubs`, and the 9 times
/// `(2s + 1)·Σ q` per 16 values is taken back from `bsums`.
///
/// One row against N Q8_K columns.
#[inline(always)]
fn iq1_m_columns<const N: usize>(row: &[u8], xs: [Column; N]) -> [f32; N] {
    // SAFETY: IQ1_M rows are multiplied with Q8_K columns.
    let ys = xs.map(|x| unsafe { x.blocks::<BlockQ8K>() });
    let blocks: &[BlockIq1M] = bytemuck::cast_slice(row);
    // SAFETY (every intrinsic): the callers enable AVX2, FMA and F16C.
    unsafe {
        let ones16 = _mm256_set1_epi16(1);
        let eight = _mm256_set1_epi8(8);
        let ten = _mm256_set1_epi8(10);
        let high_mask = _mm256_set1_epi16(0x700);
        // Even groups take qh bits 0..3 to 8..11 (times 256), odd ones bits 4..7 (times 16).
        // (No closures here: they would not inherit the callers' target features.)
        let high_shift = _mm256_set1_epi64x(0x0010_0100_0010_0100);
        // Even groups have their delta sign in bit 3 of their qh byte, odd ones in bit 7.
        let delta_bits = _mm256_set1_epi16(0x8008u16 as i16);
        // Scale j of a scale word at bits 3j..3j+3: times 2^(13 - 3j) they land at 13..16.
        let scale_shift = _mm256_set1_epi64x(0x0010_0080_0400_2000);
        // Opaque, or LLVM spreads each scale pair with four shuffles instead of this one.
        let half_spread = std::hint::black_box(IQ1M_HALF_SPREAD);
        let mut accum = [_mm256_setzero_ps(); N];
        for (i, b) in blocks.iter().enumerate() {
            let sc = u64::from_le_bytes(b.scales);
            let d_bits = (sc >> 12 & 0x000f) | (sc >> 24 & 0x00f0) | (sc >> 36 & 0x0f00) | (sc >> 48 & 0xf000);
            // qh is 16 bytes, qs 32.
            let qh = _mm256_broadcastsi128_si256(load16(b.qh.as_ptr()));
            let qs_lo = _mm256_cvtepu8_epi16(load16(b.qs.as_ptr()));
            let qs_hi = _mm256_cvtepu8_epi16(load16(b.qs.as_ptr().add(16)));
            // The scale 2s + 1 of each 16 values, and 9 times it against the bsums.
            let ls = _mm256_shuffle_epi8(_mm256_set1_epi64x(sc as i64), IQ1M_SCALE_WORDS);
            let ls = _mm256_srli_epi16::<13>(_mm256_mullo_epi16(ls, scale_shift));
            let ls = _mm256_or_si256(_mm256_slli_epi16::<1>(ls), ones16);
            let ls9 = _mm256_add_epi16(_mm256_slli_epi16::<3>(ls), ls);
            // 9 + 8·(±1/8) of each group: 8 where its delta sign is set, else 10.
            let minus = _mm256_and_si256(_mm256_shuffle_epi8(qh, IQ1M_QH_GROUPS), delta_bits);
            let minus = _mm256_cmpeq_epi8(minus, delta_bits);
            let shifts = _mm256_add_epi8(ten, _mm256_add_epi8(minus, minus));
            let mut idx = [0u16; 32];
            let mut scales = [0u32; 8];
            let mut deltas = [0u32; 8];
            let high_lo = _mm256_mullo_epi16(_mm256_shuffle_epi8(qh, IQ1M_QH_LO), high_shift);
            let high_hi = _mm256_mullo_epi16(_mm256_shuffle_epi8(qh, IQ1M_QH_HI), high_shift);
            let idx_lo = _mm256_or_si256(qs_lo, _mm256_and_si256(high_lo, high_mask));
            let idx_hi = _mm256_or_si256(qs_hi, _mm256_and_si256(high_hi, high_mask));
            // idx holds two vectors, scales and deltas one each.
            store32(idx.as_mut_ptr(), idx_lo);
            store32(idx.as_mut_ptr().add(16), idx_hi);
            store32(scales.as_mut_ptr(), ls);
            store32(deltas.as_mut_ptr(), shifts);
            // Opaque to LLVM, which would take each index out of its vector with a two-uop
            // `vpextrw`: read back with one load per use.
            let idx = std::hint::black_box(&idx);
            let (scales, deltas) = (std::hint::black_box(&scales), std::hint::black_box(&deltas));
            let mut sumi = [_mm256_setzero_si256(); N];
            for (sumi, y) in sumi.iter_mut().zip(&ys) {
                // bsums is 32 bytes.
                *sumi = _mm256_sub_epi32(*sumi, _mm256_madd_epi16(load32(y[i].bsums.as_ptr()), ls9));
            }
            for ib in 0..8 {
                let shift = _mm256_shuffle_epi8(_mm256_set1_epi32(deltas[ib] as i32), IQ1M_GROUP_SPREAD);
                let q1u = _mm256_add_epi8(_mm256_sign_epi8(eight, iq1s_rows(&idx[4 * ib..])), shift);
                let scale = _mm256_shuffle_epi8(_mm256_set1_epi32(scales[ib] as i32), half_spread);
                for (sumi, y) in sumi.iter_mut().zip(&ys) {
                    // Values 32·ib .. 32·ib + 32 of the block's 256.
                    let q8b = load32(y[i].qs.as_ptr().add(32 * ib));
                    *sumi = _mm256_add_epi32(*sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q1u, q8b), scale));
                }
            }
            let dw = 0.125 * f16_value((d_bits as u16).to_le_bytes());
            for ((acc, sumi), y) in accum.iter_mut().zip(sumi).zip(&ys) {
                *acc = _mm256_fmadd_ps(_mm256_set1_ps(dw * y[i].d), _mm256_cvtepi32_ps(sumi), *acc);
            }
        }
        accum.map(|a| hsum(a))
    }
}

/// `avg_epu8` takes the top two bits of three times each byte: a TQ1_0 digit, `0..=2`.
#[target_feature(enable = "avx2")]
fn tq1_digits(q: __m256i) -> __m256i {
    // Cancel the +1 from avg so that it behaves like a halving add.
    let q = _mm256_subs_epu8(q, _mm256_set1_epi8(1));
    let q = _mm256_avg_epu8(q, _mm256_avg_epu8(q, _mm256_setzero_si256()));
    _mm256_and_si256(_mm256_srli_epi16::<6>(q), _mm256_set1_epi8(3))
}

/// Mirrors `ggml_vec_dot_tq1_0_q8_K`.
/// Block: `qs[48]` (5 base-3 digits a byte), `qh[4]` (4 digits each), `d` f16.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_tq1_0(row: &[u8], x: Column) -> f32 {
    // SAFETY: TQ1_0 rows are multiplied with Q8_K columns.
    let ys = unsafe { x.blocks::<BlockQ8K>() };
    let blocks: &[BlockTq1_0] = bytemuck::cast_slice(row);
    let m8 = _mm256_set1_epi8(-8);
    let m8_128 = _mm_set1_epi8(-8);
    let times9 = |q: __m256i| _mm256_add_epi8(_mm256_and_si256(_mm256_slli_epi16::<3>(q), m8), q);
    let times9_128 = |q: __m128i| _mm_add_epi8(_mm_and_si128(_mm_slli_epi16::<3>(q), m8_128), q);
    let mut sumf = _mm256_setzero_ps();
    for (b, y) in blocks.iter().zip(ys) {
        // SAFETY: qs is 48 bytes; the quants 256, the bsums 32 bytes.
        let (qx0, qx0_128, qy, ysum) = unsafe {
            let q8 = y.qs.as_ptr();
            let qy: [__m256i; 8] = std::array::from_fn(|j| load32(q8.add(32 * j)));
            (
                load32(b.qs.as_ptr()),
                load16(b.qs.as_ptr().add(32)),
                qy,
                load32(y.bsums.as_ptr()),
            )
        };
        // First 32 bytes of 5 elements: 8-bit multiplies with shifts, masks and adds.
        let qx1 = _mm256_add_epi8(qx0, _mm256_add_epi8(qx0, qx0));
        let qx2 = times9(qx0);
        let qx3 = times9(qx1);
        let qx4 = times9(qx2);
        let dot = |qx: __m256i, qy: __m256i| _mm256_maddubs_epi16(tq1_digits(qx), qy);
        let mut sumi0 = _mm256_add_epi16(dot(qx0, qy[0]), dot(qx1, qy[1]));
        let mut sumi1 = _mm256_add_epi16(dot(qx2, qy[2]), dot(qx3, qy[3]));
        let mut sumi2 = dot(qx4, qy[4]);
        // Last 16 bytes of 5 elements, along with the 4 bytes of 4 elements.
        let qh = _mm_set1_epi32(i32::from_le_bytes(b.qh));
        let qx1 = _mm_add_epi8(qx0_128, _mm_add_epi8(qx0_128, qx0_128));
        let qx2 = times9_128(qx0_128);
        let qx3 = times9_128(qx1);
        let qx4 = times9_128(qx2);
        let qx01 = _mm256_set_m128i(qx1, qx0_128);
        let qx23 = _mm256_set_m128i(qx3, qx2);
        // AVX2 does not have 8-bit multiplies, so 16-bit it is.
        let qx5_l = _mm256_mullo_epi16(
            _mm256_cvtepu8_epi16(qh),
            _mm256_set_epi16(27, 27, 27, 27, 9, 9, 9, 9, 3, 3, 3, 3, 1, 1, 1, 1),
        );
        let qx5_l = _mm256_and_si256(qx5_l, _mm256_set1_epi16(0xff));
        let qx5 = _mm_packus_epi16(_mm256_castsi256_si128(qx5_l), _mm256_extracti128_si256::<1>(qx5_l));
        let qx45 = _mm256_set_m128i(qx5, qx4);
        sumi0 = _mm256_add_epi16(sumi0, dot(qx01, qy[5]));
        sumi1 = _mm256_add_epi16(sumi1, dot(qx23, qy[6]));
        sumi2 = _mm256_add_epi16(sumi2, dot(qx45, qy[7]));
        let d = _mm256_set1_ps(y.d * f16_value(b.d));
        let sumi = _mm256_add_epi16(_mm256_sub_epi16(sumi0, ysum), _mm256_add_epi16(sumi1, sumi2));
        let sumi = _mm256_madd_epi16(sumi, _mm256_set1_epi16(1));
        sumf = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), d, sumf);
    }
    hsum(sumf)
}

/// Mirrors `ggml_vec_dot_tq2_0_q8_K`.
/// Block: `qs[64]` (2 bits a value, `q - 1` in -1..=1), `d` f16.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_tq2_0(row: &[u8], x: Column) -> f32 {
    // SAFETY: TQ2_0 rows are multiplied with Q8_K columns.
    let ys = unsafe { x.blocks::<BlockQ8K>() };
    let blocks: &[BlockTq2_0] = bytemuck::cast_slice(row);
    let m3 = _mm256_set1_epi8(3);
    let mut sumf = _mm256_setzero_ps();
    for (b, y) in blocks.iter().zip(ys) {
        // 16-bit sums, because 256*127 still fits.
        let mut sumi0 = _mm256_setzero_si256();
        let mut sumi1 = _mm256_setzero_si256();
        for j in [0, 32] {
            // SAFETY: bytes j..j+32 of qs and quants 4j..4j+128.
            let (qx, qy) = unsafe {
                let q8 = y.qs.as_ptr().add(4 * j);
                let qy: [__m256i; 4] = std::array::from_fn(|l| load32(q8.add(32 * l)));
                (load32(b.qs.as_ptr().add(j)), qy)
            };
            // 0, 1, 2 (should not be 3).
            let qx0 = _mm256_and_si256(qx, m3);
            let qx1 = _mm256_and_si256(_mm256_srli_epi16::<2>(qx), m3);
            let qx2 = _mm256_and_si256(_mm256_srli_epi16::<4>(qx), m3);
            let qx3 = _mm256_and_si256(_mm256_srli_epi16::<6>(qx), m3);
            let dot01 = _mm256_add_epi16(_mm256_maddubs_epi16(qx0, qy[0]), _mm256_maddubs_epi16(qx1, qy[1]));
            let dot23 = _mm256_add_epi16(_mm256_maddubs_epi16(qx2, qy[2]), _mm256_maddubs_epi16(qx3, qy[3]));
            sumi0 = _mm256_add_epi16(sumi0, dot01);
            sumi1 = _mm256_add_epi16(sumi1, dot23);
        }
        // SAFETY: the 16 bsums are 32 bytes.
        let ysum = unsafe { load32(y.bsums.as_ptr()) };
        let d = _mm256_set1_ps(y.d * f16_value(b.d));
        let sumi = _mm256_sub_epi16(_mm256_add_epi16(sumi0, sumi1), ysum);
        let sumi = _mm256_madd_epi16(sumi, _mm256_set1_epi16(1));
        sumf = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), d, sumf);
    }
    hsum(sumf)
}
