//! The CPU backend: every operation written plainly, parallel over rows with rayon.
//! Weights stay packed; each matmul dequantizes one row at a time with the bit-exact
//! codecs (no dequantized copy of the model).

use crate::backend::{Backend, Heads, Rope};
use crate::error::{Error, Result};
use crate::gguf::TensorView;
use crate::quant::{self, BlockType};
use rayon::prelude::*;

/// Activations `[n][width]`.
#[derive(Clone, Debug)]
pub struct CpuTensor {
    pub data: Vec<f32>,
    pub n: usize,
    pub width: usize,
}

/// A packed weight matrix `[rows][k]`.
pub struct CpuMatrix {
    ty: BlockType,
    k: usize,
    rows: usize,
    bytes: Vec<u8>,
}

/// Keys and values for `n_ctx` positions, `[pos][width]` each.
pub struct CpuCache {
    k: Vec<f32>,
    v: Vec<f32>,
    width: usize,
    n_ctx: usize,
}

#[derive(Default)]
pub struct CpuBackend;

/// Dot product with 8 independent partial sums (vectorizes; the reference order for CPU).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn shape_err(op: &str, detail: String) -> Error {
    Error::Shape(format!("{op}: {detail}"))
}

impl Backend for CpuBackend {
    type Tensor = CpuTensor;
    type Matrix = CpuMatrix;
    type Cache = CpuCache;

    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn memory_report(&self) -> String {
        // Resident set size from /proc (Linux); elsewhere unknown.
        let rss = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
            .map(|pages| pages * 4096);
        rss.map_or("resident size unknown".into(), |b| {
            format!("{:.1} MiB resident", b as f64 / (1 << 20) as f64)
        })
    }

    fn matrix(&mut self, t: &TensorView) -> Result<CpuMatrix> {
        let k = t.info.row_len() as usize;
        Ok(CpuMatrix {
            ty: t.info.ty,
            k,
            rows: t.info.n_rows() as usize,
            bytes: t.bytes.to_vec(),
        })
    }

    fn cache(&mut self, n_ctx: usize, width: usize) -> Result<CpuCache> {
        Ok(CpuCache {
            k: vec![0.0; n_ctx * width],
            v: vec![0.0; n_ctx * width],
            width,
            n_ctx,
        })
    }

    fn embed(&mut self, table: &CpuMatrix, tokens: &[u32]) -> Result<CpuTensor> {
        let rb = table.ty.row_bytes(table.k)?;
        let mut data = vec![0f32; tokens.len() * table.k];
        for (row, &t) in data.chunks_mut(table.k).zip(tokens) {
            if t as usize >= table.rows {
                return Err(shape_err(
                    "embed",
                    format!("token {t} is outside the vocabulary of {}", table.rows),
                ));
            }
            quant::dequantize_row(table.ty, &table.bytes[t as usize * rb..][..rb], row)?;
        }
        Ok(CpuTensor {
            data,
            n: tokens.len(),
            width: table.k,
        })
    }

    fn rms_norm(&mut self, x: &CpuTensor, w: &CpuMatrix, eps: f32) -> Result<CpuTensor> {
        let mut weight = vec![0f32; w.k];
        quant::dequantize_row(w.ty, &w.bytes, &mut weight)?;
        if w.k != x.width {
            return Err(shape_err(
                "rms_norm",
                format!("weight of {} for rows of {}", w.k, x.width),
            ));
        }
        let mut out = x.clone();
        out.data.par_chunks_mut(x.width).for_each(|row| {
            let ms = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
            let scale = 1.0 / (ms + eps).sqrt();
            for (v, g) in row.iter_mut().zip(&weight) {
                *v = *v * scale * g;
            }
        });
        Ok(out)
    }

    fn matmul(&mut self, w: &CpuMatrix, x: &CpuTensor) -> Result<CpuTensor> {
        if x.width != w.k {
            return Err(shape_err(
                "matmul",
                format!("{} inputs for a matrix of rows of {}", x.width, w.k),
            ));
        }
        let rb = w.ty.row_bytes(w.k)?;
        let cols: Vec<Vec<f32>> = w
            .bytes
            .par_chunks(rb)
            .map_init(
                || vec![0f32; w.k],
                |buf, row| {
                    quant::dequantize_row(w.ty, row, buf)
                        .map(|_| x.data.chunks(x.width).map(|xt| dot(buf, xt)).collect())
                },
            )
            .collect::<Result<_>>()?;
        let mut data = vec![0f32; x.n * w.rows];
        for (r, col) in cols.iter().enumerate() {
            for (t, v) in col.iter().enumerate() {
                data[t * w.rows + r] = *v;
            }
        }
        Ok(CpuTensor {
            data,
            n: x.n,
            width: w.rows,
        })
    }

    fn matmul_add(&mut self, w: &CpuMatrix, x: &CpuTensor, acc: &mut CpuTensor) -> Result<()> {
        let y = self.matmul(w, x)?;
        if acc.data.len() != y.data.len() {
            return Err(shape_err("matmul_add", "accumulator and product differ in size".into()));
        }
        acc.data.iter_mut().zip(&y.data).for_each(|(a, b)| *a += b);
        Ok(())
    }

    fn rope(&mut self, x: &mut CpuTensor, rope: &Rope, pos0: usize) -> Result<()> {
        if x.width != rope.heads * rope.head_dim {
            return Err(shape_err(
                "rope",
                format!("rows of {} for {} heads of {}", x.width, rope.heads, rope.head_dim),
            ));
        }
        x.data.par_chunks_mut(x.width).enumerate().for_each(|(i, row)| {
            let pos = (pos0 + i) as f32 / rope.scale;
            for head in row.chunks_mut(rope.head_dim) {
                for p in 0..rope.dims / 2 {
                    let theta = pos * rope.theta.powf(-2.0 * p as f32 / rope.dims as f32);
                    let (sin, cos) = theta.sin_cos();
                    let (a, b) = (head[2 * p], head[2 * p + 1]);
                    head[2 * p] = a * cos - b * sin;
                    head[2 * p + 1] = a * sin + b * cos;
                }
            }
        });
        Ok(())
    }

    fn attention(
        &mut self,
        q: &CpuTensor,
        k: &CpuTensor,
        v: &CpuTensor,
        cache: &mut CpuCache,
        h: &Heads,
        pos0: usize,
    ) -> Result<CpuTensor> {
        let n = q.n;
        if pos0 + n > cache.n_ctx {
            return Err(shape_err(
                "attention",
                format!("positions {pos0}..{} exceed the context of {}", pos0 + n, cache.n_ctx),
            ));
        }
        if k.width != cache.width || v.width != cache.width || q.width != h.heads * h.head_dim {
            return Err(shape_err("attention", "q/k/v widths do not match the heads".into()));
        }
        cache.k[pos0 * cache.width..(pos0 + n) * cache.width].copy_from_slice(&k.data);
        cache.v[pos0 * cache.width..(pos0 + n) * cache.width].copy_from_slice(&v.data);
        let group = h.heads / h.kv_heads;
        let scale = 1.0 / (h.head_dim as f32).sqrt();
        let (ck, cv, w) = (&cache.k, &cache.v, cache.width);
        let mut out = vec![0f32; n * q.width];
        out.par_chunks_mut(h.head_dim).enumerate().for_each(|(idx, o)| {
            let (i, head) = (idx / h.heads, idx % h.heads);
            let kvh = head / group;
            let qv = &q.data[i * q.width + head * h.head_dim..][..h.head_dim];
            let len = pos0 + i + 1;
            let scores: Vec<f32> = (0..len)
                .map(|p| dot(qv, &ck[p * w + kvh * h.head_dim..][..h.head_dim]) * scale)
                .collect();
            let max = scores.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let e: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f32 = e.iter().sum();
            for (p, ep) in e.iter().enumerate() {
                let vv = &cv[p * w + kvh * h.head_dim..][..h.head_dim];
                for (oj, vj) in o.iter_mut().zip(vv) {
                    *oj += ep / sum * vj;
                }
            }
        });
        Ok(CpuTensor {
            data: out,
            n,
            width: q.width,
        })
    }

    fn swiglu(&mut self, gate: &CpuTensor, up: &CpuTensor) -> Result<CpuTensor> {
        if gate.data.len() != up.data.len() {
            return Err(shape_err("swiglu", "gate and up differ in size".into()));
        }
        let data = gate
            .data
            .par_iter()
            .zip(&up.data)
            .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
            .collect();
        Ok(CpuTensor {
            data,
            n: gate.n,
            width: gate.width,
        })
    }

    fn last_row(&mut self, x: &CpuTensor) -> Result<CpuTensor> {
        Ok(CpuTensor {
            data: x.data[(x.n - 1) * x.width..].to_vec(),
            n: 1,
            width: x.width,
        })
    }

    fn to_host(&mut self, x: &CpuTensor) -> Result<Vec<f32>> {
        Ok(x.data.clone())
    }
}
