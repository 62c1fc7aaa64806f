//! Reads to the host that never block: a copy into a staging buffer, mapped by
//! `map_buffer_on_submit` when its commands are submitted (by lowbit, or by the host
//! when lowbit records into the host's encoder), and polled with `PollType::Poll`.
//!
//! Staging buffers come from a small pool reused across reads ([`STAGING_KEPT`] kept),
//! so that a decode step allocates none. Each read also copies the expert kernels'
//! fault word (once one has run), checked when the data arrives.

use super::backend::{GpuBackend, GpuTensor};
use super::buffers::Tracked;
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// Staging buffers kept for reuse.
pub const STAGING_KEPT: usize = 2;

/// What the map callback reports: None until it has run.
type MapState = Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>;

/// A read of a tensor in flight (see [`crate::backend::Backend::read_start`]).
pub struct GpuRead {
    staging: Option<Tracked>,
    /// Bytes of data, then (when `fault`) 8 bytes of the fault word at `data_bytes`.
    data_bytes: u64,
    fault: bool,
    state: MapState,
}

impl GpuBackend {
    /// Record a copy of `x` (and the fault word) into a staging buffer that is mapped
    /// when the copy is submitted; submits it unless recording into the host's encoder.
    pub(crate) fn start_read(&mut self, x: &GpuTensor) -> Result<GpuRead> {
        let data_bytes = (x.n * x.width * 4) as u64;
        let fault = self.ctx.fault.get().map(|f| f.buffer.clone());
        let total = data_bytes + if fault.is_some() { 8 } else { 0 };
        let staging = match self.staging.iter().position(|b| b.buffer.size() >= total) {
            Some(i) => self.staging.swap_remove(i),
            None => self.ctx.alloc(
                "read-back",
                total,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            )?,
        };
        let state: MapState = Arc::new(Mutex::new(None));
        let done = state.clone();
        self.record("read-back copy", |_, rec| {
            let encoder = rec.encoder();
            encoder.copy_buffer_to_buffer(x.buffer(), 0, &staging.buffer, 0, data_bytes);
            if let Some(f) = &fault {
                encoder.copy_buffer_to_buffer(f, 0, &staging.buffer, data_bytes, 8);
            }
            encoder.map_buffer_on_submit(&staging.buffer, wgpu::MapMode::Read, .., move |r| {
                if let Ok(mut s) = done.lock() {
                    *s = Some(r);
                }
            });
            Ok(())
        })?;
        self.flush();
        Ok(GpuRead {
            staging: Some(staging),
            data_bytes,
            fault: fault.is_some(),
            state,
        })
    }

    /// The read's values once mapped, None while in flight. Polls the device once
    /// (`PollType::Poll`), never waits. The staging buffer returns to the pool.
    pub(crate) fn poll_read(&mut self, read: &mut GpuRead) -> Result<Option<Vec<f32>>> {
        if read.staging.is_none() {
            return Err(Error::Unsupported(
                "polling a read that already returned its data".into(),
            ));
        }
        let arrived = |r: &GpuRead| r.state.lock().map(|s| s.is_some()).unwrap_or(true);
        if !arrived(read) {
            self.ctx.device_idle()?;
            self.ctx.check_lost()?;
            if !arrived(read) {
                return Ok(None);
            }
        }
        let outcome = read
            .state
            .lock()
            .map_err(|_| Error::Gpu("a read-back callback panicked".into()))?
            .take();
        let staging = read.staging.take().expect("checked above");
        if let Some(Err(e)) = outcome {
            return Err(Error::Gpu(format!("mapping the read-back buffer: {e}")));
        }
        let (values, fault) = {
            let mapped = staging
                .buffer
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("reading back: {e}")))?;
            let data = &mapped[..read.data_bytes as usize];
            let fault = read.fault.then(|| mapped[data.len()..data.len() + 8].to_vec());
            (bytemuck::pod_collect_to_vec::<u8, f32>(data), fault)
        };
        staging.buffer.unmap();
        if self.staging.len() < STAGING_KEPT {
            self.staging.push(staging);
        }
        if let Some(words) = fault {
            self.ctx.check_fault(&words)?;
        }
        Ok(Some(values))
    }

    /// Wait for a started read: polls until its own submission is done (never for
    /// work submitted after it, the host's included).
    pub(crate) fn wait_read(&mut self, read: &mut GpuRead) -> Result<Vec<f32>> {
        loop {
            if let Some(v) = self.poll_read(read)? {
                return Ok(v);
            }
            let index = self.last_submission.clone();
            self.ctx
                .device
                .poll(wgpu::PollType::Wait {
                    submission_index: index,
                    timeout: None,
                })
                .map_err(|e| Error::Gpu(format!("waiting for a read-back: {e}")))?;
        }
    }
}
