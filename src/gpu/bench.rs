//! Kernel benchmarks, measured on the adapter in use: copy and read-only bandwidth
//! baselines, matvec weight-read bandwidth per format, and matmul GFLOP/s. Used by
//! `lowbit bench kernels` and `benches/kernels.rs`.
//!
//! Where the device has `TIMESTAMP_QUERY`, every operation runs in a compute pass of
//! its own whose timestamps bound it, and the median over `iters` batches of `reps`
//! operations is kept ([`Clock::Gpu`]): fence latency and host encoding stay out. Else
//! the time is the wall clock around a batch, submitted and waited for, best of `iters`
//! ([`Clock::Wall`]). Matvec weights rotate over copies that together pass
//! [`ROTATE_BYTES`], so that repeated dispatches read DRAM, not a cache that holds one
//! matrix. Weights are random bytes with finite f16 scales: decode cost does not depend
//! on the values.

use super::buffers::{GpuWeights, Tracked};
use super::context::GpuContext;
use super::matvec::{Activations, Output};
use super::pipelines::{Kernel, whole_pages};
use super::recorder::Recorder;
use crate::error::Result;
use crate::quant::BlockType;
use std::time::Instant;

/// Bytes the matvec benchmark's weight copies pass together: 4x a 64 MiB last-level
/// cache (an H200's L2 is 60 MB, lavapipe's host L3 is smaller).
pub const ROTATE_BYTES: u64 = 256 << 20;

/// How a time was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Device timestamps around each operation, median.
    Gpu,
    /// Wall clock around a submitted and awaited batch, best per operation.
    Wall,
}

impl Clock {
    /// The clock `ctx` offers.
    pub fn of(ctx: &GpuContext) -> Self {
        if ctx.timestamps { Clock::Gpu } else { Clock::Wall }
    }

    /// `gpu` or `wall` (the CSV's `clock` column).
    pub fn name(self) -> &'static str {
        match self {
            Clock::Gpu => "gpu",
            Clock::Wall => "wall",
        }
    }

    /// How the times were taken, for a reader.
    pub fn describe(self) -> &'static str {
        match self {
            Clock::Gpu => "GPU timestamps around each operation, median",
            Clock::Wall => "wall clock around a batch, best (the device has no timestamp queries)",
        }
    }
}

/// One benchmark row: one kernel over one `rows` x `k` matrix for `cols` columns.
#[derive(Clone, Debug)]
pub struct KernelResult {
    /// [`Kernel::Matvec`], [`Kernel::MatvecId`] or [`Kernel::Matmul`].
    pub kernel: Kernel,
    pub format: BlockType,
    pub rows: usize,
    pub k: usize,
    pub cols: usize,
    pub weight_bytes: u64,
    /// Seconds per operation.
    pub seconds: f64,
    /// Weight copies the operation rotated over.
    pub copies: usize,
}

impl KernelResult {
    /// Weight bytes read per second, in GB/s (10^9).
    pub fn gbps(&self) -> f64 {
        self.weight_bytes as f64 / self.seconds / 1e9
    }

    /// Multiply-adds per second x 2, in GFLOP/s (for `matvec_id`, over every pair).
    pub fn gflops(&self) -> f64 {
        let products = if self.kernel == Kernel::MatvecId {
            self.cols * ROUTED_USED
        } else {
            self.cols
        };
        2.0 * self.rows as f64 * self.k as f64 * products as f64 / self.seconds / 1e9
    }
}

/// Seconds per operation over `iters` batches of `reps` operations (`record(rec, i)`
/// records operation i of a batch), by [`Clock::of`] `ctx`; a first batch warms up.
fn time_op(
    ctx: &GpuContext,
    iters: usize,
    reps: usize,
    mut record: impl FnMut(&mut Recorder, usize) -> Result<()>,
) -> Result<f64> {
    let stamps = (2 * reps) as u32;
    let queries = ctx.timestamps.then(|| {
        ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("bench"),
            ty: wgpu::QueryType::Timestamp,
            count: stamps,
        })
    });
    let resolved = match queries {
        Some(_) => Some(ctx.alloc(
            "bench timestamps",
            8 * stamps as u64,
            wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        )?),
        None => None,
    };
    let mut samples = Vec::new();
    let mut best = f64::INFINITY;
    for batch in 0..=iters {
        let mut rec = ctx.recorder();
        for i in 0..reps {
            if let Some(q) = &queries {
                rec.timed_pass(q, 2 * i as u32, 2 * i as u32 + 1);
            }
            record(&mut rec, i)?;
        }
        if let (Some(q), Some(r)) = (&queries, &resolved) {
            rec.encoder().resolve_query_set(q, 0..stamps, &r.buffer, 0);
        }
        let start = Instant::now();
        ctx.queue.submit([rec.finish()]);
        ctx.wait()?;
        let elapsed = start.elapsed().as_secs_f64() / reps as f64;
        if batch == 0 {
            continue;
        }
        best = best.min(elapsed);
        if let Some(r) = &resolved {
            let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&ctx.read_back(&r.buffer, 8 * stamps as u64)?);
            let period = ctx.queue.get_timestamp_period() as f64 * 1e-9;
            samples.extend(ticks.chunks_exact(2).map(|t| t[1].saturating_sub(t[0]) as f64 * period));
        }
    }
    if samples.is_empty() {
        return Ok(best);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

/// The bandwidth baselines over a buffer of `bytes` (at most one storage binding), in
/// GB/s: the copy kernel (bytes read plus bytes written) and the read-only kernel.
pub fn baselines(ctx: &GpuContext, bytes: u64, iters: usize, reps: usize) -> Result<(f64, f64)> {
    let bytes = bytes.min(ctx.max_binding_bytes) / 16 * 16;
    let src = ctx.alloc("copy src", bytes, wgpu::BufferUsages::STORAGE)?;
    let dst = ctx.alloc("copy dst", bytes, wgpu::BufferUsages::STORAGE)?;
    let copy = time_op(ctx, iters, reps, |rec, _| {
        ctx.copy_kernel(rec, &src.buffer, &dst.buffer)
    })?;
    let read = time_op(ctx, iters, reps, |rec, _| {
        ctx.read_kernel(rec, &src.buffer, &dst.buffer)
    })?;
    Ok((2.0 * bytes as f64 / copy / 1e9, bytes as f64 / read / 1e9))
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

/// `kernel` (`matvec`, 1..=8 columns; `matmul`, any number; `matvec_id`, routed
/// experts, see `bench_routed`) over one `rows` x `k` matrix of `ty` for `cols`
/// columns. matvec rotates over weight copies that pass
/// [`ROTATE_BYTES`] together (at most 512 copies); matmul reuses one matrix, since it
/// reads its weights once per column tile.
pub fn bench_kernel(
    ctx: &GpuContext,
    kernel: Kernel,
    ty: BlockType,
    (rows, k): (usize, usize),
    cols: usize,
    iters: usize,
) -> Result<KernelResult> {
    let packed = random_weights(ty, rows, k)?;
    let copies = match kernel {
        Kernel::Matvec => (ROTATE_BYTES.div_ceil(packed.len() as u64) as usize).clamp(1, 512),
        Kernel::Matmul => 1,
        Kernel::MatvecId => return bench_routed(ctx, ty, (rows, k), &packed, cols, iters),
        other => {
            return Err(crate::error::Error::Unsupported(format!(
                "no kernel benchmark for {}",
                other.name()
            )));
        }
    };
    let ws: Vec<GpuWeights> = (0..copies)
        .map(|_| GpuWeights::upload(ctx, "bench w", ty, k, &packed))
        .collect::<Result<_>>()?;
    let xb = activations(ctx, cols * k)?;
    let y = ctx.alloc("bench y", (cols * rows * 4) as u64, wgpu::BufferUsages::STORAGE)?;
    let x = Activations {
        buffer: &xb.buffer,
        cols,
        stride: k,
        norm: None,
    };
    let out = Output::store(&y.buffer, rows);
    let seconds = if kernel == Kernel::Matvec {
        time_op(ctx, iters, copies.max(16), |rec, i| {
            ws[i % copies].matvec(ctx, rec, &x, &out)
        })?
    } else {
        time_op(ctx, iters.min(3), 2, |rec, _| ws[0].matmul(ctx, rec, &x, &out))?
    };
    Ok(KernelResult {
        kernel,
        format: ty,
        rows,
        k,
        cols,
        weight_bytes: packed.len() as u64,
        seconds,
        copies,
    })
}

/// Routed experts each token uses (DeepSeek-R1's top-8).
pub const ROUTED_USED: usize = 8;

/// `matvec_id` over a pool of `rows` x `k` experts that passes [`ROTATE_BYTES`] (8 to
/// 512 experts), for `tokens` tokens of [`ROUTED_USED`] experts each; operation i
/// routes to the next experts of the pool, so consecutive operations read different
/// ones. The row's weight bytes are those of the pairs' experts, read once each.
fn bench_routed(
    ctx: &GpuContext,
    ty: BlockType,
    (rows, k): (usize, usize),
    expert: &[u8],
    tokens: usize,
    iters: usize,
) -> Result<KernelResult> {
    use super::moe::{GpuExperts, Routing};
    let pairs = tokens * ROUTED_USED;
    let n_expert = (ROTATE_BYTES.div_ceil(expert.len() as u64) as usize).clamp(pairs, 512.max(pairs));
    let pool: Vec<u8> = expert.repeat(n_expert);
    let experts = GpuExperts::upload(ctx, "bench experts", ty, k, rows, &pool)?;
    let storage = wgpu::BufferUsages::STORAGE;
    let slot_of: Vec<u32> = (0..n_expert as u32).collect();
    let slot_of = ctx.upload("bench slots", bytemuck::cast_slice(&slot_of), storage)?;
    let weights = ctx.upload("bench route weights", bytemuck::cast_slice(&vec![1f32; pairs]), storage)?;
    let sets = n_expert / pairs;
    let ids: Vec<Tracked> = (0..sets)
        .map(|s| {
            let ids: Vec<u32> = (0..pairs).map(|p| (s * pairs + p) as u32).collect();
            ctx.upload("bench ids", bytemuck::cast_slice(&ids), storage)
        })
        .collect::<Result<_>>()?;
    let xb = activations(ctx, tokens * k)?;
    let y = ctx.alloc("bench y", (pairs * rows * 4) as u64, storage)?;
    let x = Activations {
        buffer: &xb.buffer,
        cols: tokens,
        stride: k,
        norm: None,
    };
    let fault = ctx.fault_buffer()?;
    let seconds = time_op(ctx, iters, sets.max(16), |rec, i| {
        let routing = Routing {
            ids: &ids[i % sets].buffer,
            slot_of: &slot_of.buffer,
            weights: &weights.buffer,
            fault: &fault.buffer,
            n_tokens: tokens,
            n_used: ROUTED_USED,
            weighted: false,
        };
        experts.matvec_id(ctx, rec, &x, &routing, &y.buffer, rows)
    })?;
    Ok(KernelResult {
        kernel: Kernel::MatvecId,
        format: ty,
        rows,
        k,
        cols: tokens,
        weight_bytes: (expert.len() * pairs) as u64,
        seconds,
        copies: n_expert,
    })
}
