//! The 32-element block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and IQ4_NL (dequantize only).
//!
//! Layouts from `ggml/src/ggml-common.h`; codecs mirror `quantize_row_q*_ref`,
//! `quantize_row_q*_impl` and `dequantize_row_q*` in `ggml/src/ggml-quants.c`.
//! In every format element `j` of a block is in the low nibble of `qs[j]` and
//! element `j + 16` in the high nibble.

use super::search::{Sweep, f16_bytes, f16_value, make_qkx_quants, make_qx_quants};
use bytemuck::{Pod, Zeroable};

const QK: usize = 32;

/// `block_q4_0`: `x = d * (q - 8)`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ4_0 {
    pub d: [u8; 2],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

/// `block_q4_1`: `x = d * q + m`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ4_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

/// `block_q5_0`: `x = d * (q - 16)`, the fifth bit of element `j` is bit `j` of `qh`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5_0 {
    pub d: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

/// `block_q5_1`: `x = d * q + m`, fifth bits in `qh` as in Q5_0.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

/// `block_q8_0`: `x = d * q`, `q` signed.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ8_0 {
    pub d: [u8; 2],
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

/// `block_iq4_nl`: `x = d * kvalues_iq4nl[q]`, same packing as Q4_0.
pub type BlockIq4Nl = BlockQ4_0;

/// `kvalues_iq4nl` from `ggml-common.h`.
pub(super) const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

fn blocks<T: Pod>(src: &[u8]) -> &[T] {
    bytemuck::cast_slice(src)
}

fn blocks_mut<T: Pod>(out: &mut [u8]) -> &mut [T] {
    bytemuck::cast_slice_mut(out)
}

pub(super) fn dequantize_q4_0(src: &[u8], out: &mut [f32]) {
    for (b, y) in blocks::<BlockQ4_0>(src).iter().zip(out.chunks_exact_mut(QK)) {
        let d = f16_value(b.d);
        for j in 0..QK / 2 {
            y[j] = ((b.qs[j] & 0x0f) as i32 - 8) as f32 * d;
            y[j + QK / 2] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

pub(super) fn dequantize_q4_1(src: &[u8], out: &mut [f32]) {
    for (b, y) in blocks::<BlockQ4_1>(src).iter().zip(out.chunks_exact_mut(QK)) {
        let d = f16_value(b.d);
        let m = f16_value(b.m);
        for j in 0..QK / 2 {
            y[j] = (b.qs[j] & 0x0f) as f32 * d + m;
            y[j + QK / 2] = (b.qs[j] >> 4) as f32 * d + m;
        }
    }
}

pub(super) fn dequantize_q5_0(src: &[u8], out: &mut [f32]) {
    for (b, y) in blocks::<BlockQ5_0>(src).iter().zip(out.chunks_exact_mut(QK)) {
        let d = f16_value(b.d);
        let qh = u32::from_le_bytes(b.qh);
        for j in 0..QK / 2 {
            let xh0 = ((qh >> j) << 4) & 0x10;
            let xh1 = (qh >> (j + 12)) & 0x10;
            y[j] = (((b.qs[j] & 0x0f) as u32 | xh0) as i32 - 16) as f32 * d;
            y[j + QK / 2] = (((b.qs[j] >> 4) as u32 | xh1) as i32 - 16) as f32 * d;
        }
    }
}

pub(super) fn dequantize_q5_1(src: &[u8], out: &mut [f32]) {
    for (b, y) in blocks::<BlockQ5_1>(src).iter().zip(out.chunks_exact_mut(QK)) {
        let d = f16_value(b.d);
        let m = f16_value(b.m);
        let qh = u32::from_le_bytes(b.qh);
        for j in 0..QK / 2 {
            let xh0 = ((qh >> j) << 4) & 0x10;
            let xh1 = (qh >> (j + 12)) & 0x10;
            y[j] = ((b.qs[j] & 0x0f) as u32 | xh0) as f32 * d + m;
            y[j + QK / 2] = ((b.qs[j] >> 4) as u32 | xh1) as f32 * d + m;
        }
    }
}

pub(super) fn dequantize_q8_0(src: &[u8], out: &mut [f32]) {
    for (b, y) in blocks::<BlockQ8_0>(src).iter().zip(out.chunks_exact_mut(QK)) {
        let d = f16_value(b.d);
        for j in 0..QK {
            y[j] = b.qs[j] as f32 * d;
        }
    }
}

pub(super) fn dequantize_iq4_nl(src: &[u8], out: &mut [f32]) {
    for (b, y) in blocks::<BlockIq4Nl>(src).iter().zip(out.chunks_exact_mut(QK)) {
        let d = f16_value(b.d);
        for j in 0..QK / 2 {
            y[j] = d * KVALUES_IQ4NL[(b.qs[j] & 0x0f) as usize] as f32;
            y[j + QK / 2] = d * KVALUES_IQ4NL[(b.qs[j] >> 4) as usize] as f32;
        }
    }
}

/// The value with the largest magnitude (the first one on ties), as the `_ref` quantizers pick it.
fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0f32;
    let mut max = 0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn min_max(x: &[f32]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// `sigma2` of the `_impl` quantizers: the mean square of the whole row.
fn row_sigma2(x: &[f32]) -> f32 {
    let mut sum_x2 = 0f32;
    for &v in x {
        sum_x2 += v * v;
    }
    sum_x2 / x.len() as f32
}

/// Importance of each element of one block: `qw * sqrt(sigma2 + x²)`.
fn block_weights(xb: &[f32], qw: &[f32], sigma2: f32) -> [f32; QK] {
    let mut w = [0f32; QK];
    for j in 0..QK {
        w[j] = qw[j] * (sigma2 + xb[j] * xb[j]).sqrt();
    }
    w
}

/// Pack 5-bit levels: low nibbles into `qs`, fifth bits into the `qh` word.
fn pack_q5(l: &[u8; QK], qs: &mut [u8; QK / 2], qh: &mut [u8; 4]) {
    let mut h = 0u32;
    for j in 0..QK / 2 {
        let (x0, x1) = (l[j], l[j + QK / 2]);
        qs[j] = (x0 & 0x0f) | ((x1 & 0x0f) << 4);
        h |= (((x0 & 0x10) as u32) >> 4) << j;
        h |= (((x1 & 0x10) as u32) >> 4) << (j + QK / 2);
    }
    *qh = h.to_le_bytes();
}

pub(super) fn quantize_q4_0(x: &[f32], weights: Option<&[f32]>, out: &mut [u8]) {
    let ys = blocks_mut::<BlockQ4_0>(out);
    if let Some(qw) = weights {
        let sigma2 = row_sigma2(x);
        for (ib, y) in ys.iter_mut().enumerate() {
            let xb = &x[ib * QK..][..QK];
            let w = block_weights(xb, &qw[ib * QK..], sigma2);
            let mut l = [0i8; QK];
            let d = make_qx_quants(8, xb, &mut l, Some(&w));
            y.d = f16_bytes(d);
            for j in 0..QK / 2 {
                y.qs[j] = (l[j] as u8) | ((l[j + 16] as u8) << 4);
            }
        }
        return;
    }
    for (xb, y) in x.chunks_exact(QK).zip(ys.iter_mut()) {
        let max = signed_absmax(xb);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y.d = f16_bytes(d);
        for j in 0..QK / 2 {
            let x0 = xb[j] * id;
            let x1 = xb[j + QK / 2] * id;
            let q0 = ((x0 + 8.5) as i8).min(15) as u8;
            let q1 = ((x1 + 8.5) as i8).min(15) as u8;
            y.qs[j] = q0 | (q1 << 4);
        }
    }
}

pub(super) fn quantize_q4_1(x: &[f32], weights: Option<&[f32]>, out: &mut [u8]) {
    let ys = blocks_mut::<BlockQ4_1>(out);
    if let Some(qw) = weights {
        let sigma2 = row_sigma2(x);
        for (ib, y) in ys.iter_mut().enumerate() {
            let xb = &x[ib * QK..][..QK];
            let w = block_weights(xb, &qw[ib * QK..], sigma2);
            let (mut l, mut laux) = ([0u8; QK], [0u8; QK]);
            let sweep = Sweep {
                rmin: -0.9,
                rdelta: 0.05,
                nstep: 36,
                use_mad: false,
            };
            let (d, min) = make_qkx_quants(15, xb, &w, &mut l, &mut laux, &sweep);
            y.d = f16_bytes(d);
            y.m = f16_bytes(-min);
            for j in 0..QK / 2 {
                y.qs[j] = l[j] | (l[j + 16] << 4);
            }
        }
        return;
    }
    for (xb, y) in x.chunks_exact(QK).zip(ys.iter_mut()) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y.d = f16_bytes(d);
        y.m = f16_bytes(min);
        for j in 0..QK / 2 {
            let x0 = (xb[j] - min) * id;
            let x1 = (xb[j + QK / 2] - min) * id;
            let q0 = ((x0 + 0.5) as i8).min(15) as u8;
            let q1 = ((x1 + 0.5) as i8).min(15) as u8;
            y.qs[j] = q0 | (q1 << 4);
        }
    }
}

pub(super) fn quantize_q5_0(x: &[f32], weights: Option<&[f32]>, out: &mut [u8]) {
    let ys = blocks_mut::<BlockQ5_0>(out);
    if let Some(qw) = weights {
        let sigma2 = row_sigma2(x);
        for (ib, y) in ys.iter_mut().enumerate() {
            let xb = &x[ib * QK..][..QK];
            let w = block_weights(xb, &qw[ib * QK..], sigma2);
            let mut l = [0i8; QK];
            let d = make_qx_quants(16, xb, &mut l, Some(&w));
            y.d = f16_bytes(d);
            pack_q5(&l.map(|v| v as u8), &mut y.qs, &mut y.qh);
        }
        return;
    }
    for (xb, y) in x.chunks_exact(QK).zip(ys.iter_mut()) {
        let max = signed_absmax(xb);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y.d = f16_bytes(d);
        let mut l = [0u8; QK];
        for (q, &v) in l.iter_mut().zip(xb) {
            *q = ((v * id + 16.5) as i8).min(31) as u8;
        }
        pack_q5(&l, &mut y.qs, &mut y.qh);
    }
}

pub(super) fn quantize_q5_1(x: &[f32], weights: Option<&[f32]>, out: &mut [u8]) {
    let ys = blocks_mut::<BlockQ5_1>(out);
    if let Some(qw) = weights {
        let sigma2 = row_sigma2(x);
        for (ib, y) in ys.iter_mut().enumerate() {
            let xb = &x[ib * QK..][..QK];
            let w = block_weights(xb, &qw[ib * QK..], sigma2);
            let (mut l, mut laux) = ([0u8; QK], [0u8; QK]);
            let sweep = Sweep {
                rmin: -0.9,
                rdelta: 0.05,
                nstep: 36,
                use_mad: false,
            };
            let (d, min) = make_qkx_quants(31, xb, &w, &mut l, &mut laux, &sweep);
            y.d = f16_bytes(d);
            y.m = f16_bytes(-min);
            pack_q5(&l, &mut y.qs, &mut y.qh);
        }
        return;
    }
    for (xb, y) in x.chunks_exact(QK).zip(ys.iter_mut()) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y.d = f16_bytes(d);
        y.m = f16_bytes(min);
        let mut l = [0u8; QK];
        for (q, &v) in l.iter_mut().zip(xb) {
            *q = ((v - min) * id + 0.5) as u8;
        }
        pack_q5(&l, &mut y.qs, &mut y.qh);
    }
}

/// Q8_0 has one quantizer; ggml ignores importance weights for it.
pub(super) fn quantize_q8_0(x: &[f32], out: &mut [u8]) {
    for (xb, y) in x.chunks_exact(QK).zip(blocks_mut::<BlockQ8_0>(out).iter_mut()) {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y.d = f16_bytes(d);
        for (q, &v) in y.qs.iter_mut().zip(xb) {
            *q = (v * id).round() as i8;
        }
    }
}

/// `best_index_int8` (ggml-quants.c): the index of the table value nearest `x` (the
/// upper one on ties), by bisection over the sorted table.
fn best_index_int8(values: &[i8; 16], x: f32) -> usize {
    if x <= values[0] as f32 {
        return 0;
    }
    if x >= values[15] as f32 {
        return 15;
    }
    let (mut ml, mut mu) = (0usize, 15usize);
    while mu - ml > 1 {
        let mav = (ml + mu) / 2;
        if x < values[mav] as f32 {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    if x - (values[mu - 1] as f32) < (values[mu] as f32) - x {
        mu - 1
    } else {
        mu
    }
}

/// `quantize_iq4_nl` (ggml-quants.c, `quantize_row_iq4_nl_impl` with one 32-element block
/// per super-block and ntry = 7): per block, the scale from the signed maximum is refined
/// by trying 15 nearby scales and keeping the best weighted fit; weights are
/// `qw·sqrt(σ² + x²)` with importance weights, else `x²`.
pub(super) fn quantize_iq4_nl(x: &[f32], weights: Option<&[f32]>, out: &mut [u8]) {
    const NTRY: i32 = 7;
    let values = &KVALUES_IQ4NL;
    for (ib, (xb, y)) in x.chunks_exact(QK).zip(blocks_mut::<BlockIq4Nl>(out)).enumerate() {
        let sigma2 = xb.iter().map(|v| v * v).sum::<f32>() * (2.0 / QK as f32);
        let mut w = [0f32; QK];
        match weights {
            Some(qw) => {
                for j in 0..QK {
                    w[j] = qw[ib * QK + j] * (sigma2 + xb[j] * xb[j]).sqrt();
                }
            }
            None => {
                for j in 0..QK {
                    w[j] = xb[j] * xb[j];
                }
            }
        }
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let d = if amax < 1e-15 {
            0.0
        } else {
            let fit = |id: f32| {
                let (mut sumqx, mut sumq2) = (0f32, 0f32);
                for j in 0..QK {
                    let q = values[best_index_int8(values, id * xb[j])] as f32;
                    sumqx += w[j] * q * xb[j];
                    sumq2 += w[j] * q * q;
                }
                (sumqx, sumq2)
            };
            let d0 = -max / values[0] as f32;
            let (sumqx, sumq2) = fit(1.0 / d0);
            let mut d = sumqx / sumq2;
            let mut best = d * sumqx;
            for itry in -NTRY..=NTRY {
                let (sumqx, sumq2) = fit((itry as f32 + values[0] as f32) / max);
                if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }
            d
        };
        y.d = f16_bytes(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for j in 0..QK / 2 {
            let l0 = best_index_int8(values, id * xb[j]) as u8;
            let l1 = best_index_int8(values, id * xb[j + QK / 2]) as u8;
            y.qs[j] = l0 | (l1 << 4);
        }
    }
}
