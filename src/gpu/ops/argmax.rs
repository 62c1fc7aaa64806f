//! Greedy sampling on the device ([`argmax.wgsl`](argmax.wgsl)): the index of each row's
//! largest value, as [`crate::sample::argmax`] picks it, so that a greedy token is a
//! 4-byte read-back instead of the whole row of logits.

use crate::error::{Error, Result};
use crate::gpu::backend::{GpuBackend, GpuTensor};

/// argmax.wgsl's parameters.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ArgmaxParams {
    pub width: u32,
    pub n: u32,
}

/// The WGSL source.
pub(crate) const SOURCE: &str = include_str!("argmax.wgsl");

impl GpuBackend {
    /// `[n][1]`: the index of the largest value of each row of `x` (an f32, exact for
    /// rows shorter than 2^24), the first of equals, 0 for a row without a value above -inf.
    pub(crate) fn argmax_rows(&mut self, x: &GpuTensor) -> Result<GpuTensor> {
        if x.width >= 1 << 24 || x.n as u64 > self.ctx.max_workgroups_per_dim as u64 {
            return Err(Error::Shape(format!("argmax of [{}][{}]", x.n, x.width)));
        }
        let out = self.tensor(x.n, 1)?;
        let params = ArgmaxParams {
            width: x.width as u32,
            n: x.n as u32,
        };
        self.simple(
            "argmax",
            SOURCE,
            "main",
            bytemuck::bytes_of(&params),
            &[x.buffer(), out.buffer()],
            (x.n as u32, 1, 1),
        )?;
        Ok(out)
    }
}
