//! The GPU backend: the forward pass recorded into one command encoder per step
//! (`Llama::forward` call) and submitted only when the host needs data (logits).
//!
//! Kernels besides the packed-weight products, one WGSL file each: `get_rows.wgsl`
//! (embedding lookup), `rms_norm.wgsl`, `rope.wgsl`, `attention.wgsl` and
//! `elementwise.wgsl` (SwiGLU); residual adds are fused into the products (`Output::add`). Keys and values are appended to the cache
//! with buffer copies. Matrix products use `matvec` for up to 8 tokens, `matmul` above.

use super::buffers::{GpuWeights, Tracked};
use super::context::{GpuContext, GpuOptions};
use super::matvec::{Activations, MAX_COLS, Output};
use super::pipelines::{Kernel, PipelineKey};
use crate::backend::{Backend, Heads, Rope};
use crate::error::{Error, Result};
use crate::gguf::TensorView;

/// Activations `[n][width]` in a device buffer (f32).
pub struct GpuTensor {
    buffer: Tracked,
    pub n: usize,
    pub width: usize,
}

/// Keys and values for `n_ctx` positions of `width` values, f32.
pub struct GpuCache {
    k: Tracked,
    v: Tracked,
    width: usize,
    n_ctx: usize,
}

pub struct GpuBackend {
    pub ctx: GpuContext,
    encoder: Option<wgpu::CommandEncoder>,
}

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

fn shape_err(op: &str, detail: String) -> Error {
    Error::Shape(format!("{op}: {detail}"))
}

/// Workgroup grid for `n` invocations of `per_group` each.
fn groups(ctx: &GpuContext, n: usize, per_group: usize) -> (u32, u32, u32) {
    let (x, y) = ctx.workgroups_2d(n.div_ceil(per_group) as u32);
    (x, y, 1)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RowsParams {
    k: u32,
    n: u32,
    rows: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NormParams {
    width: u32,
    n: u32,
    eps: f32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RopeParams {
    n: u32,
    heads: u32,
    head_dim: u32,
    dims: u32,
    pos0: u32,
    theta: f32,
    scale: f32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AttnParams {
    n: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    pos0: u32,
    scale: f32,
}

/// `MAX_HEAD_DIM` in attention.wgsl.
const MAX_HEAD_DIM: usize = 128;

impl GpuBackend {
    /// A backend on a device of lowbit's own.
    pub fn new(options: GpuOptions) -> Result<Self> {
        Ok(GpuBackend {
            ctx: GpuContext::new(options)?,
            encoder: None,
        })
    }

    /// A backend on a context built from the host application's device.
    pub fn with_context(ctx: GpuContext) -> Self {
        GpuBackend { ctx, encoder: None }
    }

    /// Record into this step's command encoder (created on first use).
    fn record<T>(&mut self, f: impl FnOnce(&GpuContext, &mut wgpu::CommandEncoder) -> Result<T>) -> Result<T> {
        let GpuBackend { ctx, encoder } = self;
        let enc = encoder.get_or_insert_with(|| {
            ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("lowbit step"),
            })
        });
        f(ctx, enc)
    }

    fn tensor(&self, n: usize, width: usize) -> Result<GpuTensor> {
        Ok(GpuTensor {
            buffer: self.ctx.alloc("activations", (n * width * 4) as u64, USAGE)?,
            n,
            width,
        })
    }

    fn simple(
        &mut self,
        name: &'static str,
        source: &'static str,
        entry: &'static str,
        params: &[u8],
        buffers: &[&wgpu::Buffer],
        grid: (u32, u32, u32),
    ) -> Result<()> {
        let pipeline = self.ctx.simple_pipeline(name, source, entry)?;
        self.record(|ctx, enc| ctx.dispatch_simple(enc, &pipeline, params, buffers, grid))
    }

    /// Submit the recorded step.
    fn flush(&mut self) {
        if let Some(enc) = self.encoder.take() {
            self.ctx.queue.submit([enc.finish()]);
        }
    }
}

impl GpuBackend {
    /// `x · Wᵀ` into `y`: matvec for up to 8 tokens, the tiled matmul above.
    fn product(&mut self, w: &GpuWeights, x: &GpuTensor, y: &Output) -> Result<()> {
        if x.width != w.k {
            return Err(shape_err(
                "matmul",
                format!("{} inputs for a matrix of rows of {}", x.width, w.k),
            ));
        }
        let act = Activations {
            buffer: &x.buffer.buffer,
            cols: x.n,
            stride: x.width,
            f16: false,
        };
        self.record(|ctx, enc| {
            if x.n <= MAX_COLS {
                w.matvec(ctx, enc, &act, y)
            } else {
                w.matmul(ctx, enc, &act, y)
            }
        })
    }
}

impl Backend for GpuBackend {
    type Tensor = GpuTensor;
    type Matrix = GpuWeights;
    type Cache = GpuCache;

    fn name(&self) -> String {
        format!(
            "gpu {} (shader-f16 {}, subgroups {})",
            self.ctx.adapter_name, self.ctx.features.f16, self.ctx.features.subgroups
        )
    }

    fn memory_report(&self) -> String {
        format!(
            "{:.1} MiB on the device",
            self.ctx.allocated_bytes() as f64 / (1 << 20) as f64
        )
    }

    fn matrix(&mut self, t: &TensorView) -> Result<GpuWeights> {
        GpuWeights::upload(&self.ctx, &t.info.name, t.info.ty, t.info.row_len() as usize, t.bytes).map_err(|e| {
            Error::Tensor {
                path: t.path.to_path_buf(),
                tensor: t.info.name.clone(),
                reason: e.to_string(),
            }
        })
    }

    fn cache(&mut self, n_ctx: usize, width: usize) -> Result<GpuCache> {
        let bytes = (n_ctx * width * 4) as u64;
        Ok(GpuCache {
            k: self.ctx.alloc("k cache", bytes, USAGE)?,
            v: self.ctx.alloc("v cache", bytes, USAGE)?,
            width,
            n_ctx,
        })
    }

    fn embed(&mut self, table: &GpuWeights, tokens: &[u32]) -> Result<GpuTensor> {
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= table.rows) {
            return Err(shape_err(
                "embed",
                format!("token {t} is outside the vocabulary of {}", table.rows),
            ));
        }
        if table.chunks.len() != 1 {
            return Err(shape_err(
                "embed",
                "embedding tables split across bindings are not supported yet".into(),
            ));
        }
        let out = self.tensor(tokens.len(), table.k)?;
        let ids = self
            .ctx
            .upload("token ids", bytemuck::cast_slice(tokens), wgpu::BufferUsages::STORAGE)?;
        let key = PipelineKey {
            kernel: Kernel::GetRows,
            format: table.ty,
            subgroups: false,
            f16_activations: false,
            cols: 0,
            row_per_invocation: false,
        };
        let params = RowsParams {
            k: table.k as u32,
            n: tokens.len() as u32,
            rows: table.rows as u32,
        };
        let grid = groups(&self.ctx, tokens.len() * table.k / 32, 64);
        let chunk = &table.chunks[0].buffer.buffer;
        self.record(|ctx, enc| {
            ctx.dispatch(
                enc,
                key,
                bytemuck::bytes_of(&params),
                &[chunk, &ids.buffer, &out.buffer.buffer],
                grid,
            )
        })?;
        Ok(out)
    }

    fn rms_norm(&mut self, x: &GpuTensor, w: &GpuWeights, eps: f32) -> Result<GpuTensor> {
        if w.k * w.rows != x.width || w.ty != crate::quant::BlockType::F32 {
            return Err(shape_err(
                "rms_norm",
                format!("{} weight of {} for rows of {}", w.ty, w.k * w.rows, x.width),
            ));
        }
        let out = self.tensor(x.n, x.width)?;
        let params = NormParams {
            width: x.width as u32,
            n: x.n as u32,
            eps,
        };
        let g = &w.chunks[0].buffer.buffer;
        self.simple(
            "rms_norm",
            include_str!("../../shaders/rms_norm.wgsl"),
            "main",
            bytemuck::bytes_of(&params),
            &[&x.buffer.buffer, g, &out.buffer.buffer],
            (x.n as u32, 1, 1),
        )?;
        Ok(out)
    }

    fn matmul(&mut self, w: &GpuWeights, x: &GpuTensor) -> Result<GpuTensor> {
        let out = self.tensor(x.n, w.rows)?;
        self.product(w, x, &Output::store(&out.buffer.buffer, w.rows))?;
        Ok(out)
    }

    fn matmul_add(&mut self, w: &GpuWeights, x: &GpuTensor, acc: &mut GpuTensor) -> Result<()> {
        if (acc.n, acc.width) != (x.n, w.rows) {
            return Err(shape_err(
                "matmul_add",
                format!("accumulator [{}][{}] for [{}][{}]", acc.n, acc.width, x.n, w.rows),
            ));
        }
        self.product(w, x, &Output::add(&acc.buffer.buffer, w.rows))
    }

    fn rope(&mut self, x: &mut GpuTensor, rope: &Rope, pos0: usize) -> Result<()> {
        if x.width != rope.heads * rope.head_dim {
            return Err(shape_err(
                "rope",
                format!("rows of {} for {} heads of {}", x.width, rope.heads, rope.head_dim),
            ));
        }
        let params = RopeParams {
            n: x.n as u32,
            heads: rope.heads as u32,
            head_dim: rope.head_dim as u32,
            dims: rope.dims as u32,
            pos0: pos0 as u32,
            theta: rope.theta,
            scale: rope.scale,
        };
        let grid = groups(&self.ctx, x.n * rope.heads * rope.dims / 2, 64);
        self.simple(
            "rope",
            include_str!("../../shaders/rope.wgsl"),
            "main",
            bytemuck::bytes_of(&params),
            &[&x.buffer.buffer],
            grid,
        )
    }

    fn attention(
        &mut self,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        cache: &mut GpuCache,
        h: &Heads,
        pos0: usize,
    ) -> Result<GpuTensor> {
        let n = q.n;
        if pos0 + n > cache.n_ctx {
            return Err(shape_err(
                "attention",
                format!("positions {pos0}..{} exceed the context of {}", pos0 + n, cache.n_ctx),
            ));
        }
        if k.width != cache.width
            || v.width != cache.width
            || q.width != h.heads * h.head_dim
            || h.head_dim > MAX_HEAD_DIM
        {
            return Err(shape_err(
                "attention",
                format!(
                    "q/k/v widths do not match {} heads of {} (at most {MAX_HEAD_DIM})",
                    h.heads, h.head_dim
                ),
            ));
        }
        let offset = (pos0 * cache.width * 4) as u64;
        let bytes = (n * cache.width * 4) as u64;
        self.record(|_, enc| {
            enc.copy_buffer_to_buffer(&k.buffer.buffer, 0, &cache.k.buffer, offset, bytes);
            enc.copy_buffer_to_buffer(&v.buffer.buffer, 0, &cache.v.buffer, offset, bytes);
            Ok(())
        })?;
        let out = self.tensor(n, q.width)?;
        let params = AttnParams {
            n: n as u32,
            heads: h.heads as u32,
            kv_heads: h.kv_heads as u32,
            head_dim: h.head_dim as u32,
            pos0: pos0 as u32,
            scale: 1.0 / (h.head_dim as f32).sqrt(),
        };
        let buffers = [&q.buffer.buffer, &cache.k.buffer, &cache.v.buffer, &out.buffer.buffer];
        self.simple(
            "attention",
            include_str!("../../shaders/attention.wgsl"),
            "main",
            bytemuck::bytes_of(&params),
            &buffers,
            ((n * h.heads) as u32, 1, 1),
        )?;
        Ok(out)
    }

    fn swiglu(&mut self, gate: &GpuTensor, up: &GpuTensor) -> Result<GpuTensor> {
        let n = gate.n * gate.width;
        if n != up.n * up.width {
            return Err(shape_err("swiglu", "gate and up differ in size".into()));
        }
        let out = self.tensor(gate.n, gate.width)?;
        let grid = groups(&self.ctx, n, 256);
        self.simple(
            "elementwise",
            include_str!("../../shaders/elementwise.wgsl"),
            "swiglu",
            bytemuck::bytes_of(&(n as u32)),
            &[&gate.buffer.buffer, &up.buffer.buffer, &out.buffer.buffer],
            grid,
        )?;
        Ok(out)
    }

    fn last_row(&mut self, x: &GpuTensor) -> Result<GpuTensor> {
        let out = self.tensor(1, x.width)?;
        let bytes = (x.width * 4) as u64;
        self.record(|_, enc| {
            enc.copy_buffer_to_buffer(&x.buffer.buffer, (x.n as u64 - 1) * bytes, &out.buffer.buffer, 0, bytes);
            Ok(())
        })?;
        Ok(out)
    }

    fn to_host(&mut self, x: &GpuTensor) -> Result<Vec<f32>> {
        self.flush();
        let bytes = self.ctx.read_back(&x.buffer.buffer, (x.n * x.width * 4) as u64)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}
