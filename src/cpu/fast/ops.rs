//! The fast backend's elementwise and attention operations, on the pool. They compute
//! what the reference's do (`crate::cpu::backend`), in the same f32 arithmetic except
//! where noted: RoPE's sines and cosines are computed once per row and shared by all its
//! heads, and attention sums in the reference's order per head (its weights normalized,
//! `e / Σe`, before the values are summed, as the reference's are).

use super::{Fast, Out};
use crate::backend::{Heads, Rope};
use crate::cpu::backend::swiglu;
use crate::quant::dot::{Simd, dot_f32};

/// Elements below which an operation runs on the caller alone (waking the workers costs
/// more than it saves).
const SERIAL: usize = 1 << 14;

impl Fast {
    /// Rows of `width` from `x`, processed by `f(row index, row)` on the pool when large
    /// (operation `op` in profiles).
    fn rows_mut(&self, op: &str, x: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
        let n = x.len() / width.max(1);
        self.timed(
            || op.to_string(),
            || {
                if x.len() < SERIAL {
                    x.chunks_mut(width.max(1)).enumerate().for_each(|(i, r)| f(i, r));
                    return;
                }
                let out = Out(x.as_mut_ptr());
                self.pool
                    .for_each_chunk(n, n.div_ceil(4 * self.pool.threads()), |rows| {
                        for i in rows {
                            // SAFETY: row i is in bounds and this chunk's alone.
                            let row = unsafe { std::slice::from_raw_parts_mut(out.at(i * width), width) };
                            f(i, row);
                        }
                    });
            },
        )
    }

    /// `out[i] = x[i][..len] / rms · w` for rows of `width` (`out` has rows of `len`).
    pub fn rms_norm(&self, x: &[f32], width: usize, w: &[f32], eps: f32, out: &mut [f32]) {
        let len = w.len();
        self.rows_mut("rms_norm", out, len, |i, o| {
            let row = &x[i * width..][..len];
            let ms = row.iter().map(|v| v * v).sum::<f32>() / len as f32;
            let scale = 1.0 / (ms + eps).sqrt();
            for ((o, v), g) in o.iter_mut().zip(row).zip(w) {
                *o = v * scale * g;
            }
        });
    }

    /// Rotate rows of `width` in place, row i at position `pos0 + i`.
    pub fn rope(&self, x: &mut [f32], width: usize, rope: &Rope, pos0: usize) {
        let span = rope.heads * rope.head_dim;
        self.rows_mut("rope", x, width, |i, row| {
            let pos = (pos0 + i) as f32;
            let rot: Vec<(f32, f32)> = rope.freqs.iter().map(|f| (pos * f).sin_cos()).collect();
            for head in row[..span].chunks_mut(rope.head_dim) {
                let head = &mut head[rope.offset..];
                for (p, &(sin, cos)) in rot.iter().enumerate() {
                    let (a, b) = (head[2 * p], head[2 * p + 1]);
                    head[2 * p] = (a * cos - b * sin) * rope.mscale;
                    head[2 * p + 1] = (a * sin + b * cos) * rope.mscale;
                }
            }
        });
    }

    /// `silu(gate) ⊙ up` into `out`, for rows whose gate and up values `split(i)` gives.
    pub fn swiglu_rows<'a>(
        &self,
        out: &mut [f32],
        width: usize,
        split: impl Fn(usize) -> (&'a [f32], &'a [f32]) + Sync,
    ) {
        self.rows_mut("swiglu", out, width, |i, o| {
            let (gate, up) = split(i);
            for ((o, g), u) in o.iter_mut().zip(gate).zip(up) {
                *o = swiglu(*g, *u);
            }
        });
    }

    /// Causal attention of `q` (rows of `q_width`, heads of `h.k_dim`) over the cached
    /// keys `ck` (rows of `kw`) and values (`value(p, kv_head)`), row i seeing positions
    /// `0..=pos0 + i`. `out` is `[n][heads * v_dim]`. One work item is one row's group of
    /// query heads that share a KV head, so each cached key and value is read once for
    /// the whole group (all heads at once for MLA's single latent head).
    #[allow(clippy::too_many_arguments)]
    pub fn attention<'a>(
        &self,
        q: &[f32],
        q_width: usize,
        ck: &[f32],
        kw: usize,
        value: impl Fn(usize, usize) -> &'a [f32] + Sync,
        h: &Heads,
        pos0: usize,
        out: &mut [f32],
    ) {
        let n = q.len() / q_width.max(1);
        let group = h.heads / h.kv_heads;
        let items = n * h.kv_heads;
        let work = n * h.heads * (pos0 + n) * (h.k_dim + h.v_dim);
        let chunk = if work < SERIAL { items } else { 1 };
        let o = Out(out.as_mut_ptr());
        let simd = self.simd;
        self.timed(
            || "attention".into(),
            || {
                self.pool.for_each_chunk(items, chunk, |range| {
                    let mut scores = Vec::with_capacity(group * (pos0 + n));
                    for idx in range {
                        let (i, kvh) = (idx / h.kv_heads, idx % h.kv_heads);
                        let qs = &q[i * q_width + kvh * group * h.k_dim..][..group * h.k_dim];
                        let key = |p: usize| &ck[p * kw + kvh * h.k_dim..][..h.k_dim];
                        // SAFETY: the group's heads' outputs are in bounds and this item's alone.
                        let dst =
                            unsafe { std::slice::from_raw_parts_mut(o.at(idx * group * h.v_dim), group * h.v_dim) };
                        let group = Group {
                            qs,
                            len: pos0 + i + 1,
                            h,
                        };
                        group.attend(simd, key, |p| value(p, kvh), &mut scores, dst);
                    }
                })
            },
        );
    }
}

/// The query heads of one row that share a KV head, over positions `0..len`.
struct Group<'q> {
    /// The heads' queries, `[group][k_dim]`.
    qs: &'q [f32],
    len: usize,
    h: &'q Heads,
}

impl Group<'_> {
    /// Each head's softmax-weighted sum of the values into `dst` (`[group][v_dim]`),
    /// compiled for AVX2 and FMA where `simd` has them (the same arithmetic: Rust does
    /// not fuse a multiply and an add on its own, so the results are the same bits).
    fn attend<'a>(
        &self,
        simd: Simd,
        key: impl Fn(usize) -> &'a [f32],
        value: impl Fn(usize) -> &'a [f32],
        scores: &mut Vec<f32>,
        dst: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if simd >= Simd::Avx2 {
            // SAFETY: the level was detected at start-up.
            return unsafe { self.attend_avx2(key, value, scores, dst) };
        }
        let _ = simd;
        self.attend_body(key, value, scores, dst)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn attend_avx2<'a>(
        &self,
        key: impl Fn(usize) -> &'a [f32],
        value: impl Fn(usize) -> &'a [f32],
        scores: &mut Vec<f32>,
        dst: &mut [f32],
    ) {
        self.attend_body(key, value, scores, dst)
    }

    /// Scores `[group][len]` (one read of each key for all heads), each head's softmax
    /// in the reference's order, then the weighted values (one read of each value).
    #[inline(always)]
    fn attend_body<'a>(
        &self,
        key: impl Fn(usize) -> &'a [f32],
        value: impl Fn(usize) -> &'a [f32],
        scores: &mut Vec<f32>,
        dst: &mut [f32],
    ) {
        let (len, h) = (self.len, self.h);
        let heads = self.qs.chunks_exact(h.k_dim);
        scores.clear();
        scores.resize(heads.len() * len, 0.0);
        for p in 0..len {
            let k = key(p);
            for (g, qv) in heads.clone().enumerate() {
                scores[g * len + p] = dot_f32(qv, k) * h.scale;
            }
        }
        for s in scores.chunks_exact_mut(len) {
            let max = s.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let mut sum = 0f32;
            for e in s.iter_mut() {
                *e = (*e - max).exp();
                sum += *e;
            }
            s.iter_mut().for_each(|e| *e /= sum);
        }
        dst.fill(0.0);
        for p in 0..len {
            let v = value(p);
            for (g, d) in dst.chunks_exact_mut(h.v_dim).enumerate() {
                let w = scores[g * len + p];
                for (d, x) in d.iter_mut().zip(v) {
                    *d += w * x;
                }
            }
        }
    }
}
