//! A plain buffer copy and a read-only pass over a buffer (`shaders/copy.wgsl`): the
//! bandwidth baselines that kernel benchmarks are reported against, measured on the
//! same adapter in the same run.

use super::context::GpuContext;
use super::recorder::Recorder;
use crate::error::{Error, Result};

impl GpuContext {
    /// Record a copy of `src` into `dst` (same size, a multiple of 16 bytes) through a
    /// compute shader, so that it goes through the same memory path as the kernels.
    pub fn copy_kernel(&self, rec: &mut Recorder, src: &wgpu::Buffer, dst: &wgpu::Buffer) -> Result<()> {
        self.baseline(rec, "main", src, dst)
    }

    /// Record a pass that loads all of `src` (a multiple of 16 bytes) and writes nothing
    /// in practice (`dst`, at least 16 bytes, is bound for the impossible store).
    pub fn read_kernel(&self, rec: &mut Recorder, src: &wgpu::Buffer, dst: &wgpu::Buffer) -> Result<()> {
        self.baseline(rec, "load_only", src, dst)
    }

    fn baseline(&self, rec: &mut Recorder, entry: &'static str, src: &wgpu::Buffer, dst: &wgpu::Buffer) -> Result<()> {
        let sizes_ok = if entry == "main" {
            src.size() == dst.size()
        } else {
            dst.size() >= 16
        };
        if !sizes_ok || !src.size().is_multiple_of(16) {
            return Err(Error::Shape(format!(
                "copy of {} into {} bytes",
                src.size(),
                dst.size()
            )));
        }
        let pipeline = self.simple_pipeline("copy", include_str!("../../shaders/copy.wgsl"), entry)?;
        self.scoped("recording a baseline", || {
            let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("copy"),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: src.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: dst.as_entire_binding(),
                    },
                ],
            });
            let (gx, gy) = self.workgroups_2d((src.size() / 16).div_ceil(256) as u32);
            let pass = rec.pass();
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(gx, gy, 1);
        })
    }
}
