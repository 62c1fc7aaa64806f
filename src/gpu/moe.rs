//! The MoE kernels `matvec_id` and `matmul_id`: multiply each (token, slot) pair's
//! activations by the weights of the expert the router chose for it, reading experts
//! from a pool of slots through an expert→slot table (`shaders/address_routed.wgsl`,
//! `shaders/address_grouped.wgsl` with the matvec and matmul bodies).
//!
//! A GGUF stores a layer's experts as a 3-D tensor `[k, rows, n_expert]`: expert `e` is
//! the contiguous byte range of rows `[e * rows, (e + 1) * rows)`. [`GpuExperts`] holds
//! `n_slots` such matrices; without streaming, slot `e` holds expert `e` and the table is
//! the identity. Streaming (`super::stream`) fills slots as the router asks and rewrites
//! only the table, so a miss never rebuilds a pipeline or a bind group layout.

use super::buffers::Tracked;
use super::context::GpuContext;
use super::matmul::TILE_ROWS;
use super::matvec::{Activations, matvec_shape};
use super::pipelines::{Kernel, Params, PipelineKey};
use super::recorder::Recorder;
use crate::error::{Error, Result};
use crate::quant::BlockType;

/// A run of whole slots in one binding.
pub struct SlotChunk {
    pub buffer: Tracked,
    pub first_slot: usize,
    pub slots: usize,
}

/// A pool of expert matrices (`rows` x `k` each, packed) on the device.
pub struct GpuExperts {
    pub ty: BlockType,
    pub k: usize,
    pub rows: usize,
    pub slots: usize,
    pub chunks: Vec<SlotChunk>,
}

/// A slot table entry: the expert is not in the pool. A pair routed to it is a
/// scheduler bug; `matvec_id` records it in the fault word and `group_by_expert` fails.
pub const NOT_RESIDENT: u32 = u32::MAX;
/// A slot table entry: the expert's pairs run in another wave of this step.
pub const OTHER_WAVE: u32 = u32::MAX - 1;

/// Routing decisions on the device for `matvec_id`: for pair `t * n_used + j`,
/// `ids` holds the expert (u32), `weights` the routing weight (f32); `slot_of[e]` is
/// expert e's slot in the pool (u32, or [`NOT_RESIDENT`] / [`OTHER_WAVE`]). `fault`
/// (two u32) is set when a pair's expert is [`NOT_RESIDENT`]: word 0 to 1, word 1 to
/// the expert.
pub struct Routing<'a> {
    pub ids: &'a wgpu::Buffer,
    pub slot_of: &'a wgpu::Buffer,
    pub weights: &'a wgpu::Buffer,
    pub fault: &'a wgpu::Buffer,
    pub n_tokens: usize,
    pub n_used: usize,
    /// Scale each pair's result by its weight (else by 1).
    pub weighted: bool,
}

/// Pairs grouped by expert for `matmul_id` (see [`group_by_expert`]), on the device.
pub struct Grouped<'a> {
    pub order: &'a wgpu::Buffer,
    pub segments: &'a wgpu::Buffer,
    pub weights: &'a wgpu::Buffer,
    pub n_segments: usize,
    /// The largest number of pairs in one segment.
    pub max_count: usize,
    pub n_tokens: usize,
    pub n_used: usize,
    /// Scale each pair's result by its weight (else by 1).
    pub weighted: bool,
}

/// Host-side grouping of the pairs `t * n_used + j` by expert, for `matmul_id`.
/// Returns `(order, segments)`: `order` lists pair indices expert by expert, and each
/// segment is `[slot, offset into order, count]` for one expert present in `ids`
/// (experts of [`OTHER_WAVE`] are left out; a [`NOT_RESIDENT`] one is an error).
pub fn group_by_expert(ids: &[u32], slot_of: &[u32]) -> Result<(Vec<u32>, Vec<u32>)> {
    let mut by_expert: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
    for (pair, &e) in ids.iter().enumerate() {
        by_expert.entry(e).or_default().push(pair as u32);
    }
    let mut order = Vec::with_capacity(ids.len());
    let mut segments = Vec::with_capacity(3 * by_expert.len());
    for (e, pairs) in by_expert {
        let slot = *slot_of
            .get(e as usize)
            .ok_or_else(|| Error::Shape(format!("expert {e} has no slot table entry")))?;
        match slot {
            OTHER_WAVE => continue,
            NOT_RESIDENT => {
                return Err(Error::Gpu(format!(
                    "expert {e} reached matmul_id without being resident"
                )));
            }
            _ => {}
        }
        segments.extend_from_slice(&[slot, order.len() as u32, pairs.len() as u32]);
        order.extend(pairs);
    }
    Ok((order, segments))
}

impl GpuExperts {
    /// Upload expert matrices from `bytes` (GGUF layout of a 3-D expert tensor, or any
    /// run of whole experts), one slot each, split into chunks of whole experts per
    /// binding.
    pub fn upload(ctx: &GpuContext, name: &str, ty: BlockType, k: usize, rows: usize, bytes: &[u8]) -> Result<Self> {
        let expert_bytes = Self::expert_bytes(name, ty, k, rows)?;
        if !bytes.len().is_multiple_of(expert_bytes) {
            return Err(Error::Shape(format!(
                "experts '{name}': {} bytes are not whole {rows} x {k} {ty} matrices",
                bytes.len()
            )));
        }
        Self::build(ctx, name, ty, k, rows, bytes.len() / expert_bytes, Some(bytes))
    }

    /// A pool of `slots` empty slots for `rows` x `k` matrices of `ty`, filled later with
    /// [`write_slot`](Self::write_slot).
    pub fn alloc(ctx: &GpuContext, name: &str, ty: BlockType, k: usize, rows: usize, slots: usize) -> Result<Self> {
        let b = Self::expert_bytes(name, ty, k, rows)?;
        if !b.is_multiple_of(4) {
            return Err(Error::Shape(format!(
                "experts '{name}': streamed matrices of {b} bytes (buffer writes need multiples of 4)"
            )));
        }
        Self::build(ctx, name, ty, k, rows, slots, None)
    }

    /// Bytes of one matrix; the kernels need rows of whole 32-element units.
    pub fn expert_bytes(name: &str, ty: BlockType, k: usize, rows: usize) -> Result<usize> {
        let b = ty.row_bytes(k)? * rows;
        if !k.is_multiple_of(32) || b == 0 {
            return Err(Error::Shape(format!(
                "experts '{name}': {rows} x {k} {ty} matrices (rows must be multiples of 32 elements)"
            )));
        }
        Ok(b)
    }

    fn build(
        ctx: &GpuContext,
        name: &str,
        ty: BlockType,
        k: usize,
        rows: usize,
        slots: usize,
        bytes: Option<&[u8]>,
    ) -> Result<Self> {
        let expert_bytes = Self::expert_bytes(name, ty, k, rows)?;
        let per_chunk = ctx.max_binding_bytes as usize / expert_bytes;
        if per_chunk == 0 {
            return Err(Error::Gpu(format!(
                "experts '{name}': one expert of {expert_bytes} bytes exceeds the {} byte binding limit",
                ctx.max_binding_bytes
            )));
        }
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        let mut chunks = Vec::new();
        for first_slot in (0..slots).step_by(per_chunk) {
            let n = per_chunk.min(slots - first_slot);
            let buffer = match bytes {
                Some(b) => ctx.upload(
                    name,
                    &b[first_slot * expert_bytes..(first_slot + n) * expert_bytes],
                    usage,
                )?,
                None => ctx.alloc(name, (n * expert_bytes) as u64, usage)?,
            };
            chunks.push(SlotChunk {
                buffer,
                first_slot,
                slots: n,
            });
        }
        Ok(GpuExperts {
            ty,
            k,
            rows,
            slots,
            chunks,
        })
    }

    /// Queue `bytes` (one matrix) into `slot`; it lands before the next submission.
    pub fn write_slot(&self, ctx: &GpuContext, slot: usize, bytes: &[u8]) -> Result<()> {
        let expert_bytes = self.ty.row_bytes(self.k)? * self.rows;
        let chunk = self
            .chunks
            .iter()
            .find(|c| slot >= c.first_slot && slot < c.first_slot + c.slots)
            .ok_or_else(|| Error::Shape(format!("slot {slot} is outside a pool of {}", self.slots)))?;
        if bytes.len() != expert_bytes {
            return Err(Error::Shape(format!(
                "{} bytes for a slot of {expert_bytes}",
                bytes.len()
            )));
        }
        let offset = ((slot - chunk.first_slot) * expert_bytes) as u64;
        ctx.queue.write_buffer(&chunk.buffer.buffer, offset, bytes);
        Ok(())
    }

    fn params(
        &self,
        chunk: &SlotChunk,
        x: &Activations,
        y_stride: usize,
        n_used: usize,
        n_pairs: usize,
        weighted: bool,
    ) -> Params {
        Params {
            rows: self.rows as u32,
            k: self.k as u32,
            x_stride: x.stride as u32,
            y_stride: y_stride as u32,
            n_used: n_used as u32,
            first_slot: chunk.first_slot as u32,
            n_slots: chunk.slots as u32,
            n_pairs: n_pairs as u32,
            x_group: if x.cols == n_pairs { 1 } else { n_used as u32 },
            weighted: weighted as u32,
            ..Default::default()
        }
    }

    fn check(
        &self,
        x: &Activations,
        n_tokens: usize,
        n_used: usize,
        y: &wgpu::Buffer,
        y_stride: usize,
    ) -> Result<usize> {
        let pairs = n_tokens * n_used;
        if (x.cols != n_tokens && x.cols != pairs) || n_used == 0 {
            return Err(Error::Shape(format!(
                "{} activation columns for {n_tokens} tokens, {n_used} experts each",
                x.cols
            )));
        }
        x.check_plain("an expert product")?;
        x.check(self.k)?;
        super::matvec::check_output(y, pairs, self.rows, y_stride)?;
        Ok(pairs)
    }

    /// Record, for every pair `p = t * n_used + j`:
    /// `y[p * y_stride + row] = weights[p] * Σ_k E[row][k] · x_p[k]` with `E` the expert
    /// `ids[p]` in slot `slot_of[ids[p]]` (weight 1 unless `routing.weighted`); `x_p` is
    /// column p of x when x has a column per pair, else column t. Reads the routing on
    /// the GPU, so no host sync.
    pub fn matvec_id(
        &self,
        ctx: &GpuContext,
        rec: &mut Recorder,
        x: &Activations,
        routing: &Routing,
        y: &wgpu::Buffer,
        y_stride: usize,
    ) -> Result<()> {
        let pairs = self.check(x, routing.n_tokens, routing.n_used, y, y_stride)?;
        let shape = matvec_shape(&ctx.tuning, self.ty, self.k, self.rows, 1, 1, pairs);
        let key = PipelineKey {
            subgroups: ctx.features.subgroups,
            cols: 1,
            rows_per_lane: shape.rows_per_lane,
            split_rows: shape.split_rows,
            split_group: shape.group,
            uniform_x_pages: x.uniform_pages(ctx, self.k),
            shared_lattice: ctx.tuning.lattice_in_workgroup(self.ty),
            ..PipelineKey::new(Kernel::MatvecId, self.ty)
        };
        let max = ctx.max_workgroups_per_dim as usize;
        if pairs > max {
            return Err(Error::Shape(format!(
                "{pairs} (token, expert) pairs exceed {max} per dispatch"
            )));
        }
        for chunk in &self.chunks {
            let params = self.params(chunk, x, y_stride, routing.n_used, pairs, routing.weighted);
            let (gx, gy) = ctx.workgroups_2d(shape.groups);
            let buffers = [
                &chunk.buffer.buffer,
                x.buffer,
                y,
                routing.ids,
                routing.slot_of,
                routing.weights,
                routing.fault,
            ];
            ctx.dispatch(rec, key, bytemuck::bytes_of(&params), &buffers, (gx, gy, pairs as u32))?;
        }
        Ok(())
    }

    /// Record the same product as [`matvec_id`](Self::matvec_id) for pairs grouped by
    /// expert: each expert's weights are decoded once per tile for all its pairs.
    pub fn matmul_id(
        &self,
        ctx: &GpuContext,
        rec: &mut Recorder,
        x: &Activations,
        grouped: &Grouped,
        y: &wgpu::Buffer,
        y_stride: usize,
    ) -> Result<()> {
        let pairs = self.check(x, grouped.n_tokens, grouped.n_used, y, y_stride)?;
        let key = ctx.matmul_key(Kernel::MatmulId, self.ty, grouped.max_count);
        let col_tiles = (grouped.max_count.max(1) as u32).div_ceil(key.cols as u32);
        for chunk in &self.chunks {
            let params = self.params(chunk, x, y_stride, grouped.n_used, pairs, grouped.weighted);
            let groups = (
                (self.rows as u32).div_ceil(TILE_ROWS),
                col_tiles,
                grouped.n_segments as u32,
            );
            let buffers = [
                &chunk.buffer.buffer,
                x.buffer,
                y,
                grouped.order,
                grouped.segments,
                grouped.weights,
            ];
            ctx.dispatch(rec, key, bytemuck::bytes_of(&params), &buffers, groups)?;
        }
        Ok(())
    }
}
