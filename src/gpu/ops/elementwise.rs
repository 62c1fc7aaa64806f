//! SwiGLU (`elementwise.wgsl`): `out = silu(a) * b`, of two tensors or of the two
//! halves of a stacked gate-and-up product (ggml's `ggml_swiglu`).

use crate::backend::check_swiglu_stacked;
use crate::error::Result;
use crate::gpu::backend::{GpuBackend, GpuTensor, groups, shape_err};

/// The WGSL source.
pub(crate) const SOURCE: &str = include_str!("elementwise.wgsl");

/// elementwise.wgsl's parameters.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct EwParams {
    pub width: u32,
    pub n: u32,
    pub a_stride: u32,
    pub b_stride: u32,
    pub b_offset: u32,
}

impl GpuBackend {
    /// `out = silu(a) * b` over `params`' rows (elementwise.wgsl).
    fn swiglu_kernel(&mut self, params: EwParams, a: &wgpu::Buffer, b: &wgpu::Buffer, out: &GpuTensor) -> Result<()> {
        let grid = groups(&self.ctx, (params.n * params.width) as usize, 256);
        self.simple(
            "elementwise",
            SOURCE,
            "swiglu",
            bytemuck::bytes_of(&params),
            &[a, b, &out.buffer.buffer],
            grid,
        )
    }

    pub(crate) fn swiglu_op(&mut self, gate: &GpuTensor, up: &GpuTensor) -> Result<GpuTensor> {
        let n = gate.n * gate.width;
        if n != up.n * up.width {
            return Err(shape_err("swiglu", "gate and up differ in size".into()));
        }
        let out = self.tensor(gate.n, gate.width)?;
        let params = EwParams {
            width: n as u32,
            n: 1,
            a_stride: 0,
            b_stride: 0,
            b_offset: 0,
        };
        self.swiglu_kernel(params, &gate.buffer.buffer, &up.buffer.buffer, &out)?;
        Ok(out)
    }

    pub(crate) fn swiglu_stacked_op(&mut self, gate_up: &GpuTensor) -> Result<GpuTensor> {
        let f = check_swiglu_stacked(gate_up.width)?;
        let out = self.tensor(gate_up.n, f)?;
        let params = EwParams {
            width: f as u32,
            n: gate_up.n as u32,
            a_stride: gate_up.width as u32,
            b_stride: gate_up.width as u32,
            b_offset: f as u32,
        };
        let b = &gate_up.buffer.buffer;
        self.swiglu_kernel(params, b, b, &out)?;
        Ok(out)
    }
}
