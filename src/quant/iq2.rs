//! IQ2_XXS (2.0625 bpw): 8-element groups on the 256-entry `iq2xxs_grid` lattice,
//! with 7 explicit sign bits per group (the 8th makes the parity even) and a 4-bit
//! scale per 32 elements.
//!
//! Mirrors `quantize_row_iq2_xxs_impl` and `dequantize_row_iq2_xxs` in
//! `ggml/src/ggml-quants.c`.
//!
//! Block layout: `d` (f16), then per 32-element sub-block two u32 words: the first
//! holds four 8-bit grid indices, the second four 7-bit sign fields (bits `7k..7k+7`)
//! and the 4-bit scale `s` in bits 28..32; the sub-block scale is `d * (0.5 + s) / 4`.

use super::QK_K;
use super::grids::{IQ2XXS_GRID, Lattice, Place, ksigns_iq2xs};
use super::search::{GROUP_MAX_EPS, f16_bytes, f16_value, make_qp_quants, nearest_int};
use bytemuck::{Pod, Zeroable};

/// `block_iq2_xxs`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockIq2Xxs {
    pub d: [u8; 2],
    pub qs: [u8; QK_K / 4],
}
const _: () = assert!(std::mem::size_of::<BlockIq2Xxs>() == 66);

pub(super) fn dequantize_iq2_xxs(src: &[u8], out: &mut [f32]) {
    let blocks: &[BlockIq2Xxs] = bytemuck::cast_slice(src);
    for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_value(b.d);
        for ib32 in 0..QK_K / 32 {
            let w = &b.qs[8 * ib32..][..8];
            let aux1 = u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
            let db = d * (0.5 + (aux1 >> 28) as f32) * 0.25;
            for l in 0..4 {
                let grid = IQ2XXS_GRID[w[l] as usize].to_le_bytes();
                let signs = ksigns_iq2xs((aux1 >> (7 * l)) & 127);
                let y = &mut y[32 * ib32 + 8 * l..][..8];
                for j in 0..8 {
                    let sign = if signs & (1 << j) != 0 { -1.0 } else { 1.0 };
                    y[j] = db * grid[j] as f32 * sign;
                }
            }
        }
    }
}

/// `iq2_find_best_neighbour`: the listed entry nearest to `xval / scale` under `weight`;
/// writes its levels to `l` and returns its index.
fn best_neighbour(lattice: &Lattice, list: &[u16], xval: &[f32], weight: &[f32], scale: f32, l: &mut [i8]) -> usize {
    let mut best_d2 = f32::MAX;
    let mut best = list[0] as usize;
    for &j in list {
        let pg = &lattice.grid[j as usize];
        let mut d2 = 0f32;
        for i in 0..8 {
            let diff = scale * pg[i] as f32 - xval[i];
            d2 += weight[i] * diff * diff;
        }
        if d2 < best_d2 {
            best_d2 = d2;
            best = j as usize;
        }
    }
    for i in 0..8 {
        l[i] = ((lattice.grid[best][i] - 1) / 2) as i8;
    }
    best
}

/// Snap the 8 levels in `l` to the lattice (keeping them if already on it) and return
/// the grid index. Levels outside `0..=2`, which only non-finite input can produce,
/// are clamped first.
fn snap(lattice: &Lattice, xval: &[f32], waux: &[f32], scale: f32, l: &mut [i8]) -> usize {
    let u = (0..8).fold(0usize, |acc, i| acc | (l[i].clamp(0, 2) as usize) << (2 * i));
    match lattice.place(u) {
        Place::OnGrid(j) => j,
        Place::Neighbours(list) => best_neighbour(lattice, list, xval, waux, scale, l),
    }
}

pub(super) fn quantize_iq2_xxs(x: &[f32], weights: Option<&[f32]>, out: &mut [u8]) {
    const K_MAX_Q: i32 = 3;
    let lattice = Lattice::iq2xxs();
    let blocks: &mut [BlockIq2Xxs] = bytemuck::cast_slice_mut(out);
    for (ibl, (xbl, y)) in x.chunks_exact(QK_K).zip(blocks.iter_mut()).enumerate() {
        let mut q2 = [0u32; 2 * QK_K / 32];
        let mut scales = [0f32; QK_K / 32];
        let mut max_scale = 0f32;
        let mut sumx2 = 0f32;
        for &v in xbl {
            sumx2 += v * v;
        }
        let sigma2 = sumx2 / QK_K as f32;
        for ib in 0..QK_K / 32 {
            let xb = &xbl[32 * ib..][..32];
            let mut weight = [0f32; 32];
            for i in 0..32 {
                let qw = weights.map_or(1.0, |w| w[QK_K * ibl + 32 * ib + i]);
                weight[i] = qw * (sigma2 + xb[i] * xb[i]).sqrt();
            }
            let waux = weight.map(f32::sqrt);
            let mut xval = [0f32; 32];
            let mut block_signs = [0u8; 4];
            for k in 0..4 {
                let mut nflip = 0;
                let mut s = 0u8;
                for i in 0..8 {
                    if xb[8 * k + i] >= 0.0 {
                        xval[8 * k + i] = xb[8 * k + i];
                    } else {
                        xval[8 * k + i] = -xb[8 * k + i];
                        nflip += 1;
                        s |= 1 << i;
                    }
                }
                if nflip % 2 == 1 {
                    let mut imin = 0;
                    let mut min = weight[8 * k] * xb[8 * k] * xb[8 * k];
                    for i in 1..8 {
                        let ax = weight[8 * k + i] * xb[8 * k + i] * xb[8 * k + i];
                        if ax < min {
                            min = ax;
                            imin = i;
                        }
                    }
                    xval[8 * k + imin] = -xval[8 * k + imin];
                    s ^= 1 << imin;
                }
                block_signs[k] = s & 127;
            }
            let max = xval.iter().skip(1).fold(xval[0], |a, &v| if a > v { a } else { v });
            if max < GROUP_MAX_EPS {
                continue;
            }
            let mut lq = [0u8; 32];
            let mut scale = make_qp_quants(K_MAX_Q + 1, &xval, &mut lq, &weight);
            let mut l = lq.map(|v| v as i8);
            let eff_max = scale * K_MAX_Q as f32;
            if eff_max <= 0.0 {
                continue;
            }
            let mut best = 0f32;
            let mut laux = [0i8; 32];
            for is in -6..=6 {
                let id = (2.0 * K_MAX_Q as f32 - 1.0 + is as f32 * 0.1) / eff_max;
                let this_scale = 1.0 / id;
                for k in 0..4 {
                    for i in 0..8 {
                        let q = nearest_int(0.5 * (id * xval[8 * k + i] - 1.0));
                        laux[8 * k + i] = q.clamp(0, K_MAX_Q - 1) as i8;
                    }
                    snap(
                        lattice,
                        &xval[8 * k..][..8],
                        &waux[8 * k..][..8],
                        this_scale,
                        &mut laux[8 * k..][..8],
                    );
                }
                let (mut sumqx, mut sumq2) = (0f32, 0f32);
                for i in 0..32 {
                    let w = weight[i];
                    let q = (2 * laux[i] as i32 + 1) as f32;
                    sumqx += w * xval[i] * q;
                    sumq2 += w * q * q;
                }
                if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                    scale = sumqx / sumq2;
                    best = scale * sumqx;
                    l = laux;
                }
            }
            if scale > 0.0 {
                let id = 1.0 / scale;
                for k in 0..4 {
                    for i in 0..8 {
                        let q = nearest_int(0.5 * (id * xval[8 * k + i] - 1.0));
                        l[8 * k + i] = q.clamp(0, K_MAX_Q - 1) as i8;
                    }
                    snap(
                        lattice,
                        &xval[8 * k..][..8],
                        &waux[8 * k..][..8],
                        scale,
                        &mut l[8 * k..][..8],
                    );
                }
                let (mut sumqx, mut sumq2) = (0f32, 0f32);
                for i in 0..32 {
                    let w = weight[i];
                    let q = (2 * l[i] as i32 + 1) as f32;
                    sumqx += w * xval[i] * q;
                    sumq2 += w * q * q;
                }
                if sumq2 > 0.0 {
                    scale = sumqx / sumq2;
                }
            }
            if scale < 0.0 {
                scale = -scale;
                for s in block_signs.iter_mut() {
                    *s = !*s & 127;
                }
            }
            for k in 0..4 {
                let grid_index = snap(
                    lattice,
                    &xval[8 * k..][..8],
                    &waux[8 * k..][..8],
                    scale,
                    &mut l[8 * k..][..8],
                );
                q2[2 * ib] |= (grid_index as u32) << (8 * k);
                q2[2 * ib + 1] |= (block_signs[k] as u32) << (7 * k);
            }
            scales[ib] = scale;
            max_scale = max_scale.max(scale);
        }
        if max_scale == 0.0 {
            *y = BlockIq2Xxs::zeroed();
            continue;
        }
        let d = max_scale / 31.0;
        y.d = f16_bytes(d);
        let id = 1.0 / d;
        for ib in 0..QK_K / 32 {
            let l = nearest_int(0.5 * (id * scales[ib] - 1.0)).clamp(0, 15);
            q2[2 * ib + 1] |= (l as u32) << 28;
        }
        for (chunk, word) in y.qs.chunks_exact_mut(4).zip(q2) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
    }
}
