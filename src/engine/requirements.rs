//! What a device must offer lowbit: the limits its kernels need (checked by
//! `tests/gpu_shaders.rs` against every shader variant with naga), and per model the
//! largest buffer it binds. A shortfall is an error that lists every missing limit.

use crate::error::{Error, Result};

/// The limits lowbit's kernels need of a device: WebGPU's defaults, which every
/// Vulkan, Metal and DX12 device meets. Larger weights are split into bindings of at
/// most the device's `max_storage_buffer_binding_size`.
pub const KERNEL_LIMITS: KernelLimits = KernelLimits {
    storage_buffers_per_stage: 8,
    uniform_buffers_per_stage: 3,
    workgroup_storage_bytes: 16384,
    invocations_per_workgroup: 256,
    workgroup_size_x: 256,
};

/// Limits a kernel needs (the matching `wgpu::Limits` fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLimits {
    /// `max_storage_buffers_per_shader_stage`.
    pub storage_buffers_per_stage: u32,
    /// `max_uniform_buffers_per_shader_stage`.
    pub uniform_buffers_per_stage: u32,
    /// `max_compute_workgroup_storage_size`.
    pub workgroup_storage_bytes: u32,
    /// `max_compute_invocations_per_workgroup`.
    pub invocations_per_workgroup: u32,
    /// `max_compute_workgroup_size_x`.
    pub workgroup_size_x: u32,
}

/// An error listing each limit of `have` below lowbit's kernels' needs.
pub(crate) fn check_kernels(have: &wgpu::Limits) -> Result<()> {
    let k = KERNEL_LIMITS;
    let needs = [
        (
            "max_storage_buffers_per_shader_stage",
            have.max_storage_buffers_per_shader_stage,
            k.storage_buffers_per_stage,
        ),
        (
            "max_uniform_buffers_per_shader_stage",
            have.max_uniform_buffers_per_shader_stage,
            k.uniform_buffers_per_stage,
        ),
        (
            "max_compute_workgroup_storage_size",
            have.max_compute_workgroup_storage_size,
            k.workgroup_storage_bytes,
        ),
        (
            "max_compute_invocations_per_workgroup",
            have.max_compute_invocations_per_workgroup,
            k.invocations_per_workgroup,
        ),
        (
            "max_compute_workgroup_size_x",
            have.max_compute_workgroup_size_x,
            k.workgroup_size_x,
        ),
    ];
    report(needs.iter().map(|&(name, have, need)| (name, have as u64, need as u64)))
}

/// An error listing each limit of `have` below what a model with its largest whole
/// buffer of `largest_buffer` bytes needs (a KV cache of one layer, or a pass's logits).
pub(crate) fn check_model(have: &wgpu::Limits, largest_buffer: u64, what: &str) -> Result<()> {
    let needs = [
        ("max_buffer_size", have.max_buffer_size, largest_buffer),
        (
            "max_storage_buffer_binding_size",
            have.max_storage_buffer_binding_size,
            largest_buffer,
        ),
    ];
    report(needs.into_iter()).map_err(|e| Error::Unsupported(format!("{what}: {e}")))
}

fn report(needs: impl Iterator<Item = (&'static str, u64, u64)>) -> Result<()> {
    let missing: Vec<String> = needs
        .filter(|&(_, have, need)| have < need)
        .map(|(name, have, need)| format!("{name} is {have}, lowbit needs {need}"))
        .collect();
    match missing.is_empty() {
        true => Ok(()),
        false => Err(Error::Unsupported(format!(
            "the device's limits are too low: {}",
            missing.join("; ")
        ))),
    }
}
