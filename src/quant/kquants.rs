//! K-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (256-element super-blocks).
//!
//! Layouts from `ggml/src/ggml-common.h`; codecs mirror `quantize_row_q*_K_ref`,
//! `quantize_row_q*_K_impl` and `dequantize_row_q*_K` in `ggml/src/ggml-quants.c`.
//! Q2_K, Q3_K and Q6_K have 16 sub-blocks of 16 elements, Q4_K and Q5_K have 8 of 32.

use super::QK_K;
use super::search::{
    GROUP_MAX_EPS, Sweep, f16_bytes, f16_value, make_q3_quants, make_qkx_quants, make_qp_quants, make_qx_quants,
    nearest_int, via_f16,
};
use bytemuck::{Pod, Zeroable};

/// `block_q2_K`: `x = d * (scales[s] & 15) * q - dmin * (scales[s] >> 4)`, q in 0..=3.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: [u8; 2],
    pub dmin: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ2K>() == 84);

/// `block_q3_K`: 2 low bits in `qs`, the high bit in `hmask`, 6-bit signed scales packed in 12 bytes.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ3K>() == 110);

/// `block_q4_K`: 8 sub-blocks with 6-bit scale and min packed in 12 bytes.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ4K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

/// `block_q5_K`: Q4_K plus a fifth bit per element in `qh`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

/// `block_q6_K`: 4 low bits in `ql`, 2 high bits in `qh`, signed 8-bit scales.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

/// `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` of Q4_K/Q5_K.
#[inline]
pub fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The signed 6-bit scale `j` of Q3_K, unpacked as `dequantize_row_q3_K` does.
#[inline]
pub fn scale_q3k(j: usize, s: &[u8; 12]) -> i8 {
    let low = if j < 8 { s[j] & 0xf } else { s[j - 8] >> 4 };
    (low | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i8 - 32
}

fn blocks<T: Pod>(src: &[u8]) -> &[T] {
    bytemuck::cast_slice(src)
}

fn blocks_mut<T: Pod>(out: &mut [u8]) -> &mut [T] {
    bytemuck::cast_slice_mut(out)
}

pub(super) fn dequantize_q2_k(src: &[u8], out: &mut [f32]) {
    for (b, y) in blocks::<BlockQ2K>(src).iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_value(b.d);
        let min = f16_value(b.dmin);
        let mut is = 0;
        let mut o = 0;
        for half in 0..2 {
            let q = &b.qs[32 * half..][..32];
            for shift in [0, 2, 4, 6] {
                for part in 0..2 {
                    let sc = b.scales[is];
                    is += 1;
                    let dl = d * (sc & 0xf) as f32;
                    let ml = min * (sc >> 4) as f32;
                    for l in 0..16 {
                        y[o] = dl * ((q[l + 16 * part] >> shift) & 3) as f32 - ml;
                        o += 1;
                    }
                }
            }
        }
    }
}

pub(super) fn dequantize_q3_k(src: &[u8], out: &mut [f32]) {
    for (b, y) in blocks::<BlockQ3K>(src).iter().zip(out.chunks_exact_mut(QK_K)) {
        let d_all = f16_value(b.d);
        let mut m = 1u8;
        let mut is = 0;
        let mut o = 0;
        for half in 0..2 {
            let q = &b.qs[32 * half..][..32];
            for shift in [0, 2, 4, 6] {
                for part in 0..2 {
                    let dl = d_all * scale_q3k(is, &b.scales) as f32;
                    is += 1;
                    for l in 0..16 {
                        let k = l + 16 * part;
                        let high = if b.hmask[k] & m != 0 { 0 } else { 4 };
                        y[o] = dl * (((q[k] >> shift) & 3) as i32 - high) as f32;
                        o += 1;
                    }
                }
                m <<= 1;
            }
        }
    }
}

pub(super) fn dequantize_q4_k(src: &[u8], out: &mut [f32]) {
    for (b, y) in blocks::<BlockQ4K>(src).iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_value(b.d);
        let min = f16_value(b.dmin);
        for j in 0..QK_K / 64 {
            let q = &b.qs[32 * j..][..32];
            let (sc1, m1) = scale_min_k4(2 * j, &b.scales);
            let (sc2, m2) = scale_min_k4(2 * j + 1, &b.scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let y = &mut y[64 * j..][..64];
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0xf) as f32 - m1;
                y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

pub(super) fn dequantize_q5_k(src: &[u8], out: &mut [f32]) {
    for (b, y) in blocks::<BlockQ5K>(src).iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_value(b.d);
        let min = f16_value(b.dmin);
        let (mut u1, mut u2) = (1u8, 2u8);
        for j in 0..QK_K / 64 {
            let ql = &b.qs[32 * j..][..32];
            let (sc1, m1) = scale_min_k4(2 * j, &b.scales);
            let (sc2, m2) = scale_min_k4(2 * j + 1, &b.scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let y = &mut y[64 * j..][..64];
            for l in 0..32 {
                let h1 = if b.qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if b.qh[l] & u2 != 0 { 16 } else { 0 };
                y[l] = d1 * ((ql[l] & 0xf) + h1) as f32 - m1;
                y[l + 32] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
            }
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

pub(super) fn dequantize_q6_k(src: &[u8], out: &mut [f32]) {
    for (b, y) in blocks::<BlockQ6K>(src).iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_value(b.d);
        for n in 0..2 {
            let ql = &b.ql[64 * n..][..64];
            let qh = &b.qh[32 * n..][..32];
            let sc = &b.scales[8 * n..][..8];
            let y = &mut y[128 * n..][..128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                y[l] = d * sc[is] as f32 * q1 as f32;
                y[l + 32] = d * sc[is + 2] as f32 * q2 as f32;
                y[l + 64] = d * sc[is + 4] as f32 * q3 as f32;
                y[l + 96] = d * sc[is + 6] as f32 * q4 as f32;
            }
        }
    }
}

/// Pack 2-bit levels as Q2_K/Q3_K do: byte `l` of each 32-byte half holds
/// elements `l`, `l+32`, `l+64`, `l+96` of that 128-element half.
fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8; QK_K / 4]) {
    for j in (0..QK_K).step_by(128) {
        for k in 0..32 {
            qs[j / 4 + k] = l[j + k] | (l[j + k + 32] << 2) | (l[j + k + 64] << 4) | (l[j + k + 96] << 6);
        }
    }
}

fn sum_squares(x: &[f32]) -> f32 {
    let mut s = 0f32;
    for &v in x {
        s += v * v;
    }
    s
}

pub(super) fn quantize_q2_k(x: &[f32], weights: Option<&[f32]>, out: &mut [u8]) {
    for (i, (xb, y)) in x
        .chunks_exact(QK_K)
        .zip(blocks_mut::<BlockQ2K>(out).iter_mut())
        .enumerate()
    {
        let mut l = [0u8; QK_K];
        let mut laux = [0u8; 16];
        let mut mins = [0f32; QK_K / 16];
        let mut scales = [0f32; QK_K / 16];
        if let Some(qw) = weights {
            // quantize_row_q2_K_impl
            let qw = &qw[QK_K * i..][..QK_K];
            let sigma2 = sum_squares(xb) / QK_K as f32;
            let mut sw = [0f32; QK_K / 16];
            let sweep = Sweep {
                rmin: -0.9,
                rdelta: 0.05,
                nstep: 36,
                use_mad: false,
            };
            for j in 0..QK_K / 16 {
                let xs = &xb[16 * j..][..16];
                let mut w = [0f32; 16];
                for k in 0..16 {
                    w[k] = qw[16 * j + k] * (sigma2 + xs[k] * xs[k]).sqrt();
                }
                for &wk in &w {
                    sw[j] += wk;
                }
                (scales[j], mins[j]) = make_qkx_quants(3, xs, &w, &mut l[16 * j..][..16], &mut laux, &sweep);
            }
            let (mut ls, mut lm) = ([0u8; 16], [0u8; 16]);
            let dm = make_qp_quants(15, &scales, &mut ls, &sw);
            let mm = make_qp_quants(15, &mins, &mut lm, &sw);
            y.d = f16_bytes(dm);
            y.dmin = f16_bytes(mm);
            for j in 0..QK_K / 16 {
                y.scales[j] = ls[j] | (lm[j] << 4);
            }
        } else {
            // quantize_row_q2_K_ref
            let sweep = Sweep {
                rmin: -0.5,
                rdelta: 0.1,
                nstep: 15,
                use_mad: true,
            };
            let (mut max_scale, mut max_min) = (0f32, 0f32);
            for j in 0..QK_K / 16 {
                let xs = &xb[16 * j..][..16];
                let w: [f32; 16] = std::array::from_fn(|k| xs[k].abs());
                (scales[j], mins[j]) = make_qkx_quants(3, xs, &w, &mut l[16 * j..][..16], &mut laux, &sweep);
                max_scale = if scales[j] > max_scale { scales[j] } else { max_scale };
                max_min = if mins[j] > max_min { mins[j] } else { max_min };
            }
            if max_scale > 0.0 {
                let iscale = 15.0 / max_scale;
                for j in 0..QK_K / 16 {
                    y.scales[j] = nearest_int(iscale * scales[j]) as u8;
                }
                y.d = f16_bytes(max_scale / 15.0);
            } else {
                y.scales = [0; 16];
                y.d = f16_bytes(0.0);
            }
            if max_min > 0.0 {
                let iscale = 15.0 / max_min;
                for j in 0..QK_K / 16 {
                    y.scales[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
                }
                y.dmin = f16_bytes(max_min / 15.0);
            } else {
                y.dmin = f16_bytes(0.0);
            }
        }
        let (dall, mall) = (f16_value(y.d), f16_value(y.dmin));
        for j in 0..QK_K / 16 {
            let d = dall * (y.scales[j] & 0xf) as f32;
            if d == 0.0 {
                continue;
            }
            let dm = mall * (y.scales[j] >> 4) as f32;
            for ii in 0..16 {
                l[16 * j + ii] = nearest_int((xb[16 * j + ii] + dm) / d).clamp(0, 3) as u8;
            }
        }
        pack_2bit(&l, &mut y.qs);
    }
}

pub(super) fn quantize_q3_k(x: &[f32], weights: Option<&[f32]>, out: &mut [u8]) {
    for (i, (xb, y)) in x
        .chunks_exact(QK_K)
        .zip(blocks_mut::<BlockQ3K>(out).iter_mut())
        .enumerate()
    {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        y.scales = [0; 12];
        let pack_scale = |s: &mut [u8; 12], j: usize, v: i32| {
            if j < 8 {
                s[j] = (v & 0xf) as u8;
            } else {
                s[j - 8] |= ((v & 0xf) << 4) as u8;
            }
            s[j % 4 + 8] |= ((v >> 4) << (2 * (j / 4))) as u8;
        };
        if let Some(qw) = weights {
            // quantize_row_q3_K_impl
            let qw = &qw[QK_K * i..][..QK_K];
            let sigma2 = 2.0 * sum_squares(xb) / QK_K as f32;
            let mut sw = [0f32; QK_K / 16];
            for j in 0..QK_K / 16 {
                let xs = &xb[16 * j..][..16];
                let mut w = [0f32; 16];
                for k in 0..16 {
                    w[k] = qw[16 * j + k] * (sigma2 + xs[k] * xs[k]).sqrt();
                }
                let mut sumw = 0f32;
                for &wk in &w {
                    sumw += wk;
                }
                sw[j] = sumw;
                scales[j] = make_qx_quants(4, xs, &mut l[16 * j..][..16], Some(&w));
            }
            let mut ls = [0i8; 16];
            let d_block = make_qx_quants(32, &scales, &mut ls, Some(&sw));
            for j in 0..QK_K / 16 {
                pack_scale(&mut y.scales, j, ls[j] as i32);
            }
            y.d = f16_bytes(d_block);
        } else {
            // quantize_row_q3_K_ref
            let (mut max_scale, mut amax) = (0f32, 0f32);
            for j in 0..QK_K / 16 {
                scales[j] = make_q3_quants(4, &xb[16 * j..][..16], &mut l[16 * j..][..16]);
                let scale = scales[j].abs();
                if scale > amax {
                    amax = scale;
                    max_scale = scales[j];
                }
            }
            if max_scale != 0.0 {
                let iscale = -32.0 / max_scale;
                for j in 0..QK_K / 16 {
                    let q = (nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) as i32 + 32;
                    pack_scale(&mut y.scales, j, q);
                }
                y.d = f16_bytes(1.0 / iscale);
            } else {
                y.d = f16_bytes(0.0);
            }
        }
        let dall = f16_value(y.d);
        for j in 0..QK_K / 16 {
            let d = dall * scale_q3k(j, &y.scales) as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                l[16 * j + ii] = (nearest_int(xb[16 * j + ii] / d).clamp(-4, 3) + 4) as i8;
            }
        }
        y.hmask = [0; QK_K / 8];
        let mut lu = [0u8; QK_K];
        for j in 0..QK_K {
            let (m, hm) = (j % (QK_K / 8), 1u8 << (j / (QK_K / 8)));
            let mut v = l[j] as u8;
            if v > 3 {
                y.hmask[m] |= hm;
                v -= 4;
            }
            lu[j] = v;
        }
        pack_2bit(&lu, &mut y.qs);
    }
}

/// Q4_K and Q5_K differ only in `nmax` (15 or 31) and in how levels are packed.
struct Kx {
    nmax: i32,
    ref_sweep: Sweep,
}

const Q4K: Kx = Kx {
    nmax: 15,
    ref_sweep: Sweep {
        rmin: -1.0,
        rdelta: 0.1,
        nstep: 20,
        use_mad: false,
    },
};
const Q5K: Kx = Kx {
    nmax: 31,
    ref_sweep: Sweep {
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: false,
    },
};

/// Choose the 8 scales/mins of one Q4_K/Q5_K super-block, write `d`, `dmin` and the
/// packed `scales`, and return the final levels (`0..=nmax`) of the 256 elements.
fn quantize_kx_block(
    kx: &Kx,
    xb: &[f32],
    qw: Option<&[f32]>,
    d: &mut [u8; 2],
    dmin: &mut [u8; 2],
    packed: &mut [u8; 12],
) -> [u8; QK_K] {
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 32];
    let mut mins = [0f32; QK_K / 32];
    let mut scales = [0f32; QK_K / 32];
    let (ls, lm): ([u8; 8], [u8; 8]);
    if let Some(qw) = qw {
        // quantize_row_q4_K_impl / quantize_row_q5_K_impl
        let sigma2 = 2.0 * sum_squares(xb) / QK_K as f32;
        let mut sw = [0f32; QK_K / 32];
        let sweep = Sweep {
            rmin: -0.9,
            rdelta: 0.05,
            nstep: 36,
            use_mad: false,
        };
        for j in 0..QK_K / 32 {
            let xs = &xb[32 * j..][..32];
            let mut w = [0f32; 32];
            for k in 0..32 {
                w[k] = qw[32 * j + k] * (sigma2 + xs[k] * xs[k]).sqrt();
            }
            let mut sumw = 0f32;
            for &wk in &w {
                sumw += wk;
            }
            sw[j] = sumw;
            (scales[j], mins[j]) = make_qkx_quants(kx.nmax, xs, &w, &mut l[32 * j..][..32], &mut laux, &sweep);
        }
        let (mut a, mut b) = ([0u8; 8], [0u8; 8]);
        let d_block = make_qp_quants(63, &scales, &mut a, &sw);
        let m_block = make_qp_quants(63, &mins, &mut b, &sw);
        (ls, lm) = (a.map(|v| v.min(63)), b.map(|v| v.min(63)));
        *d = f16_bytes(d_block);
        *dmin = f16_bytes(m_block);
    } else {
        // quantize_row_q4_K_ref / quantize_row_q5_K_ref
        let (mut max_scale, mut max_min) = (0f32, 0f32);
        for j in 0..QK_K / 32 {
            let xs = &xb[32 * j..][..32];
            let av_x = (sum_squares(xs) / 32.0).sqrt();
            let w: [f32; 32] = std::array::from_fn(|k| av_x + xs[k].abs());
            (scales[j], mins[j]) = make_qkx_quants(kx.nmax, xs, &w, &mut l[32 * j..][..32], &mut laux, &kx.ref_sweep);
            max_scale = if scales[j] > max_scale { scales[j] } else { max_scale };
            max_min = if mins[j] > max_min { mins[j] } else { max_min };
        }
        let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
        let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
        ls = std::array::from_fn(|j| (nearest_int(inv_scale * scales[j]) as u8).min(63));
        lm = std::array::from_fn(|j| (nearest_int(inv_min * mins[j]) as u8).min(63));
        *d = f16_bytes(max_scale / 63.0);
        *dmin = f16_bytes(max_min / 63.0);
    }
    *packed = [0; 12];
    for j in 0..QK_K / 32 {
        if j < 4 {
            packed[j] = ls[j];
            packed[j + 4] = lm[j];
        } else {
            packed[j + 4] = (ls[j] & 0xf) | ((lm[j] & 0xf) << 4);
            packed[j - 4] |= (ls[j] >> 4) << 6;
            packed[j] |= (lm[j] >> 4) << 6;
        }
    }
    let (dall, mall) = (f16_value(*d), f16_value(*dmin));
    for j in 0..QK_K / 32 {
        let (sc, m) = scale_min_k4(j, packed);
        let dj = dall * sc as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = mall * m as f32;
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((xb[32 * j + ii] + dm) / dj).clamp(0, kx.nmax) as u8;
        }
    }
    l
}

pub(super) fn quantize_q4_k(x: &[f32], weights: Option<&[f32]>, out: &mut [u8]) {
    for (i, (xb, y)) in x
        .chunks_exact(QK_K)
        .zip(blocks_mut::<BlockQ4K>(out).iter_mut())
        .enumerate()
    {
        let qw = weights.map(|w| &w[QK_K * i..][..QK_K]);
        let l = quantize_kx_block(&Q4K, xb, qw, &mut y.d, &mut y.dmin, &mut y.scales);
        for j in 0..QK_K / 64 {
            for k in 0..32 {
                y.qs[32 * j + k] = l[64 * j + k] | (l[64 * j + k + 32] << 4);
            }
        }
    }
}

pub(super) fn quantize_q5_k(x: &[f32], weights: Option<&[f32]>, out: &mut [u8]) {
    for (i, (xb, y)) in x
        .chunks_exact(QK_K)
        .zip(blocks_mut::<BlockQ5K>(out).iter_mut())
        .enumerate()
    {
        let qw = weights.map(|w| &w[QK_K * i..][..QK_K]);
        let l = quantize_kx_block(&Q5K, xb, qw, &mut y.d, &mut y.dmin, &mut y.scales);
        y.qh = [0; QK_K / 8];
        let (mut m1, mut m2) = (1u8, 2u8);
        for n in 0..QK_K / 64 {
            for j in 0..32 {
                let mut l1 = l[64 * n + j];
                if l1 > 15 {
                    l1 -= 16;
                    y.qh[j] |= m1;
                }
                let mut l2 = l[64 * n + j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    y.qh[j] |= m2;
                }
                y.qs[32 * n + j] = l1 | (l2 << 4);
            }
            m1 <<= 2;
            m2 <<= 2;
        }
    }
}

pub(super) fn quantize_q6_k(x: &[f32], weights: Option<&[f32]>, out: &mut [u8]) {
    for (i, (xb, y)) in x
        .chunks_exact(QK_K)
        .zip(blocks_mut::<BlockQ6K>(out).iter_mut())
        .enumerate()
    {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
        for ib in 0..QK_K / 16 {
            // quantize_row_q6_K_impl passes the raw importance weights, _ref passes none.
            let qw = weights.map(|w| &w[QK_K * i + 16 * ib..][..16]);
            let scale = make_qx_quants(32, &xb[16 * ib..][..16], &mut l[16 * ib..][..16], qw);
            scales[ib] = scale;
            if scale.abs() > max_abs_scale {
                max_abs_scale = scale.abs();
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            *y = BlockQ6K::zeroed();
            continue;
        }
        let iscale = -128.0 / max_scale;
        y.d = f16_bytes(1.0 / iscale);
        for ib in 0..QK_K / 16 {
            y.scales[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
        }
        let dall = via_f16(1.0 / iscale);
        for j in 0..QK_K / 16 {
            let d = dall * y.scales[j] as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                l[16 * j + ii] = (nearest_int(xb[16 * j + ii] / d).clamp(-32, 31) + 32) as i8;
            }
        }
        let lu = l.map(|v| v as u8);
        for n in 0..2 {
            let (j, ql, qh) = (128 * n, &mut y.ql[64 * n..][..64], &mut y.qh[32 * n..][..32]);
            for k in 0..32 {
                let (q1, q2, q3, q4) = (lu[j + k], lu[j + k + 32], lu[j + k + 64], lu[j + k + 96]);
                ql[k] = (q1 & 0xf) | ((q3 & 0xf) << 4);
                ql[k + 32] = (q2 & 0xf) | ((q4 & 0xf) << 4);
                qh[k] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
            }
        }
    }
}
