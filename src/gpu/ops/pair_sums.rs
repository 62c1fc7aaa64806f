//! The routed experts' weighted outputs summed into the residual stream
//! (`pair_sums.wgsl`): `acc[t] += sum_j y[t * n_used + j]`.

use crate::backend::check_pair_sums;
use crate::error::Result;
use crate::gpu::backend::{GpuBackend, GpuTensor, groups};

/// The WGSL source.
pub(crate) const SOURCE: &str = include_str!("pair_sums.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct SumParams {
    pub n: u32,
    pub width: u32,
    pub n_used: u32,
}

impl GpuBackend {
    pub(crate) fn add_pair_sums_op(&mut self, y: &GpuTensor, n_used: usize, acc: &mut GpuTensor) -> Result<()> {
        check_pair_sums((y.n, y.width), n_used, (acc.n, acc.width))?;
        let params = SumParams {
            n: acc.n as u32,
            width: acc.width as u32,
            n_used: n_used as u32,
        };
        let grid = groups(&self.ctx, acc.n * acc.width, 256);
        self.simple(
            "pair_sums",
            SOURCE,
            "main",
            bytemuck::bytes_of(&params),
            &[&y.buffer.buffer, &acc.buffer.buffer],
            grid,
        )
    }
}
