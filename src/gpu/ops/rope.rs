//! Rotary embedding in place (`rope.wgsl`), llama.cpp's "normal" mode
//! (`ggml_rope_ext`): pairs of an offset part of each head rotate by position times
//! frequency, scaled by YaRN's magnitude factor; the host computes the frequencies
//! (`Rope::new`).

use crate::backend::{MAX_ROPE_DIMS, Rope};
use crate::error::Result;
use crate::gpu::backend::{GpuBackend, GpuTensor, groups, shape_err};

/// The WGSL source.
pub(crate) const SOURCE: &str = include_str!("rope.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct RopeParams {
    pub n: u32,
    pub heads: u32,
    pub head_dim: u32,
    pub offset: u32,
    pub pairs: u32,
    pub pos0: u32,
    pub mscale: f32,
    pub stride: u32,
    pub freqs: [f32; MAX_ROPE_DIMS / 2],
}

impl GpuBackend {
    pub(crate) fn rope_op(&mut self, x: &mut GpuTensor, rope: &Rope, pos0: usize) -> Result<()> {
        if x.width < rope.heads * rope.head_dim || rope.offset + rope.dims() > rope.head_dim {
            return Err(shape_err(
                "rope",
                format!("rows of {} for {} heads of {}", x.width, rope.heads, rope.head_dim),
            ));
        }
        let mut freqs = [0f32; MAX_ROPE_DIMS / 2];
        freqs[..rope.freqs.len()].copy_from_slice(&rope.freqs);
        let params = RopeParams {
            n: x.n as u32,
            heads: rope.heads as u32,
            head_dim: rope.head_dim as u32,
            offset: rope.offset as u32,
            pairs: rope.freqs.len() as u32,
            pos0: pos0 as u32,
            mscale: rope.mscale,
            stride: x.width as u32,
            freqs,
        };
        let grid = groups(&self.ctx, x.n * rope.heads * rope.freqs.len(), 64);
        self.simple(
            "rope",
            SOURCE,
            "main",
            bytemuck::bytes_of(&params),
            &[&x.buffer.buffer],
            grid,
        )
    }
}
