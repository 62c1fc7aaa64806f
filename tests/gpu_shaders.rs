//! Every shader variant (kernel × format × feature set) parses and validates with naga,
//! so a broken shader fails `cargo test` on any machine, GPU or not.

use lowbit::gpu::{GPU_FORMATS, Kernel, PipelineKey, lattice_words, shader_source};
use wgpu::naga;

/// The module stays within the limits lowbit asks of a host's device
/// ([`lowbit::engine::KERNEL_LIMITS`]): storage and uniform bindings, workgroup memory
/// and workgroup size.
fn within_kernel_limits(name: &str, module: &naga::Module) {
    let k = lowbit::engine::KERNEL_LIMITS;
    let count = |space: fn(&naga::AddressSpace) -> bool| {
        module.global_variables.iter().filter(|(_, g)| space(&g.space)).count() as u32
    };
    let storage = count(|s| matches!(s, naga::AddressSpace::Storage { .. }));
    let uniform = count(|s| matches!(s, naga::AddressSpace::Uniform));
    let shared: u32 = module
        .global_variables
        .iter()
        .filter(|(_, g)| g.space == naga::AddressSpace::WorkGroup)
        .map(|(_, g)| module.types[g.ty].inner.size(module.to_ctx()))
        .sum();
    assert!(
        storage <= k.storage_buffers_per_stage,
        "{name}: {storage} storage bindings"
    );
    assert!(
        uniform <= k.uniform_buffers_per_stage,
        "{name}: {uniform} uniform bindings"
    );
    assert!(
        shared <= k.workgroup_storage_bytes,
        "{name}: {shared} bytes of workgroup memory"
    );
    for e in &module.entry_points {
        let [x, y, z] = e.workgroup_size;
        assert!(x <= k.workgroup_size_x, "{name}::{}: workgroup of {x}", e.name);
        assert!(
            x * y * z <= k.invocations_per_workgroup,
            "{name}::{}: {} invocations",
            e.name,
            x * y * z
        );
    }
}

/// Lattice variants of a kernel over a format: reducing kernels over the IQ formats also
/// take the lattice in workgroup memory.
fn lattices(kernel: Kernel, format: lowbit::quant::BlockType) -> usize {
    if kernel.reduces() && lattice_words(format).is_some() {
        2
    } else {
        1
    }
}

fn matmul(kernel: Kernel) -> bool {
    matches!(kernel, Kernel::Matmul | Kernel::MatmulId)
}

#[test]
fn every_shader_variant_validates() {
    let mut checked = 0;
    let mut expected = 0;
    for kernel in Kernel::ALL {
        // Reducing kernels: 2 reductions x (storage activations, or a 2-page uniform binding
        // for one row per invocation, which the dense matvec also takes with a fused norm).
        let bindings = match kernel {
            Kernel::Matvec => 3,
            k if k.reduces() => 2,
            _ => 1,
        };
        let reductions = if kernel.reduces() { 2 } else { 1 };
        let formats: usize = GPU_FORMATS.iter().map(|&f| lattices(kernel, f)).sum();
        // The matmul kernels come padded, and swizzled in two tile widths and in f16.
        let tiles = if matmul(kernel) { 4 } else { 1 };
        expected += formats * reductions * bindings * tiles;
    }
    for kernel in Kernel::ALL {
        for &format in GPU_FORMATS {
            for subgroups in [false, true] {
                if subgroups && !kernel.reduces() {
                    assert!(
                        shader_source(&PipelineKey {
                            subgroups,
                            ..PipelineKey::new(kernel, format)
                        })
                        .is_err()
                    );
                    continue;
                }
                let pages: &[(u8, u8)] = match kernel {
                    Kernel::Matvec => &[(0, 0), (2, 0), (2, 1)],
                    k if k.reduces() => &[(0, 0), (2, 0)],
                    _ => &[(0, 0)],
                };
                for &(uniform_x_pages, norm_pages) in pages {
                    // SWIGLU is a pipeline constant: the source is the same either way.
                    let key = PipelineKey {
                        subgroups,
                        cols: if matmul(kernel) { 32 } else { 1 },
                        rows_per_lane: if uniform_x_pages > 0 { 8 } else { 0 },
                        uniform_x_pages,
                        norm_pages,
                        ..PipelineKey::new(kernel, format)
                    };
                    let swiglu = shader_source(&PipelineKey { swiglu: true, ..key });
                    assert_eq!(
                        swiglu.is_ok(),
                        kernel == Kernel::Matvec && key.rows_per_lane > 0,
                        "{key:?}"
                    );
                    let shared = PipelineKey {
                        shared_lattice: true,
                        ..key
                    };
                    let mut keys = vec![key];
                    if matmul(kernel) {
                        keys.push(PipelineKey { swizzled: true, ..key });
                        keys.push(PipelineKey {
                            swizzled: true,
                            cols: 64,
                            ..key
                        });
                        keys.push(PipelineKey {
                            swizzled: true,
                            f16_tiles: true,
                            cols: 64,
                            ..key
                        });
                        assert!(
                            shader_source(&PipelineKey { f16_tiles: true, ..key }).is_err(),
                            "f16 tiles are swizzled"
                        );
                        assert!(
                            shader_source(&PipelineKey { cols: 64, ..key }).is_err(),
                            "padded tiles are 32 wide"
                        );
                        assert!(shader_source(&PipelineKey { cols: 8, ..key }).is_err());
                    } else {
                        assert!(shader_source(&PipelineKey { swizzled: true, ..key }).is_err());
                    }
                    if lattices(kernel, format) == 2 {
                        keys.push(shared);
                    } else {
                        assert!(shader_source(&shared).is_err(), "{shared:?}");
                    }
                    for key in keys {
                        let src = shader_source(&key).unwrap();
                        let module = naga::front::wgsl::parse_str(&src)
                            .unwrap_or_else(|e| panic!("{key:?}:\n{}", e.emit_to_string(&src)));
                        // unpack2x16float needs SHADER_FLOAT16_IN_FLOAT32, a downlevel capability
                        // every Vulkan, Metal and DX12 device has.
                        let mut caps = naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32;
                        if key.f16_tiles {
                            caps |= naga::valid::Capabilities::SHADER_FLOAT16;
                        }
                        if subgroups {
                            caps |= naga::valid::Capabilities::SUBGROUP;
                        }
                        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
                            .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
                            .subgroup_operations(naga::valid::SubgroupOperationSet::all())
                            .validate(&module)
                            .unwrap_or_else(|e| panic!("{key:?}:\n{}", e.emit_to_string(&src)));
                        within_kernel_limits(&format!("{key:?}"), &module);
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, expected);
    let reduced_rows = PipelineKey {
        cols: 1,
        uniform_x_pages: 1,
        ..PipelineKey::new(Kernel::Matvec, GPU_FORMATS[0])
    };
    assert!(
        shader_source(&reduced_rows).is_err(),
        "the uniform binding is only for one row per invocation"
    );
    let storage_norm = PipelineKey {
        uniform_x_pages: 0,
        rows_per_lane: 8,
        split_rows: 0,
        split_group: 0,
        norm_pages: 1,
        ..reduced_rows
    };
    assert!(
        shader_source(&storage_norm).is_err(),
        "a fused norm needs uniform activations"
    );
    let routed_norm = PipelineKey {
        kernel: Kernel::MatvecId,
        uniform_x_pages: 1,
        rows_per_lane: 8,
        split_rows: 0,
        split_group: 0,
        norm_pages: 1,
        ..reduced_rows
    };
    assert!(shader_source(&routed_norm).is_err(), "no fused norm in expert products");
}

/// The kernels that do not read packed weights, validated without a GPU.
#[test]
fn standalone_shaders_validate() {
    let shaders = [
        ("copy", include_str!("../shaders/copy.wgsl")),
        ("rms_norm", include_str!("../src/gpu/ops/rms_norm.wgsl")),
        ("rope", include_str!("../src/gpu/ops/rope.wgsl")),
        ("attention", include_str!("../src/gpu/ops/attention.wgsl")),
        ("elementwise", include_str!("../src/gpu/ops/elementwise.wgsl")),
        ("copy_columns", include_str!("../src/gpu/ops/copy_columns.wgsl")),
        ("pair_sums", include_str!("../src/gpu/ops/pair_sums.wgsl")),
        ("route", include_str!("../src/gpu/ops/route.wgsl")),
        ("argmax", include_str!("../src/gpu/ops/argmax.wgsl")),
    ];
    for (name, src) in shaders {
        let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        within_kernel_limits(name, &module);
    }
}

/// Each simple kernel's WGSL parameter struct has the size of the Rust struct whose bytes
/// the recorder binds (a field added on one side only fails here, not on a GPU).
#[test]
fn wgsl_parameter_structs_match_their_rust_twins() {
    for p in lowbit::gpu::ops::PARAM_STRUCTS {
        let module = naga::front::wgsl::parse_str(p.source).unwrap();
        let (_, ty) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some(p.wgsl_name))
            .unwrap_or_else(|| panic!("no struct {} in its shader", p.wgsl_name));
        let naga::TypeInner::Struct { span, .. } = ty.inner else {
            panic!("{} is not a struct", p.wgsl_name);
        };
        assert_eq!(span as usize, p.rust_bytes, "{}: WGSL against Rust bytes", p.wgsl_name);
    }
    assert_eq!(lowbit::gpu::ops::PARAM_STRUCTS.len(), 8);
}
