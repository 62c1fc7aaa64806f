//! The GPU settings that change which kernels a model selects, and backends that prove
//! they got the setting they asked for (a silent fallback cannot pass a test).

use lowbit::gpu::{GpuBackend, GpuOptions};

/// A setting of the two gates that select kernel variants.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    /// Subgroup reductions (`reduce_subgroup.wgsl`) rather than workgroup memory.
    pub subgroups: bool,
    /// Decode products read activations through a uniform binding, which also selects
    /// the fused RMSNorm products (`norm_uniform.wgsl`); otherwise a storage binding.
    pub uniform_activations: bool,
}

/// Every combination of the gates.
pub const SETTINGS: [Setting; 4] = [
    Setting {
        subgroups: true,
        uniform_activations: true,
    },
    Setting {
        subgroups: false,
        uniform_activations: true,
    },
    Setting {
        subgroups: true,
        uniform_activations: false,
    },
    Setting {
        subgroups: false,
        uniform_activations: false,
    },
];

/// A GPU backend (lavapipe in CI) in `setting`, weights split into bindings of at most
/// `binding` bytes when given. Panics unless the context uses exactly the features asked
/// for: the test device must offer subgroups and a uniform binding.
pub fn backend(setting: Setting, binding: Option<u64>) -> GpuBackend {
    let g = GpuBackend::new(GpuOptions {
        subgroups: setting.subgroups,
        max_binding_bytes: binding,
        uniform_activations: setting.uniform_activations,
        ..Default::default()
    })
    .expect("a Vulkan adapter (install mesa-vulkan-drivers for lavapipe)");
    assert_eq!(g.ctx.features.subgroups, setting.subgroups, "{setting:?}: subgroups");
    assert_eq!(
        g.ctx.max_uniform_x_bytes > 0,
        setting.uniform_activations,
        "{setting:?}: uniform activations"
    );
    g
}
