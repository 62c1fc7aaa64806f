//! Kernel benchmarks, measured on the adapter in use: the copy-kernel bandwidth baseline,
//! matvec weight-read bandwidth per format, and matmul GFLOP/s. Used by
//! `lowbit bench kernels` and `benches/kernels.rs`.
//!
//! Times are wall-clock around `reps` dispatches recorded into one command buffer,
//! submitted and waited for; the best of `iters` such batches is kept. Weights are
//! random bytes with finite f16 scales: decode cost does not depend on the values.

use super::buffers::{GpuWeights, Tracked};
use super::context::GpuContext;
use super::matvec::{Activations, Output};
use super::pipelines::whole_pages;
use super::recorder::Recorder;
use crate::error::Result;
use crate::quant::BlockType;
use std::time::Instant;

/// One benchmark row.
#[derive(Clone, Debug)]
pub struct KernelResult {
    pub format: BlockType,
    pub rows: usize,
    pub k: usize,
    pub weight_bytes: u64,
    /// Seconds per matvec (one column).
    pub matvec_s: f64,
    /// Weight bytes read per second by matvec, in GB/s (10^9).
    pub matvec_gbps: f64,
    /// Seconds per matmul of `matmul_cols` columns, when measured.
    pub matmul_s: Option<f64>,
    pub matmul_cols: usize,
}

impl KernelResult {
    pub fn matmul_gflops(&self) -> Option<f64> {
        self.matmul_s
            .map(|s| 2.0 * self.rows as f64 * self.k as f64 * self.matmul_cols as f64 / s / 1e9)
    }
}

/// Best time of `iters` batches of `reps` recorded operations.
fn time_best(
    ctx: &GpuContext,
    iters: usize,
    reps: usize,
    mut record: impl FnMut(&mut Recorder) -> Result<()>,
) -> Result<f64> {
    let mut best = f64::INFINITY;
    for i in 0..=iters {
        let mut rec = ctx.recorder();
        for _ in 0..reps {
            record(&mut rec)?;
        }
        let start = Instant::now();
        ctx.queue.submit([rec.finish()]);
        ctx.wait()?;
        // The first batch warms up pipelines and caches.
        if i > 0 {
            best = best.min(start.elapsed().as_secs_f64() / reps as f64);
        }
    }
    Ok(best)
}

/// Bandwidth of the plain copy kernel over a buffer of `bytes` (at most one storage
/// binding), counting bytes read plus bytes written, in GB/s.
pub fn copy_bandwidth(ctx: &GpuContext, bytes: u64, iters: usize, reps: usize) -> Result<f64> {
    let bytes = bytes.min(ctx.max_binding_bytes) / 16 * 16;
    let src = ctx.alloc("copy src", bytes, wgpu::BufferUsages::STORAGE)?;
    let dst = ctx.alloc("copy dst", bytes, wgpu::BufferUsages::STORAGE)?;
    let t = time_best(ctx, iters, reps, |rec| ctx.copy_kernel(rec, &src.buffer, &dst.buffer))?;
    Ok(2.0 * bytes as f64 / t / 1e9)
}

/// Random blocks of `ty` with finite f16 scales everywhere (every even byte pair is
/// replaced by a small f16 wherever a scale may sit, i.e. all of them).
fn random_weights(ty: BlockType, rows: usize, k: usize) -> Result<Vec<u8>> {
    let n = ty.row_bytes(k)? * rows;
    let mut s = 0x853c_49e6_748f_ea9bu64;
    Ok((0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            // 0x1c00..0x1fff as f16 is about 0.004..0.008: finite wherever it lands.
            if i % 2 == 1 { 0x1c | (s as u8 & 3) } else { s as u8 }
        })
        .collect())
}

/// `n` f32 activations in whole pages with `UNIFORM` usage, as the GPU backend allocates
/// them, so the decode matvec takes the binding it takes in inference.
fn activations(ctx: &GpuContext, n: usize) -> Result<Tracked> {
    let padded = whole_pages(n as u64 * 4) as usize / 4;
    let x: Vec<f32> = (0..padded).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM;
    ctx.upload("bench x", bytemuck::cast_slice(&x), usage)
}

/// matvec (1 column) and, when `matmul_cols > 0`, matmul of one `rows` x `k` matrix.
pub fn bench_format(
    ctx: &GpuContext,
    ty: BlockType,
    rows: usize,
    k: usize,
    matmul_cols: usize,
    iters: usize,
) -> Result<KernelResult> {
    let packed = random_weights(ty, rows, k)?;
    let w = GpuWeights::upload(ctx, "bench w", ty, k, &packed)?;
    let cols = matmul_cols.max(1);
    let xb = activations(ctx, cols * k)?;
    let y = ctx.alloc("bench y", (cols * rows * 4) as u64, wgpu::BufferUsages::STORAGE)?;
    let one = Activations {
        buffer: &xb.buffer,
        cols: 1,
        stride: k,
        norm: None,
    };
    let matvec_s = time_best(ctx, iters, 10, |rec| {
        w.matvec(ctx, rec, &one, &Output::store(&y.buffer, rows))
    })?;
    let matmul_s = if matmul_cols > 0 {
        let many = Activations {
            buffer: &xb.buffer,
            cols: matmul_cols,
            stride: k,
            norm: None,
        };
        Some(time_best(ctx, iters.min(3), 1, |rec| {
            w.matmul(ctx, rec, &many, &Output::store(&y.buffer, rows))
        })?)
    } else {
        None
    };
    Ok(KernelResult {
        format: ty,
        rows,
        k,
        weight_bytes: packed.len() as u64,
        matvec_s,
        matvec_gbps: packed.len() as f64 / matvec_s / 1e9,
        matmul_s,
        matmul_cols,
    })
}
