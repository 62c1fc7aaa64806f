//! Column copies between row-major tensors (`copy_columns.wgsl`): `dst[t][dst_offset +
//! i] = src[t][src_offset + i]` for `i < width`.

use crate::backend::check_copy_columns;
use crate::error::Result;
use crate::gpu::backend::{GpuBackend, GpuTensor, groups};

/// The WGSL source.
pub(crate) const SOURCE: &str = include_str!("copy_columns.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct CopyParams {
    pub n: u32,
    pub width: u32,
    pub src_stride: u32,
    pub src_offset: u32,
    pub dst_stride: u32,
    pub dst_offset: u32,
}

impl GpuBackend {
    pub(crate) fn copy_columns_op(
        &mut self,
        src: &GpuTensor,
        src_offset: usize,
        dst: &mut GpuTensor,
        dst_offset: usize,
        width: usize,
    ) -> Result<()> {
        check_copy_columns((src.n, src.width), src_offset, (dst.n, dst.width), dst_offset, width)?;
        let params = CopyParams {
            n: src.n as u32,
            width: width as u32,
            src_stride: src.width as u32,
            src_offset: src_offset as u32,
            dst_stride: dst.width as u32,
            dst_offset: dst_offset as u32,
        };
        let grid = groups(&self.ctx, src.n * width, 256);
        self.simple(
            "copy_columns",
            SOURCE,
            "main",
            bytemuck::bytes_of(&params),
            &[&src.buffer.buffer, &dst.buffer.buffer],
            grid,
        )
    }
}
