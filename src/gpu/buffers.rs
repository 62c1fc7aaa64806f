//! Device buffers, counted against the context's allocation total.
//!
//! Weights are uploaded as their packed GGUF bytes. A tensor larger than one storage
//! binding (`max_storage_buffer_binding_size`, 128 MiB on lavapipe and WebGPU by default)
//! is split into chunks of whole rows; kernels run once per chunk.

use super::context::GpuContext;
use super::recorder::Recorder;
use crate::error::{Error, Result};
use crate::quant::BlockType;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A buffer whose size is counted in [`GpuContext::allocated_bytes`] until it is dropped.
pub struct Tracked {
    pub buffer: wgpu::Buffer,
    counter: Arc<AtomicU64>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.buffer.size(), Ordering::Relaxed);
    }
}

impl GpuContext {
    /// A buffer holding `bytes`, zero-padded to a multiple of 16 (weights are bound as
    /// `vec4<u32>`, `shaders/weights.wgsl`).
    pub fn upload(&self, label: &str, bytes: &[u8], usage: wgpu::BufferUsages) -> Result<Tracked> {
        let size = (bytes.len().max(16) as u64).div_ceil(16) * 16;
        let buffer = self.create(label, size, usage, true)?;
        buffer
            .buffer
            .slice(..)
            .get_mapped_range_mut()
            .map_err(|e| Error::Gpu(format!("mapping {label} for upload: {e}")))?
            .slice(..bytes.len())
            .copy_from_slice(bytes);
        buffer.buffer.unmap();
        Ok(buffer)
    }

    /// An uninitialized buffer of `size` bytes, rounded up to a multiple of 16 (kernels
    /// bind activations as `vec4<f32>`, `shaders/activations_storage.wgsl`).
    pub fn alloc(&self, label: &str, size: u64, usage: wgpu::BufferUsages) -> Result<Tracked> {
        self.create(label, size.max(16).div_ceil(16) * 16, usage, false)
    }

    /// A buffer of `size` bytes, counted (and checked against the budget) before it is
    /// created.
    fn create(&self, label: &str, size: u64, usage: wgpu::BufferUsages, mapped: bool) -> Result<Tracked> {
        let counter = self.reserve(label, size)?;
        let created = self.scoped(&format!("allocating {label} ({size} bytes)"), || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: mapped,
            })
        });
        match created {
            Ok(buffer) => Ok(Tracked { buffer, counter }),
            Err(e) => {
                counter.fetch_sub(size, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Copy the first bytes of several buffers back to the host in one submission and
    /// one wait: `parts` are (buffer, bytes).
    pub fn read_back_parts(&self, parts: &[(&wgpu::Buffer, u64)]) -> Result<Vec<Vec<u8>>> {
        let sizes: Vec<u64> = parts.iter().map(|&(_, b)| b.div_ceil(4) * 4).collect();
        let staging = self.alloc(
            "read-back",
            sizes.iter().sum(),
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let mut enc = self.device.create_command_encoder(&Default::default());
        let mut at = 0;
        for (&(src, _), &size) in parts.iter().zip(&sizes) {
            enc.copy_buffer_to_buffer(src, 0, &staging.buffer, at, size);
            at += size;
        }
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.buffer.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| Error::Gpu("read-back never completed".into()))?
            .map_err(|e| Error::Gpu(format!("mapping the read-back buffer: {e}")))?;
        let mapped = staging
            .buffer
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading back: {e}")))?;
        let mut out = Vec::with_capacity(parts.len());
        let mut at = 0;
        for (&(_, bytes), &size) in parts.iter().zip(&sizes) {
            out.push(mapped[at as usize..(at + bytes) as usize].to_vec());
            at += size;
        }
        drop(mapped);
        staging.buffer.unmap();
        Ok(out)
    }

    /// Copy a buffer back to the host (blocking; for results and tests).
    pub fn read_back(&self, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        Ok(self.read_back_parts(&[(src, bytes)])?.remove(0))
    }
}

/// One binding's worth of whole rows of a weight tensor.
pub struct Chunk {
    pub buffer: Tracked,
    pub first_row: usize,
    pub rows: usize,
}

/// A 2-D weight matrix on the device: `rows` rows of `k` elements of `ty`, packed.
pub struct GpuWeights {
    pub ty: BlockType,
    pub k: usize,
    pub rows: usize,
    /// log2 of the row groups the blocks are interleaved in (`interleave_rows`; 0:
    /// ggml's row-major layout).
    pub interleave: u32,
    pub chunks: Vec<Chunk>,
}

impl GpuWeights {
    /// Record one dispatch per chunk (dense products): `layout(chunk)` gives its pipeline
    /// and workgroup counts.
    pub(crate) fn dispatch_chunks(
        &self,
        ctx: &GpuContext,
        rec: &mut Recorder,
        x: &super::matvec::Activations,
        y: &super::matvec::Output,
        layout: impl Fn(&Chunk) -> (super::pipelines::PipelineKey, (u32, u32, u32)),
    ) -> Result<()> {
        for chunk in &self.chunks {
            let params = self.chunk_params(chunk, x, y);
            let norm = x.norm.as_ref().map(|n| n.weight);
            let all = [&chunk.buffer.buffer, x.buffer, y.buffer, norm.unwrap_or(y.buffer)];
            let buffers = &all[..if norm.is_some() { 4 } else { 3 }];
            let (key, groups) = layout(chunk);
            ctx.dispatch(rec, key, bytemuck::bytes_of(&params), buffers, groups)?;
        }
        Ok(())
    }

    /// Kernel parameters of a dense product over one chunk.
    fn chunk_params(
        &self,
        chunk: &Chunk,
        x: &super::matvec::Activations,
        y: &super::matvec::Output,
    ) -> super::pipelines::Params {
        super::pipelines::Params {
            eps: x.norm.as_ref().map_or(0.0, |n| n.eps),
            rows: chunk.rows as u32,
            k: self.k as u32,
            ncols: x.cols as u32,
            row_offset: chunk.first_row as u32,
            x_stride: x.stride as u32,
            y_stride: y.stride as u32,
            accumulate: y.accumulate as u32,
            interleave: self.interleave,
            ..Default::default()
        }
    }

    /// Upload `bytes` (rows of `k` elements of `ty`, ggml layout), split into chunks of
    /// whole rows no larger than the context's binding limit, and stored in the row
    /// interleave `matvec::row_interleave` picks for the shape.
    pub fn upload(ctx: &GpuContext, name: &str, ty: BlockType, k: usize, bytes: &[u8]) -> Result<Self> {
        let row_bytes = ty.row_bytes(k)?;
        if !k.is_multiple_of(32) || row_bytes == 0 || !bytes.len().is_multiple_of(row_bytes) {
            return Err(Error::Shape(format!(
                "tensor '{name}': {} bytes are not whole {ty} rows of {k} elements (GPU rows are multiples of 32)",
                bytes.len()
            )));
        }
        let rows = bytes.len() / row_bytes;
        let interleave = super::matvec::row_interleave(&ctx.tuning, ty, k, rows);
        let group = 1usize << interleave;
        let rows_per_chunk = (ctx.max_binding_bytes as usize / row_bytes / group * group).min(rows.max(1));
        if rows_per_chunk == 0 {
            return Err(Error::Gpu(format!(
                "tensor '{name}': {group} rows of {row_bytes} bytes exceed the {} byte binding limit",
                ctx.max_binding_bytes
            )));
        }
        let mut chunks = Vec::new();
        // A vector of f32 (an RMSNorm's weight) also goes in whole uniform pages, so that
        // a product with the norm fused in can read it through a uniform binding.
        let vector = ty == BlockType::F32 && rows == 1;
        for first_row in (0..rows).step_by(rows_per_chunk) {
            let n = rows_per_chunk.min(rows - first_row);
            let data = &bytes[first_row * row_bytes..(first_row + n) * row_bytes];
            let buffer = if vector {
                let mut padded = data.to_vec();
                padded.resize(super::pipelines::whole_pages(data.len() as u64) as usize, 0);
                ctx.upload(name, &padded, wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM)?
            } else if interleave > 0 {
                let blocks = k / ty.block_size();
                ctx.upload(
                    name,
                    &interleave_rows(data, blocks, ty.type_size(), interleave),
                    wgpu::BufferUsages::STORAGE,
                )?
            } else {
                ctx.upload(name, data, wgpu::BufferUsages::STORAGE)?
            };
            chunks.push(Chunk {
                buffer,
                first_row,
                rows: n,
            });
        }
        Ok(GpuWeights {
            ty,
            k,
            rows,
            interleave,
            chunks,
        })
    }
}

/// Rows of `blocks` blocks of `block_bytes` each (ggml's row-major layout) regrouped
/// into groups of 2^`log2` rows, each group block-major: block j of row r lands at block
/// ((r >> log2)·blocks + j)·2^log2 + (r mod 2^log2), the last group padded with zero
/// rows. `block_in` in shaders/weights.wgsl reads this layout.
pub(crate) fn interleave_rows(data: &[u8], blocks: usize, block_bytes: usize, log2: u32) -> Vec<u8> {
    let group = 1usize << log2;
    let row_bytes = blocks * block_bytes;
    let rows = data.len() / row_bytes;
    let mut out = vec![0u8; rows.div_ceil(group) * group * row_bytes];
    for (r, row) in data.chunks_exact(row_bytes).enumerate() {
        for (j, block) in row.chunks_exact(block_bytes).enumerate() {
            let at = (((r >> log2) * blocks + j) << log2) + (r & (group - 1));
            out[at * block_bytes..][..block_bytes].copy_from_slice(block);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::interleave_rows;

    #[test]
    fn interleaved_rows_are_block_major_within_groups() {
        // 3 rows of 2 two-byte blocks; byte = 10·row + 2·block + (0 or 1).
        let data: Vec<u8> = (0..3u8).flat_map(|r| (0..4u8).map(move |i| 10 * r + i)).collect();
        let out = interleave_rows(&data, 2, 2, 1);
        // Group 0: block 0 of rows 0 and 1, then block 1 of rows 0 and 1; group 1: row 2
        // and a zero row.
        assert_eq!(out, [0, 1, 10, 11, 2, 3, 12, 13, 20, 21, 0, 0, 22, 23, 0, 0]);
        assert_eq!(interleave_rows(&data, 2, 2, 0), data);
    }
}
