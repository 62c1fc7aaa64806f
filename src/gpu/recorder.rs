//! A command encoder that keeps one compute pass open across consecutive dispatches.
//!
//! Every kernel records through a [`Recorder`]: dispatches go into the open compute pass
//! (opened on first use), and buffer copies end it first. A decode step of SmolLM2 is
//! 182 dispatches; on llvmpipe a compute pass per dispatch made a step of 182 trivial
//! dispatches, each with its own uniform buffer and bind group as lowbit records them,
//! cost 6.1 ms against 3.4-4.6 ms in one pass (a throwaway wgpu program, 2026-11-29).
//!
//! The dispatches' uniform parameters share one buffer per 64 KiB of them
//! ([`PARAM_CHUNK`]), mapped at creation and written as the dispatches are recorded, each
//! bound at its own aligned offset, instead of one buffer per dispatch. The buffers are
//! unmapped when the recording ends ([`Recorder::finish`], [`Recorder::into_encoder`]),
//! before anything that uses them can be submitted.

use super::context::GpuContext;
use crate::error::{Error, Result};

/// Bytes of one parameter buffer.
pub const PARAM_CHUNK: u64 = 64 << 10;

impl GpuContext {
    /// A recorder over a new command encoder of this device.
    pub fn recorder(&self) -> Recorder {
        Recorder::new(
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("lowbit") }),
        )
    }
}

/// Records GPU work into a command encoder it owns (the host's own, handed in, or a new
/// one); [`Recorder::finish`] returns the command buffer to submit.
pub struct Recorder {
    encoder: wgpu::CommandEncoder,
    pass: Option<wgpu::ComputePass<'static>>,
    /// The parameter buffer being filled (mapped) and the bytes used in it.
    params: Option<(wgpu::Buffer, u64)>,
}

impl Recorder {
    /// Record into `encoder` (work already in it stays first).
    pub fn new(encoder: wgpu::CommandEncoder) -> Self {
        Recorder {
            encoder,
            pass: None,
            params: None,
        }
    }

    /// Store `bytes` (a kernel's uniform parameters) in this recording's parameter buffer,
    /// at an offset aligned to `align` (the device's `min_uniform_buffer_offset_alignment`),
    /// padded with zeros to a multiple of 16: (buffer, offset, size) to bind them.
    pub(crate) fn params(
        &mut self,
        device: &wgpu::Device,
        align: u64,
        bytes: &[u8],
    ) -> Result<(wgpu::Buffer, u64, u64)> {
        let size = (bytes.len().max(16) as u64).div_ceil(16) * 16;
        if size > PARAM_CHUNK {
            return Err(Error::Shape(format!("{size} bytes of kernel parameters")));
        }
        let at = self.params.as_ref().map(|(_, used)| used.div_ceil(align) * align);
        let at = match at {
            Some(at) if at + size <= PARAM_CHUNK => at,
            _ => {
                self.unmap_params();
                self.params = Some((
                    device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("kernel params"),
                        size: PARAM_CHUNK,
                        usage: wgpu::BufferUsages::UNIFORM,
                        mapped_at_creation: true,
                    }),
                    0,
                ));
                0
            }
        };
        let (buffer, used) = self.params.as_mut().expect("a parameter buffer was just made");
        buffer
            .slice(at..at + size)
            .get_mapped_range_mut()
            .map_err(|e| Error::Gpu(format!("writing kernel parameters: {e}")))?
            .slice(..bytes.len())
            .copy_from_slice(bytes);
        *used = at + size;
        Ok((buffer.clone(), at, size))
    }

    /// Unmap the parameter buffer being filled, which makes it usable by the GPU.
    fn unmap_params(&mut self) {
        if let Some((buffer, _)) = self.params.take() {
            buffer.unmap();
        }
    }

    /// The open compute pass, opened now if there is none.
    pub fn pass(&mut self) -> &mut wgpu::ComputePass<'static> {
        let encoder = &mut self.encoder;
        self.pass.get_or_insert_with(|| {
            encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("lowbit"),
                    timestamp_writes: None,
                })
                .forget_lifetime()
        })
    }

    /// End the open pass and open one whose start and end write timestamps `begin` and
    /// `end` of `queries` (needs `TIMESTAMP_QUERY`): the dispatches recorded until the
    /// next pass ends run inside it, and the two stamps bound their device time.
    pub fn timed_pass(&mut self, queries: &wgpu::QuerySet, begin: u32, end: u32) {
        self.pass = None;
        self.pass = Some(
            self.encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("lowbit timed"),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: queries,
                        beginning_of_pass_write_index: Some(begin),
                        end_of_pass_write_index: Some(end),
                    }),
                })
                .forget_lifetime(),
        );
    }

    /// The encoder, for commands outside a compute pass (copies): the open pass ends.
    pub fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        &mut self.encoder
    }

    /// End the open pass, unmap the parameters, and hand back the encoder.
    pub fn into_encoder(mut self) -> wgpu::CommandEncoder {
        self.pass = None;
        self.unmap_params();
        self.encoder
    }

    /// End the open pass and finish the encoder.
    pub fn finish(self) -> wgpu::CommandBuffer {
        self.into_encoder().finish()
    }
}
