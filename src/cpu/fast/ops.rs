//! The fast backend's elementwise and attention operations, on the pool. They compute
//! what the reference's do (`crate::cpu::backend`), in the same f32 arithmetic except
//! where noted: RoPE's sines and cosines are computed once per row and shared by all its
//! heads, and attention sums in the reference's order per head.

use super::{Fast, Out};
use crate::backend::{Heads, Rope};

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
                *o = g / (1.0 + (-g).exp()) * u;
            }
        });
    }

    /// Causal attention of `q` (rows of `q_width`, heads of `h.k_dim`) over the cached
    /// keys `ck` (rows of `kw`) and values (`value(p, kv_head)`), row i seeing positions
    /// `0..=pos0 + i`. `out` is `[n][heads * v_dim]`.
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
        let items = n * h.heads;
        let work = items * (pos0 + n) * (h.k_dim + h.v_dim);
        let chunk = if work < SERIAL { items } else { 1 };
        let o = Out(out.as_mut_ptr());
        self.timed(
            || "attention".into(),
            || {
                self.pool.for_each_chunk(items, chunk, |range| {
                    let mut scores = Vec::with_capacity(pos0 + n);
                    for idx in range {
                        let (i, head) = (idx / h.heads, idx % h.heads);
                        let kvh = head / group;
                        let qv = &q[i * q_width + head * h.k_dim..][..h.k_dim];
                        let len = pos0 + i + 1;
                        scores.clear();
                        scores.extend((0..len).map(|p| {
                            crate::quant::dot::dot_f32(qv, &ck[p * kw + kvh * h.k_dim..][..h.k_dim]) * h.scale
                        }));
                        let max = scores.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                        let mut sum = 0f32;
                        for s in scores.iter_mut() {
                            *s = (*s - max).exp();
                            sum += *s;
                        }
                        // SAFETY: head `idx`'s v_dim outputs are in bounds and this item's alone.
                        let dst = unsafe { std::slice::from_raw_parts_mut(o.at(idx * h.v_dim), h.v_dim) };
                        dst.fill(0.0);
                        for (p, e) in scores.iter().enumerate() {
                            let wgt = e / sum;
                            for (d, v) in dst.iter_mut().zip(value(p, kvh)) {
                                *d += wgt * v;
                            }
                        }
                    }
                })
            },
        );
    }
}
