//! A plain buffer copy (`shaders/copy.wgsl`): the bandwidth baseline that kernel
//! benchmarks are reported against, measured on the same adapter in the same run.

use super::context::GpuContext;
use super::recorder::Recorder;
use crate::error::{Error, Result};

impl GpuContext {
    /// Record a copy of `src` into `dst` (same size, a multiple of 16 bytes) through a
    /// compute shader, so that it goes through the same memory path as the kernels.
    pub fn copy_kernel(&self, rec: &mut Recorder, src: &wgpu::Buffer, dst: &wgpu::Buffer) -> Result<()> {
        if src.size() != dst.size() || !src.size().is_multiple_of(16) {
            return Err(Error::Shape(format!(
                "copy of {} into {} bytes",
                src.size(),
                dst.size()
            )));
        }
        let pipeline = self.copy_pipeline()?;
        self.scoped("recording copy", || {
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

    fn copy_pipeline(&self) -> Result<wgpu::ComputePipeline> {
        self.scoped("compiling copy", || {
            let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("copy"),
                source: wgpu::ShaderSource::Wgsl(include_str!("../../shaders/copy.wgsl").into()),
            });
            self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("copy"),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            })
        })
    }
}
