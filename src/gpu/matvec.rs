//! `matvec`: y = W·x for 1..=8 activation columns, reading W's packed blocks directly
//! (`shaders/matvec.wgsl` + `address_dense.wgsl` + the format's `decode32` and `dot32`,
//! activations through a storage or, for short rows, a uniform binding). The decode
//! path of inference.

use super::buffers::GpuWeights;
use super::context::GpuContext;
use super::pipelines::{Kernel, PipelineKey, UNIFORM_X_PAGE};
use super::recorder::Recorder;
use super::tuning::{RowLayout, Tuning};
use crate::error::{Error, Result};
use crate::quant::BlockType;

/// Invocations per workgroup (`WG` in matvec.wgsl).
const WORKGROUP: u32 = 64;
/// Sums one invocation holds, rows x columns (`OUTPUTS` in matvec.wgsl).
pub(crate) const OUTPUTS: usize = 32;

/// Whether rows of `k` elements are short: fewer 32-element units than a workgroup has
/// invocations, so that the lanes layout computes each row whole in one invocation.
fn short_rows(k: usize) -> bool {
    k / 32 < WORKGROUP as usize
}

/// How one matvec dispatch is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Whole rows per invocation (`ROWS_PER_LANE`), or 0: rows split over a workgroup.
    pub rows_per_lane: u8,
    /// Rows per lane group when split (`ROWS`), else 0.
    pub split_rows: u8,
    /// Lanes per row group when split (`GROUP`, a power of two up to the workgroup),
    /// else 0.
    pub group: u8,
    /// Workgroups per job.
    pub groups: u32,
}

/// How a matvec over `jobs` matrices of `rows` outputs of length `k` of `ty`, each from
/// `weight_rows` weight rows (2 with a SwiGLU epilogue), for `cols` columns, is laid out
/// under `tuning`. With [`RowLayout::Split`], and for long rows in any layout, a
/// workgroup reduces each row, `tuning.split_rows` rows at a time. With
/// [`RowLayout::Lanes`], rows shorter than one 32-element unit per invocation of a
/// workgroup are computed whole by single invocations: with one column, up to 8 weight
/// rows each, 64 apart, so that each load of the activations serves 8 rows, but as many
/// fewer as keep `tuning.min_workgroups` workgroups busy (measured on llvmpipe, `bench
/// kernels --formats Q4_1`: 576 x 1536 and the 576 x 49152 head 25-45% faster than one
/// row each, 16 rows no faster than 8, 576 x 192 twice as slow in a single workgroup; a
/// SwiGLU epilogue with 16 weight rows per invocation, in half the workgroups, lost ~4%
/// of decode); with more columns, one output each, as the decoded unit is already shared
/// by the columns.
pub(crate) fn matvec_shape(
    tuning: &Tuning,
    ty: BlockType,
    k: usize,
    rows: usize,
    weight_rows: usize,
    cols: u8,
    jobs: usize,
) -> Shape {
    if tuning.layout == RowLayout::Split || !short_rows(k) {
        let split = tuning.split_rows(ty, cols);
        // Split layout: as few lanes per row group as the row has units, so that short
        // rows fill the workgroup with several groups; as many groups as the sums allow.
        let mut group = match tuning.layout {
            RowLayout::Split => ((k / 32).max(1).next_power_of_two() as u32).min(WORKGROUP),
            RowLayout::Lanes => WORKGROUP,
        };
        while (WORKGROUP / group) * split * cols as u32 > OUTPUTS as u32 {
            group *= 2;
        }
        return Shape {
            rows_per_lane: 0,
            split_rows: split as u8,
            group: group as u8,
            groups: (rows as u32).div_ceil(split * (WORKGROUP / group)),
        };
    }
    let per_lane = if cols == 1 {
        [8u8, 4, 2]
            .into_iter()
            .find(|&r| {
                r as usize * weight_rows <= 8 && jobs * rows >= tuning.min_workgroups * WORKGROUP as usize * r as usize
            })
            .unwrap_or(1)
    } else {
        1
    };
    Shape {
        rows_per_lane: per_lane,
        split_rows: 0,
        group: 0,
        groups: (rows as u32).div_ceil(WORKGROUP * per_lane as u32),
    }
}

/// log2 of the row interleave a `rows` x `k` matrix of `ty` is stored in on the device
/// (`buffers::interleave_rows`): 3 (groups of 8 rows, block-major) for block formats
/// with short rows, which the decode matvec computes one row per invocation, so that 8
/// neighbouring invocations (one SIMD vector on llvmpipe, a quarter of a warp) read 8
/// adjacent blocks with each load; 0 (ggml's row-major layout) for F32/F16, single rows
/// and long rows, which a whole workgroup reads along the row. Measured on llvmpipe with
/// a kernel that only loads Q4_1 blocks, 8 rows per invocation as matvec_shape lays out
/// the 576 x 49152 head: row-major 5.5 ms, groups of 8 rows 2.7 ms, groups of 64 rows
/// 8.0 ms (each SIMD vector of a workgroup runs to completion in turn, so larger groups
/// spread its loads). With the vec4 block windows of q4_1_dot/q8_0_dot, alternating runs
/// of `bench kernels`: Q4_1 head 6.4-6.9 → 5.7-5.8 ms, Q8_0 head 9.0-11.0 → 6.9-7.1 ms.
/// The split layout ([`RowLayout::Split`]) keeps ggml's order: a workgroup reads along
/// its rows.
pub(crate) fn row_interleave(tuning: &Tuning, ty: BlockType, k: usize, rows: usize) -> u32 {
    let blocks = ty.block_size() >= 32;
    if tuning.layout == RowLayout::Lanes && blocks && rows > 1 && short_rows(k) {
        3
    } else {
        0
    }
}

/// Columns per call (`MAX_COLS` in matvec.wgsl).
pub const MAX_COLS: usize = 8;

/// Activations on the device: `cols` columns of `k` values, column c at `c * stride`.
pub struct Activations<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub cols: usize,
    pub stride: usize,
    /// An RMSNorm to apply to each column first, fused into the product.
    pub norm: Option<Norm<'a>>,
}

/// An RMSNorm fused into a matvec (`norm_uniform.wgsl`): its weight, `k` f32 values in
/// a buffer of whole [`UNIFORM_X_PAGE`]s with `UNIFORM` usage (the GPU backend uploads
/// 1-row F32 tensors so), and its epsilon. The activations must take the uniform
/// binding ([`Activations::uniform_pages`]).
pub struct Norm<'a> {
    pub weight: &'a wgpu::Buffer,
    pub eps: f32,
}

impl Activations<'_> {
    /// Pages of the uniform binding the one-row-per-invocation matvec of row length `k`
    /// may read these activations through, or 0 for a storage binding: the buffer must
    /// have `UNIFORM` usage and hold whole pages covering the columns, the pages must fit
    /// the device's uniform binding limit, and columns must start at multiples of 4.
    pub fn uniform_pages(&self, ctx: &GpuContext, k: usize) -> u8 {
        let pages = self.bytes(k).div_ceil(UNIFORM_X_PAGE);
        let fits = self.buffer.usage().contains(wgpu::BufferUsages::UNIFORM)
            && self.buffer.size() >= pages * UNIFORM_X_PAGE
            && pages * UNIFORM_X_PAGE <= ctx.max_uniform_x_bytes
            && self.stride.is_multiple_of(4)
            && ctx.tuning.layout == RowLayout::Lanes
            && short_rows(k);
        if fits { u8::try_from(pages).unwrap_or(0) } else { 0 }
    }

    /// An error unless these are plain activations (no fused norm), for `what`.
    pub(crate) fn check_plain(&self, what: &str) -> Result<()> {
        if self.norm.is_some() {
            return Err(Error::Unsupported(format!("{what} with a fused RMSNorm")));
        }
        Ok(())
    }

    /// Bytes from the buffer's start to the end of the last column of `k` values.
    fn bytes(&self, k: usize) -> u64 {
        ((self.cols.max(1) - 1) * self.stride + k) as u64 * 4
    }

    /// Check that the buffer holds `cols` columns of `k` values.
    pub(crate) fn check(&self, k: usize) -> Result<()> {
        let bytes = self.bytes(k);
        if self.stride < k || self.buffer.size() < bytes {
            return Err(Error::Shape(format!(
                "activations: {} columns of {k} at stride {} need {bytes} bytes, the buffer has {}",
                self.cols,
                self.stride,
                self.buffer.size()
            )));
        }
        Ok(())
    }
}

/// Where a product goes: column c, row r at `buffer[c * stride + r]`, stored, or added to
/// what the buffer holds (`accumulate`: a residual add fused into the product).
pub struct Output<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub stride: usize,
    pub accumulate: bool,
}

impl<'a> Output<'a> {
    pub fn store(buffer: &'a wgpu::Buffer, stride: usize) -> Self {
        Output {
            buffer,
            stride,
            accumulate: false,
        }
    }

    pub fn add(buffer: &'a wgpu::Buffer, stride: usize) -> Self {
        Output {
            buffer,
            stride,
            accumulate: true,
        }
    }
}

/// Check that `y` holds `cols` columns of `rows` values at `stride`.
pub(crate) fn check_output(y: &wgpu::Buffer, cols: usize, rows: usize, stride: usize) -> Result<()> {
    let bytes = ((cols.max(1) - 1) * stride + rows) as u64 * 4;
    if stride < rows || y.size() < bytes {
        return Err(Error::Shape(format!(
            "output: {cols} columns of {rows} at stride {stride} need {bytes} bytes, the buffer has {}",
            y.size()
        )));
    }
    Ok(())
}

/// Pages of a fused norm's weight binding, after checking that it can be fused.
fn norm_pages(norm: &Norm, k: usize, uniform_x_pages: u8) -> Result<u8> {
    let size = norm.weight.size();
    let usable = norm.weight.usage().contains(wgpu::BufferUsages::UNIFORM)
        && size.is_multiple_of(UNIFORM_X_PAGE)
        && size >= k as u64 * 4;
    if !usable || uniform_x_pages == 0 {
        return Err(Error::Unsupported(format!(
            "a fused RMSNorm needs its {k} weights in whole uniform pages (got {size} bytes) and \
             the activations in a uniform binding"
        )));
    }
    u8::try_from(size / UNIFORM_X_PAGE).map_err(|_| Error::Shape(format!("a norm weight of {size} bytes")))
}

impl GpuWeights {
    /// Record `y[c * y.stride + row] (+)= Σ_k W[row][k] · x[c][k]` for every row and each of
    /// the 1..=8 columns into `rec`, one dispatch per weight chunk (x normalized first
    /// when it carries a [`Norm`]).
    pub fn matvec(&self, ctx: &GpuContext, rec: &mut Recorder, x: &Activations, y: &Output) -> Result<()> {
        self.matvec_of(ctx, rec, x, y, false)
    }

    /// Whether [`Self::matvec_swiglu`] takes this matrix for `cols` columns: one chunk,
    /// an even number of rows, and rows short enough for whole rows per invocation.
    pub fn swiglu_fusable(&self, tuning: &Tuning, cols: usize) -> bool {
        self.chunks.len() == 1
            && self.rows.is_multiple_of(2)
            && (1..=MAX_COLS).contains(&cols)
            && matvec_shape(tuning, self.ty, self.k, self.rows / 2, 2, cols as u8, 1).rows_per_lane > 0
    }

    /// For a stacked `[gate; up]` matrix (rows `0..f` gate, `f..2f` up): record
    /// `y[c * y.stride + i] (+)= silu(gate_i · x[c]) · (up_i · x[c])` for `i < f`, the
    /// SwiGLU in the product's epilogue (matvec.wgsl's `SWIGLU`). Needs
    /// [`Self::swiglu_fusable`].
    pub fn matvec_swiglu(&self, ctx: &GpuContext, rec: &mut Recorder, x: &Activations, y: &Output) -> Result<()> {
        if !self.swiglu_fusable(&ctx.tuning, x.cols) {
            return Err(Error::Unsupported(format!(
                "a SwiGLU epilogue over {} rows of {} in {} chunks for {} columns",
                self.rows,
                self.k,
                self.chunks.len(),
                x.cols
            )));
        }
        self.matvec_of(ctx, rec, x, y, true)
    }

    fn matvec_of(&self, ctx: &GpuContext, rec: &mut Recorder, x: &Activations, y: &Output, swiglu: bool) -> Result<()> {
        if x.cols == 0 || x.cols > MAX_COLS {
            return Err(Error::Shape(format!(
                "matvec takes 1..={MAX_COLS} columns, got {}",
                x.cols
            )));
        }
        x.check(self.k)?;
        let out_rows = |rows: usize| if swiglu { rows / 2 } else { rows };
        check_output(y.buffer, x.cols, out_rows(self.rows), y.stride)?;
        let uniform_x_pages = x.uniform_pages(ctx, self.k);
        let key = PipelineKey {
            subgroups: ctx.features.subgroups,
            cols: x.cols as u8,
            uniform_x_pages,
            norm_pages: match &x.norm {
                Some(norm) => norm_pages(norm, self.k, uniform_x_pages)?,
                None => 0,
            },
            swiglu,
            shared_lattice: ctx.tuning.lattice_in_workgroup(self.ty),
            ..PipelineKey::new(Kernel::Matvec, self.ty)
        };
        self.dispatch_chunks(ctx, rec, x, y, |chunk| {
            let weight_rows = if swiglu { 2 } else { 1 };
            let shape = matvec_shape(
                &ctx.tuning,
                self.ty,
                self.k,
                out_rows(chunk.rows),
                weight_rows,
                key.cols,
                1,
            );
            let (gx, gy) = ctx.workgroups_2d(shape.groups);
            let key = PipelineKey {
                rows_per_lane: shape.rows_per_lane,
                split_rows: shape.split_rows,
                split_group: shape.group,
                ..key
            };
            (key, (gx, gy, 1))
        })
    }
}
