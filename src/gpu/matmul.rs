//! `matmul`: tiled y = W·X for any number of activation columns (prefill and batches),
//! decoding W's blocks tile by tile into workgroup memory (`shaders/matmul.wgsl` or
//! `matmul_swizzled.wgsl`, by [`MatmulTiles`], +
//! `address_dense.wgsl` + the format's `decode32`).

use super::buffers::GpuWeights;
use super::context::GpuContext;
use super::matvec::{Activations, Output, check_output};
use super::pipelines::{Kernel, PipelineKey};
use super::recorder::Recorder;
use super::tuning::MatmulTiles;
use crate::error::{Error, Result};
use crate::quant::BlockType;

/// Output tile rows (`TM` in matmul.wgsl).
pub(crate) const TILE_ROWS: u32 = 64;

impl GpuContext {
    /// The pipeline of a tiled product (matmul, matmul_id) over `ty` for `cols` columns
    /// (per expert for matmul_id): this context's tiles ([`MatmulTiles`]), as wide as
    /// the columns need, in f16 where the swizzled tiles and the device allow it.
    pub(crate) fn matmul_key(&self, kernel: Kernel, ty: BlockType, cols: usize) -> PipelineKey {
        let swizzled = self.tuning.matmul == MatmulTiles::Swizzled;
        PipelineKey {
            cols: self.tuning.matmul_cols(cols) as u8,
            swizzled,
            f16_tiles: swizzled && self.features.f16,
            ..PipelineKey::new(kernel, ty)
        }
    }
}

impl GpuWeights {
    /// Record `y[c * y.stride + row] (+)= Σ_k W[row][k] · x[c][k]` for all rows and columns.
    pub fn matmul(&self, ctx: &GpuContext, rec: &mut Recorder, x: &Activations, y: &Output) -> Result<()> {
        if x.cols == 0 {
            return Err(Error::Shape("matmul of zero columns".into()));
        }
        x.check_plain("matmul")?;
        x.check(self.k)?;
        check_output(y.buffer, x.cols, self.rows, y.stride)?;
        let key = ctx.matmul_key(Kernel::Matmul, self.ty, x.cols);
        let col_tiles = (x.cols as u32).div_ceil(key.cols as u32);
        let max = ctx.max_workgroups_per_dim;
        if col_tiles > max {
            return Err(Error::Shape(format!(
                "{} columns exceed {} tiles of {}",
                x.cols, max, key.cols
            )));
        }
        self.dispatch_chunks(ctx, rec, x, y, |chunk| {
            (key, ((chunk.rows as u32).div_ceil(TILE_ROWS), col_tiles, 1))
        })
    }
}
