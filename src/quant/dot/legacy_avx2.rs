//! AVX2 dot products of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and IQ4_NL rows with Q8_0 or Q8_1
//! activations, as `ggml_vec_dot_q4_0_q8_0` ... `ggml_vec_dot_iq4_nl_q8_0` in
//! `ggml/src/ggml-cpu/arch/x86/quants.c`: each block's 32 weights become 32 bytes in a
//! register, one `maddubs`/`madd` pair gives 8 integer partial sums, and one FMA applies
//! the product of the two block scales.

use super::float_avx2::{f16_bits, hsum};
use super::{BlockQ8_0, BlockQ8_1, Column, RowDot, TileSums, Tiled};
use crate::quant::BlockType;
use crate::quant::legacy::KVALUES_IQ4NL;
use std::arch::x86_64::*;

/// The AVX2 tile kernel of `ty`, None for the formats of other files: one row against
/// up to four columns, each block unpacked once for all of them.
pub(super) fn tiled(ty: BlockType) -> Option<Tiled> {
    let dot = match ty {
        BlockType::Q4_0 => tile_q4_0,
        BlockType::Q4_1 => tile_q4_1,
        BlockType::Q5_0 => tile_q5_0,
        BlockType::Q5_1 => tile_q5_1,
        BlockType::Q8_0 => tile_q8_0,
        BlockType::IQ4_NL => tile_iq4_nl,
        _ => return None,
    };
    Some(Tiled::one_row(dot))
}

/// The AVX2 kernel of `ty`, None for the formats of other files.
pub(super) fn kernel(ty: BlockType) -> Option<RowDot> {
    Some(match ty {
        BlockType::Q4_0 => dot_q4_0,
        BlockType::Q4_1 => dot_q4_1,
        BlockType::Q5_0 => dot_q5_0,
        BlockType::Q5_1 => dot_q5_1,
        BlockType::Q8_0 => dot_q8_0,
        BlockType::IQ4_NL => dot_iq4_nl,
        _ => return None,
    })
}

/// The f16 at `p` (unaligned), converted with F16C.
///
/// # Safety
/// `p` must be readable for 2 bytes.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller's promise.
    f16_bits(unsafe { p.cast::<u16>().read_unaligned() })
}

/// 32 nibbles as bytes: the low nibbles of the 16 bytes at `p`, then the high ones
/// (`bytes_from_nibbles_32`).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: the caller gives 16 readable bytes.
    let tmp = unsafe { _mm_loadu_si128(p.cast()) };
    let bytes = _mm256_set_m128i(_mm_srli_epi16::<4>(tmp), tmp);
    _mm256_and_si256(bytes, _mm256_set1_epi8(0x0f))
}

/// Byte j is 0xff where bit j of the 4 bytes at `p` is set (`bytes_from_bits_32`).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn bits(p: *const u8) -> __m256i {
    // SAFETY: the caller gives 4 readable bytes.
    let x32 = unsafe { p.cast::<i32>().read_unaligned() };
    let shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x32), shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// Σ of byte products of signed `x` and signed `y` as 8 f32 partial sums
/// (`mul_sum_i8_pairs_float`: the sign moves onto y so that `maddubs` sees |x|).
#[inline]
#[target_feature(enable = "avx2")]
fn i8_pairs(x: __m256i, y: __m256i) -> __m256 {
    let dot = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    _mm256_cvtepi32_ps(_mm256_madd_epi16(dot, _mm256_set1_epi16(1)))
}

/// Σ of byte products of unsigned `x` and signed `y` (`mul_sum_us8_pairs_float`).
#[inline]
#[target_feature(enable = "avx2")]
fn u8_pairs(x: __m256i, y: __m256i) -> __m256 {
    let dot = _mm256_maddubs_epi16(x, y);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(dot, _mm256_set1_epi16(1)))
}

/// Σ over blocks of `scale · Σ(products)` for N Q8_0 columns: `block(p)` gives the
/// weight block at p's scale and its 32 signed bytes, unpacked once for all columns.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn over_q8_0<const N: usize>(
    row: &[u8],
    xs: [Column; N],
    size: usize,
    block: impl Fn(*const u8) -> (f32, __m256i),
) -> [f32; N] {
    // SAFETY: Q8_0 columns (checked by Kernel::dot).
    let ys = xs.map(|x| unsafe { x.blocks::<BlockQ8_0>() });
    let mut acc = [_mm256_setzero_ps(); N];
    for i in 0..ys[0].len() {
        // SAFETY: the row holds the columns' blocks of `size` bytes.
        let (d, qx) = block(unsafe { row.as_ptr().add(i * size) });
        for (acc, y) in acc.iter_mut().zip(&ys) {
            let y = &y[i];
            // SAFETY: y.qs is 32 bytes.
            let qy = unsafe { _mm256_loadu_si256(y.qs.as_ptr().cast()) };
            *acc = _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), i8_pairs(qx, qy), *acc);
        }
    }
    acc.map(|a| hsum(a))
}

/// Σ over blocks of `d · Σ(products) + m · s` for N Q8_1 columns: `block(p)` gives the
/// weight block's scale d, min m and its 32 unsigned bytes, unpacked once for all columns.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn over_q8_1<const N: usize>(
    row: &[u8],
    xs: [Column; N],
    size: usize,
    block: impl Fn(*const u8) -> (f32, f32, __m256i),
) -> [f32; N] {
    // SAFETY: Q8_1 columns (checked by Kernel::dot).
    let ys = xs.map(|x| unsafe { x.blocks::<BlockQ8_1>() });
    let mut acc = [_mm256_setzero_ps(); N];
    let mut mins = [0f32; N];
    for i in 0..ys[0].len() {
        // SAFETY: the row holds the columns' blocks of `size` bytes.
        let (d, m, qx) = block(unsafe { row.as_ptr().add(i * size) });
        for ((acc, mins), y) in acc.iter_mut().zip(&mut mins).zip(&ys) {
            let y = &y[i];
            *mins += m * y.s;
            // SAFETY: y.qs is 32 bytes.
            let qy = unsafe { _mm256_loadu_si256(y.qs.as_ptr().cast()) };
            *acc = _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), u8_pairs(qx, qy), *acc);
        }
    }
    let mut sums = [0f32; N];
    for ((s, a), m) in sums.iter_mut().zip(acc).zip(mins) {
        *s = hsum(a) + m;
    }
    sums
}

/// A format's row-against-N-columns body `$columns` over `$over` with blocks of `$size`
/// bytes unpacked by `$block`, and its one-column kernel `$dot` and tile kernel `$tile`.
macro_rules! legacy_kernels {
    ($doc:literal, $columns:ident, $dot:ident, $tile:ident, $over:ident, $size:literal, $block:expr) => {
        #[doc = $doc]
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $columns<const N: usize>(row: &[u8], xs: [Column; N]) -> [f32; N] {
            $over(row, xs, $size, $block)
        }

        column_kernels!($columns, $dot, $tile);
    };
}

legacy_kernels!(
    "Q4_0 (`d: f16, qs: [u8; 16]`, values `q - 8`).",
    q4_0_columns,
    dot_q4_0,
    tile_q4_0,
    over_q8_0,
    18,
    // SAFETY (each block): 18 bytes at p.
    |p| unsafe { (f16_at(p), _mm256_sub_epi8(nibbles(p.add(2)), _mm256_set1_epi8(8))) }
);

legacy_kernels!(
    "Q4_1 (`d: f16, m: f16, qs: [u8; 16]`, values `d·q + m`).",
    q4_1_columns,
    dot_q4_1,
    tile_q4_1,
    over_q8_1,
    20,
    // SAFETY (each block): 20 bytes at p.
    |p| unsafe { (f16_at(p), f16_at(p.add(2)), nibbles(p.add(4))) }
);

legacy_kernels!(
    "Q5_0 (`d: f16, qh: [u8; 4], qs: [u8; 16]`, values `(q | h << 4) - 16`).",
    q5_0_columns,
    dot_q5_0,
    tile_q5_0,
    over_q8_0,
    22,
    // SAFETY (each block): 22 bytes at p.
    |p| unsafe {
        let hi = _mm256_andnot_si256(bits(p.add(2)), _mm256_set1_epi8(0xf0u8 as i8));
        (f16_at(p), _mm256_or_si256(nibbles(p.add(6)), hi))
    }
);

legacy_kernels!(
    "Q5_1 (`d: f16, m: f16, qh: [u8; 4], qs: [u8; 16]`, values `d·(q | h << 4) + m`).",
    q5_1_columns,
    dot_q5_1,
    tile_q5_1,
    over_q8_1,
    24,
    // SAFETY (each block): 24 bytes at p.
    |p| unsafe {
        let hi = _mm256_and_si256(bits(p.add(4)), _mm256_set1_epi8(0x10));
        (f16_at(p), f16_at(p.add(2)), _mm256_or_si256(nibbles(p.add(8)), hi))
    }
);

legacy_kernels!(
    "Q8_0 (`d: f16, qs: [i8; 32]`).",
    q8_0_columns,
    dot_q8_0,
    tile_q8_0,
    over_q8_0,
    34,
    // SAFETY (each block): 34 bytes at p.
    |p| unsafe { (f16_at(p), _mm256_loadu_si256(p.add(2).cast())) }
);

legacy_kernels!(
    "IQ4_NL (`d: f16, qs: [u8; 16]`, values `KVALUES_IQ4NL[q]`, looked up with a shuffle).",
    iq4_nl_columns,
    dot_iq4_nl,
    tile_iq4_nl,
    over_q8_0,
    18,
    // SAFETY (each block): 18 bytes at p; the table is 16 bytes.
    |p| unsafe {
        let values = _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast());
        let m4 = _mm_set1_epi8(0x0f);
        let q = _mm_loadu_si128(p.add(2).cast());
        let lo = _mm_shuffle_epi8(values, _mm_and_si128(q, m4));
        let hi = _mm_shuffle_epi8(values, _mm_and_si128(_mm_srli_epi16::<4>(q), m4));
        (f16_at(p), _mm256_set_m128i(hi, lo))
    }
);
