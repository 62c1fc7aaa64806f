//! AVX2 dot products of F32, F16 and BF16 rows with f32 activations (FMA, with F16C
//! for F16). ggml converts the activations to F16 for F16 weights
//! (`ggml_vec_dot_f16`); lowbit keeps them f32, which reads the same weight bytes and
//! rounds less.

use super::{Column, TILE, TileSums, Tiled};
use crate::quant::BlockType;
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

/// The AVX2 tile kernel of `ty`, None for the formats of other files: one row of one
/// column (decode), else two rows of up to four columns (8 accumulators, 6 loads per 8
/// FMAs). Decode takes one row at a time because consecutive rows are one stream for
/// the hardware prefetcher: four rows at a time are four short streams, and the head's
/// product read at 7 instead of 12 GB/s.
pub(super) fn tiled(ty: BlockType) -> Option<Tiled> {
    let dot = match ty {
        BlockType::F32 => tile_f32,
        BlockType::F16 => tile_f16,
        BlockType::BF16 => tile_bf16,
        _ => return None,
    };
    Some(Tiled {
        dot,
        shape: |cols| if cols <= 1 { (1, 1) } else { (2, cols.min(TILE)) },
    })
}

/// `out[r][c] = Σ_k row_r[k] · x_c[k]` for R rows and C f32 columns of k values, with A
/// accumulators per (row, column), each taking every A-th 8 values (the last few 8s go
/// to the first). `load(p, i)` is the 8 values from `i` of the row at `p` as f32 lanes,
/// `value(p, i)` the one at `i`.
///
/// # Safety
/// R rows and C columns, each row holding the columns' k values; the caller enables
/// AVX2 and FMA, and the closures are its own (closures made here would not inherit
/// its target features).
#[inline(always)]
unsafe fn float_tile<const R: usize, const C: usize, const A: usize>(
    rows: &[&[u8]],
    xs: &[Column],
    out: &mut TileSums,
    load: impl Fn(*const u8, usize) -> __m256,
    value: impl Fn(*const u8, usize) -> f32,
) {
    let k = xs[0].k;
    let mut p = [std::ptr::null(); R];
    for (p, row) in p.iter_mut().zip(rows) {
        *p = row.as_ptr();
    }
    let mut x = [std::ptr::null::<f32>(); C];
    for (x, column) in x.iter_mut().zip(xs) {
        // SAFETY: a float weight's column holds f32 values.
        *x = unsafe { column.blocks::<f32>() }.as_ptr();
    }
    // SAFETY (every load): below k, which every row and column hold.
    unsafe {
        let mut acc = [[[_mm256_setzero_ps(); A]; C]; R];
        let mut i = 0;
        while i + 8 * A <= k {
            for h in 0..A {
                step(&mut acc, h, &p, &x, i + 8 * h, &load);
            }
            i += 8 * A;
        }
        while i + 8 <= k {
            step(&mut acc, 0, &p, &x, i, &load);
            i += 8;
        }
        for r in 0..R {
            for c in 0..C {
                let mut tail = 0.0;
                for j in i..k {
                    tail += value(p[r], j) * *x[c].add(j);
                }
                let mut sum = acc[r][c];
                let mut n = A;
                while n > 1 {
                    n /= 2;
                    for h in 0..n {
                        sum[h] = _mm256_add_ps(sum[h], sum[h + n]);
                    }
                }
                out[r][c] = hsum(sum[0]) + tail;
            }
        }
    }
}

/// `acc[r][c][h] += row_r[i..i + 8] · x_c[i..i + 8]` lane by lane.
///
/// # Safety
/// As [`float_tile`], with `i + 8` at most k.
#[inline(always)]
unsafe fn step<const R: usize, const C: usize, const A: usize>(
    acc: &mut [[[__m256; A]; C]; R],
    h: usize,
    p: &[*const u8; R],
    x: &[*const f32; C],
    i: usize,
    load: &impl Fn(*const u8, usize) -> __m256,
) {
    // SAFETY: the caller's promise.
    unsafe {
        let mut xv = [_mm256_setzero_ps(); C];
        for c in 0..C {
            xv[c] = _mm256_loadu_ps(x[c].add(i));
        }
        for r in 0..R {
            let w = load(p[r], i);
            for c in 0..C {
                acc[r][c][h] = _mm256_fmadd_ps(w, xv[c], acc[r][c][h]);
            }
        }
    }
}

/// [`float_tile`] for `rows.len()` rows and `xs.len()` columns.
///
/// # Safety
/// As [`float_tile`], with 1 to [`TILE`] rows and columns.
#[inline(always)]
unsafe fn float_tiles(
    rows: &[&[u8]],
    xs: &[Column],
    out: &mut TileSums,
    load: impl Fn(*const u8, usize) -> __m256 + Copy,
    value: impl Fn(*const u8, usize) -> f32 + Copy,
) {
    // SAFETY: the caller's promise.
    unsafe {
        match rows.len() {
            1 => float_columns::<1>(rows, xs, out, load, value),
            2 => float_columns::<2>(rows, xs, out, load, value),
            3 => float_columns::<3>(rows, xs, out, load, value),
            _ => float_columns::<4>(rows, xs, out, load, value),
        }
    }
}

/// [`float_tile`] for R rows and `xs.len()` columns.
///
/// # Safety
/// As [`float_tile`].
#[inline(always)]
unsafe fn float_columns<const R: usize>(
    rows: &[&[u8]],
    xs: &[Column],
    out: &mut TileSums,
    load: impl Fn(*const u8, usize) -> __m256,
    value: impl Fn(*const u8, usize) -> f32,
) {
    // SAFETY: the caller's promise.
    unsafe {
        match xs.len() {
            1 if R == 1 => float_tile::<1, 1, 4>(rows, xs, out, load, value),
            1 => float_tile::<R, 1, 1>(rows, xs, out, load, value),
            2 => float_tile::<R, 2, 1>(rows, xs, out, load, value),
            3 => float_tile::<R, 3, 1>(rows, xs, out, load, value),
            _ => float_tile::<R, 4, 1>(rows, xs, out, load, value),
        }
    }
}

/// A format's tile kernel `$tile` and its one-pair kernel `$dot` (the (1, 1) tile with
/// four partial sums, called directly: decode's rows are too short for a dispatch), from
/// `$load` and `$value` as [`float_tile`] takes them.
macro_rules! float_kernels {
    ($what:literal, $tile:ident, $dot:ident, $features:literal, $load:expr, $value:expr) => {
        #[doc = concat!($what, " rows against f32 columns, a tile.")]
        #[target_feature(enable = $features)]
        fn $tile(rows: &[&[u8]], xs: &[Column], out: &mut TileSums) {
            // SAFETY: each row holds the columns' k values (checked by Kernel's callers).
            unsafe { float_tiles(rows, xs, out, $load, $value) }
        }

        #[doc = concat!($what, " row against an f32 column.")]
        #[target_feature(enable = $features)]
        pub(super) fn $dot(row: &[u8], x: Column) -> f32 {
            let mut out = [[0.0; TILE]; TILE];
            // SAFETY: as above.
            unsafe { float_tile::<1, 1, 4>(&[row], &[x], &mut out, $load, $value) };
            out[0][0]
        }
    };
}

float_kernels!(
    "F32",
    tile_f32,
    dot_f32,
    "avx2,fma",
    |p: *const u8, i| _mm256_loadu_ps(p.cast::<f32>().add(i)),
    |p: *const u8, i| p.cast::<f32>().add(i).read_unaligned()
);
float_kernels!(
    "F16",
    tile_f16,
    dot_f16,
    "avx2,fma,f16c",
    |p: *const u8, i| _mm256_cvtph_ps(_mm_loadu_si128(p.add(2 * i).cast())),
    |p: *const u8, i| half::f16::from_bits(p.cast::<u16>().add(i).read_unaligned()).to_f32()
);
float_kernels!(
    "BF16 (an f32's high half)",
    tile_bf16,
    dot_bf16,
    "avx2,fma",
    |p: *const u8, i| {
        let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.add(2 * i).cast()));
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h))
    },
    |p: *const u8, i| f32::from_bits((p.cast::<u16>().add(i).read_unaligned() as u32) << 16)
);
