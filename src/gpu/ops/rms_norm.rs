//! RMSNorm over rows (`rms_norm.wgsl`), as ggml's `ggml_rms_norm` followed by the
//! weight multiply: `out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w`.

use crate::error::Result;
use crate::gpu::GpuWeights;
use crate::gpu::backend::{GpuBackend, GpuTensor, shape_err};

/// The WGSL source.
pub(crate) const SOURCE: &str = include_str!("rms_norm.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct NormParams {
    pub width: u32,
    pub n: u32,
    pub eps: f32,
    pub x_stride: u32,
}

impl GpuBackend {
    pub(crate) fn rms_norm_op(&mut self, x: &GpuTensor, w: &GpuWeights, eps: f32) -> Result<GpuTensor> {
        let len = w.k * w.rows;
        if len > x.width || w.ty != crate::quant::BlockType::F32 {
            return Err(shape_err(
                "rms_norm",
                format!("{} weight of {len} for rows of {}", w.ty, x.width),
            ));
        }
        let out = self.tensor(x.n, len)?;
        let params = NormParams {
            width: len as u32,
            n: x.n as u32,
            eps,
            x_stride: x.width as u32,
        };
        let g = &w
            .chunks
            .first()
            .ok_or_else(|| shape_err("rms_norm", "an empty weight".into()))?
            .buffer
            .buffer;
        self.simple(
            "rms_norm",
            SOURCE,
            "main",
            bytemuck::bytes_of(&params),
            &[&x.buffer.buffer, g, &out.buffer.buffer],
            (x.n as u32, 1, 1),
        )?;
        Ok(out)
    }
}
