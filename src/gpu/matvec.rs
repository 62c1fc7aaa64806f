//! `matvec`: y = W·x for 1..=8 activation columns, reading W's packed blocks directly
//! (`shaders/matvec.wgsl` plus the format's `decode32`). The decode path of inference.

use super::buffers::{GpuWeights, Tracked};
use super::context::GpuContext;
use super::pipelines::{Kernel, PipelineKey, grid_words};
use crate::error::{Error, Result};
use wgpu::util::DeviceExt;

/// Rows per workgroup (`ROWS` in matvec.wgsl).
const ROWS_PER_WORKGROUP: u32 = 4;
/// Columns per call (`MAX_COLS` in matvec.wgsl).
pub const MAX_COLS: usize = 8;

/// Activations on the device: `cols` columns of `k` values, column c at `c * stride`.
pub struct Activations<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub cols: usize,
    pub stride: usize,
    /// Stored as f16 (needs `shader-f16`) rather than f32.
    pub f16: bool,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    k: u32,
    ncols: u32,
    row_offset: u32,
    x_stride: u32,
    y_stride: u32,
}

impl GpuContext {
    fn grid_buffer(&self) -> Result<&Tracked> {
        if let Some(g) = self.grid.get() {
            return Ok(g);
        }
        let words = grid_words();
        let g = self.upload("iq grids", bytemuck::cast_slice(&words), wgpu::BufferUsages::STORAGE)?;
        Ok(self.grid.get_or_init(|| g))
    }

    /// Split a workgroup count over x and y so neither exceeds the per-dimension limit.
    pub(crate) fn workgroups_2d(&self, n: u32) -> (u32, u32) {
        let max = self.device.limits().max_compute_workgroups_per_dimension.max(1);
        let x = n.clamp(1, max);
        (x, n.div_ceil(x))
    }
}

impl GpuWeights {
    /// Record `y[c * y_stride + row] = Σ_k W[row][k] · x[c][k]` for every row and column
    /// into `encoder`. One dispatch per weight chunk.
    pub fn matvec(&self, ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, x: &Activations, y: &wgpu::Buffer, y_stride: usize) -> Result<()> {
        if x.cols == 0 || x.cols > MAX_COLS {
            return Err(Error::Shape(format!("matvec takes 1..={MAX_COLS} columns, got {}", x.cols)));
        }
        if x.stride < self.k || y_stride < self.rows {
            return Err(Error::Shape(format!("strides x {} / y {} are smaller than k {} / rows {}", x.stride, y_stride, self.k, self.rows)));
        }
        let x_bytes = ((x.cols - 1) * x.stride + self.k) as u64 * if x.f16 { 2 } else { 4 };
        let y_bytes = ((x.cols - 1) * y_stride + self.rows) as u64 * 4;
        if x.buffer.size() < x_bytes || y.size() < y_bytes {
            return Err(Error::Shape(format!("activation buffer {} < {x_bytes} or output buffer {} < {y_bytes} bytes", x.buffer.size(), y.size())));
        }
        let key = PipelineKey { kernel: Kernel::Matvec, format: self.ty, subgroups: ctx.features.subgroups, f16_activations: x.f16 };
        let pipeline = ctx.pipeline(key)?;
        let grid = ctx.grid_buffer()?;
        ctx.scoped("recording matvec", || {
            for chunk in &self.chunks {
                let params = Params {
                    rows: chunk.rows as u32,
                    k: self.k as u32,
                    ncols: x.cols as u32,
                    row_offset: chunk.first_row as u32,
                    x_stride: x.stride as u32,
                    y_stride: y_stride as u32,
                };
                let uniform = ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("matvec params"),
                    contents: bytemuck::bytes_of(&params),
                    usage: wgpu::BufferUsages::UNIFORM,
                });
                let bind = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("matvec"),
                    layout: &pipeline.get_bind_group_layout(0),
                    entries: &[
                        wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() },
                        wgpu::BindGroupEntry { binding: 1, resource: chunk.buffer.buffer.as_entire_binding() },
                        wgpu::BindGroupEntry { binding: 2, resource: x.buffer.as_entire_binding() },
                        wgpu::BindGroupEntry { binding: 3, resource: y.as_entire_binding() },
                        wgpu::BindGroupEntry { binding: 4, resource: grid.buffer.as_entire_binding() },
                    ],
                });
                let (gx, gy) = ctx.workgroups_2d((chunk.rows as u32).div_ceil(ROWS_PER_WORKGROUP));
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("matvec"), timestamp_writes: None });
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &bind, &[]);
                pass.dispatch_workgroups(gx, gy, 1);
            }
        })
    }
}
