//! Ternary formats TQ1_0 (1.6875 bpw) and TQ2_0 (2.0625 bpw): values `d * {-1, 0, 1}`.
//!
//! Mirrors `quantize_row_tq1_0_ref`, `quantize_row_tq2_0_ref`, `dequantize_row_tq1_0`
//! and `dequantize_row_tq2_0` in `ggml/src/ggml-quants.c`.
//!
//! TQ1_0 packs 5 trits per byte as a base-3 fixed-point fraction: byte `q` holds
//! `ceil(t * 256 / 243)` for the 5-digit base-3 number `t`, and digit `n` is
//! recovered as `((q * 3^n) mod 256) * 3 >> 8`. The first 32 bytes of `qs` carry
//! elements `[0, 160)` (element `m + 32n` in digit `n` of byte `m`), the next 16
//! bytes elements `[160, 240)`, and the 4 `qh` bytes the last 16 (4 digits each).

use super::QK_K;
use super::search::{f16_bytes, f16_value};
use bytemuck::{Pod, Zeroable};

/// `block_tq1_0`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockTq1_0 {
    pub qs: [u8; (QK_K - 4 * QK_K / 64) / 5],
    pub qh: [u8; QK_K / 64],
    pub d: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockTq1_0>() == 54);

/// `block_tq2_0`: 2 bits per element, `q - 1` in `{-1, 0, 1}`; byte `m` of each
/// 32-byte group holds elements `m`, `m+32`, `m+64`, `m+96` of that 128-element group.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockTq2_0 {
    pub qs: [u8; QK_K / 4],
    pub d: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockTq2_0>() == 66);

const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];

/// Digit `n` (0 = most significant) of a TQ1_0 byte, as `0..=2`.
#[inline]
pub fn tq1_digit(q: u8, n: usize) -> i32 {
    let shifted = q.wrapping_mul(POW3[n]);
    ((shifted as u16 * 3) >> 8) as i32
}

pub(super) fn dequantize_tq1_0(src: &[u8], out: &mut [f32]) {
    let blocks: &[BlockTq1_0] = bytemuck::cast_slice(src);
    for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_value(b.d);
        let mut o = 0;
        for (start, width) in [(0usize, 32usize), (32, 16)] {
            for n in 0..5 {
                for m in 0..width {
                    y[o] = (tq1_digit(b.qs[start + m], n) - 1) as f32 * d;
                    o += 1;
                }
            }
        }
        for n in 0..4 {
            for j in 0..4 {
                y[o] = (tq1_digit(b.qh[j], n) - 1) as f32 * d;
                o += 1;
            }
        }
    }
}

pub(super) fn dequantize_tq2_0(src: &[u8], out: &mut [f32]) {
    let blocks: &[BlockTq2_0] = bytemuck::cast_slice(src);
    for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_value(b.d);
        let mut o = 0;
        for j in (0..QK_K / 4).step_by(32) {
            for l in 0..4 {
                for m in 0..32 {
                    let q = ((b.qs[j + m] >> (2 * l)) & 3) as i32;
                    y[o] = (q - 1) as f32 * d;
                    o += 1;
                }
            }
        }
    }
}

/// `d = max|x|` and its inverse, as both ternary quantizers compute them.
fn absmax_scale(x: &[f32]) -> (f32, f32) {
    let d = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    (d, if d != 0.0 { 1.0 / d } else { 0.0 })
}

/// `lroundf(x * id) + 1`: the trit of one element as `0..=2`.
#[inline]
fn trit(v: f32, id: f32) -> u8 {
    ((v * id).round() as i32 + 1) as u8
}

/// Base-3 digits to the fixed-point byte: `ceil(t * 256 / 243)`, truncated to 8 bits.
#[inline]
fn pack_trits(t: u8) -> u8 {
    (t as u16 * 256).div_ceil(243) as u8
}

pub(super) fn quantize_tq1_0(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockTq1_0] = bytemuck::cast_slice_mut(out);
    for (xb, y) in x.chunks_exact(QK_K).zip(blocks.iter_mut()) {
        let (d, id) = absmax_scale(xb);
        y.d = f16_bytes(d);
        let mut base = 0;
        for (start, width) in [(0usize, 32usize), (32, 16)] {
            for m in 0..width {
                let mut q = 0u8;
                for n in 0..5 {
                    q = q * 3 + trit(xb[base + m + n * width], id);
                }
                y.qs[start + m] = pack_trits(q);
            }
            base += 5 * width;
        }
        for j in 0..4 {
            let mut q = 0u8;
            for m in 0..4 {
                q = q * 3 + trit(xb[base + j + m * 4], id);
            }
            y.qh[j] = pack_trits(q * 3);
        }
    }
}

pub(super) fn quantize_tq2_0(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockTq2_0] = bytemuck::cast_slice_mut(out);
    for (xb, y) in x.chunks_exact(QK_K).zip(blocks.iter_mut()) {
        let (d, id) = absmax_scale(xb);
        y.d = f16_bytes(d);
        for j in (0..QK_K / 4).step_by(32) {
            let xg = &xb[4 * j..];
            for m in 0..32 {
                let mut q = 0u8;
                for n in 0..4 {
                    q += (trit(xg[m + n * 32], id) & 3) << (2 * n);
                }
                y.qs[j + m] = q;
            }
        }
    }
}
