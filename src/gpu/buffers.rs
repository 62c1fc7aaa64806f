//! Device buffers, counted against the context's allocation total.
//!
//! Weights are uploaded as their packed GGUF bytes. A tensor larger than one storage
//! binding (`max_storage_buffer_binding_size`, 128 MiB on lavapipe and WebGPU by default)
//! is split into chunks of whole rows; kernels run once per chunk.

use super::context::GpuContext;
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
    /// A buffer holding `bytes` (zero-padded to a multiple of 4).
    pub fn upload(&self, label: &str, bytes: &[u8], usage: wgpu::BufferUsages) -> Result<Tracked> {
        let size = (bytes.len().max(4) as u64).div_ceil(4) * 4;
        let buffer = self.scoped(&format!("allocating {label} ({size} bytes)"), || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: true,
            })
        })?;
        let buffer = self.track(buffer);
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

    /// An uninitialized buffer of `size` bytes.
    pub fn alloc(&self, label: &str, size: u64, usage: wgpu::BufferUsages) -> Result<Tracked> {
        let size = size.max(4).div_ceil(4) * 4;
        let buffer = self.scoped(&format!("allocating {label} ({size} bytes)"), || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        })?;
        Ok(self.track(buffer))
    }

    fn track(&self, buffer: wgpu::Buffer) -> Tracked {
        let counter = self.allocation_counter();
        counter.fetch_add(buffer.size(), Ordering::Relaxed);
        Tracked { buffer, counter }
    }

    /// Copy a buffer back to the host (blocking; for results and tests).
    pub fn read_back(&self, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let size = bytes.div_ceil(4) * 4;
        let staging = self.alloc(
            "read-back",
            size,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(src, 0, &staging.buffer, 0, size);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.buffer.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| Error::Gpu("read-back never completed".into()))?
            .map_err(|e| Error::Gpu(format!("mapping the read-back buffer: {e}")))?;
        let out = staging
            .buffer
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading back: {e}")))?[..bytes as usize]
            .to_vec();
        staging.buffer.unmap();
        Ok(out)
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
    pub chunks: Vec<Chunk>,
}

impl GpuWeights {
    /// Record one dispatch per chunk (dense products): `layout(chunk)` gives its pipeline
    /// and workgroup counts.
    pub(crate) fn dispatch_chunks(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
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
            ctx.dispatch(encoder, key, bytemuck::bytes_of(&params), buffers, groups)?;
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
            ..Default::default()
        }
    }

    /// Upload `bytes` (rows of `k` elements of `ty`, ggml layout), split into chunks of
    /// whole rows no larger than the context's binding limit.
    pub fn upload(ctx: &GpuContext, name: &str, ty: BlockType, k: usize, bytes: &[u8]) -> Result<Self> {
        let row_bytes = ty.row_bytes(k)?;
        if !k.is_multiple_of(32) || row_bytes == 0 || !bytes.len().is_multiple_of(row_bytes) {
            return Err(Error::Shape(format!(
                "tensor '{name}': {} bytes are not whole {ty} rows of {k} elements (GPU rows are multiples of 32)",
                bytes.len()
            )));
        }
        let rows = bytes.len() / row_bytes;
        let rows_per_chunk = (ctx.max_binding_bytes as usize / row_bytes).min(rows.max(1));
        if rows_per_chunk == 0 {
            return Err(Error::Gpu(format!(
                "tensor '{name}': one row of {row_bytes} bytes exceeds the {} byte binding limit",
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
            } else {
                ctx.upload(name, data, wgpu::BufferUsages::STORAGE)?
            };
            chunks.push(Chunk {
                buffer,
                first_row,
                rows: n,
            });
        }
        Ok(GpuWeights { ty, k, rows, chunks })
    }
}
