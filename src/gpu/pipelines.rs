//! Shader composition and the pipeline cache.
//!
//! A kernel's WGSL is the concatenation of plain parts from `shaders/`: the weight binding (`weights.wgsl`, with
//! `common.wgsl`'s byte access for the block formats), one format's `decode32`
//! (`formats/<type>.wgsl`), for the matvec kernels its `dot32` (`formats/<type>_dot.wgsl`
//! or the generic `dot_decoded.wgsl`), one reduction (`reduce_subgroup.wgsl` or
//! `reduce_shared.wgsl`), the activation binding (`activations_storage.wgsl` or
//! `activations_uniform.wgsl`) and the kernel body. Pipelines are cached under one typed
//! key per (kernel, format, features, activation binding).

use super::context::{GpuContext, ShaderFeatures};
use super::recorder::Recorder;
use crate::error::{Error, Result};
use crate::quant::BlockType;
use std::sync::Arc;

/// The kernels that read packed weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// y = W·x, 1..=8 columns (decode).
    Matvec,
    /// Tiled y = W·X, any number of columns (prefill).
    Matmul,
    /// matvec of the routed expert of every (token, slot) pair, ids read on the GPU.
    MatvecId,
    /// matmul per expert over (token, slot) pairs grouped by expert on the host.
    MatmulId,
    /// Dequantize selected rows of a table (the embedding lookup).
    GetRows,
}

impl Kernel {
    pub const ALL: [Kernel; 5] = [
        Kernel::Matvec,
        Kernel::Matmul,
        Kernel::MatvecId,
        Kernel::MatmulId,
        Kernel::GetRows,
    ];

    /// ggml's name of the operation (`matvec` for `mul_mat_vec`, and so on).
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Matvec => "matvec",
            Kernel::Matmul => "matmul",
            Kernel::MatvecId => "matvec_id",
            Kernel::MatmulId => "matmul_id",
            Kernel::GetRows => "get_rows",
        }
    }

    /// Shared parameters and bindings, then the job addressing, for the product kernels.
    fn preamble(self) -> &'static [&'static str] {
        const PARAMS: &str = include_str!("../../shaders/params.wgsl");
        match self {
            Kernel::Matvec | Kernel::Matmul => &[PARAMS, include_str!("../../shaders/address_dense.wgsl")],
            Kernel::MatvecId => &[PARAMS, include_str!("../../shaders/address_routed.wgsl")],
            Kernel::MatmulId => &[PARAMS, include_str!("../../shaders/address_grouped.wgsl")],
            Kernel::GetRows => &[],
        }
    }

    /// Whether activations come in.
    pub fn takes_activations(self) -> bool {
        self != Kernel::GetRows
    }

    /// Whether the kernel reduces across a workgroup (and so has a subgroup variant).
    pub fn reduces(self) -> bool {
        matches!(self, Kernel::Matvec | Kernel::MatvecId)
    }

    /// Whether it computes output tiles (matmul, matmul_id).
    pub fn tiled(self) -> bool {
        matches!(self, Kernel::Matmul | Kernel::MatmulId)
    }

    /// Whether it takes the expert bindings 5..=7.
    pub fn routed(self) -> bool {
        matches!(self, Kernel::MatvecId | Kernel::MatmulId)
    }
}

/// Uniform parameters of every packed-weights kernel (`Params` in shaders/params.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub rows: u32,
    pub k: u32,
    pub ncols: u32,
    pub row_offset: u32,
    pub x_stride: u32,
    pub y_stride: u32,
    pub n_used: u32,
    pub first_slot: u32,
    pub n_slots: u32,
    pub n_pairs: u32,
    pub accumulate: u32,
    pub x_group: u32,
    pub weighted: u32,
    pub eps: f32,
    pub interleave: u32,
}

/// Everything that selects a distinct pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub kernel: Kernel,
    pub format: BlockType,
    /// Subgroup reduction instead of workgroup memory (reducing kernels only).
    pub subgroups: bool,
    /// Activation columns the matvec kernels are specialized for (`NCOLS`, 1..=8); the
    /// matmul kernels' tile columns (`TN`, [`super::tuning::Tuning::matmul_cols`]); 0 for get_rows.
    pub cols: u8,
    /// matvec kernels: whole rows computed by single invocations, this many each
    /// (`ROWS_PER_LANE`, 1..=8, short rows); 0: each row split over a workgroup.
    pub rows_per_lane: u8,
    /// matvec kernels with rows split over a workgroup: rows per workgroup (`ROWS`,
    /// 1..=8, [`super::tuning::Tuning::split_rows`]); 0 otherwise.
    pub split_rows: u8,
    /// matvec kernels with split rows: lanes per row group (`GROUP`, a power of two up
    /// to the workgroup's 64); 0 otherwise.
    pub split_group: u8,
    /// Activations through a uniform binding of this many [`UNIFORM_X_PAGE`]s
    /// (one-row-per-invocation matvec kernels only); 0: a storage binding.
    pub uniform_x_pages: u8,
    /// The rows are a stacked [gate; up] pair and the output their SwiGLU (`SWIGLU`;
    /// dense matvec with rows per lane only).
    pub swiglu: bool,
    /// An RMSNorm fused in, its weight a uniform binding of this many pages
    /// (`norm_uniform.wgsl`; dense matvec with uniform activations only); 0: none.
    pub norm_pages: u8,
    /// The format's IQ lattice copied into workgroup memory (`lattice_shared.wgsl`;
    /// matvec kernels over formats with a lattice, [`lattice_words`], only); false: read
    /// from the storage binding (`lattice_storage.wgsl`).
    pub shared_lattice: bool,
    /// matmul kernels: the swizzled tiles of `cols` columns (`matmul_swizzled.wgsl`),
    /// rather than the padded tiles of 32 (`matmul.wgsl`);
    /// [`super::tuning::MatmulTiles`].
    pub swizzled: bool,
    /// Swizzled matmul kernels: tiles stored as f16 (needs `shader-f16`), halving their
    /// workgroup memory and its traffic; products and sums stay f32.
    pub f16_tiles: bool,
}

/// Granularity of the uniform activation binding, in bytes: activation buffers meant for
/// it are allocated in multiples of this, and a pipeline exists per page count.
pub const UNIFORM_X_PAGE: u64 = 4096;

/// `bytes` rounded up to whole [`UNIFORM_X_PAGE`]s (at least one): the size of an
/// activation buffer that may be bound as a uniform.
pub fn whole_pages(bytes: u64) -> u64 {
    bytes.div_ceil(UNIFORM_X_PAGE).max(1) * UNIFORM_X_PAGE
}

impl PipelineKey {
    /// The plain variant of `kernel` over `format`: no optional feature, no
    /// specialization (callers set the fields their variant needs).
    pub fn new(kernel: Kernel, format: BlockType) -> Self {
        PipelineKey {
            kernel,
            format,
            subgroups: false,
            cols: 0,
            rows_per_lane: 0,
            split_rows: 0,
            split_group: 0,
            uniform_x_pages: 0,
            norm_pages: 0,
            swiglu: false,
            shared_lattice: false,
            swizzled: false,
            f16_tiles: false,
        }
    }

    /// The kernel's body: for the tiled kernels, that of their tiles.
    fn body(&self) -> &'static str {
        match self.kernel {
            Kernel::Matvec | Kernel::MatvecId => include_str!("../../shaders/matvec.wgsl"),
            Kernel::Matmul | Kernel::MatmulId if self.swizzled => include_str!("../../shaders/matmul_swizzled.wgsl"),
            Kernel::Matmul | Kernel::MatmulId => include_str!("../../shaders/matmul.wgsl"),
            Kernel::GetRows => include_str!("../../shaders/get_rows.wgsl"),
        }
    }

    /// The features this variant needs from the device.
    pub fn needs(&self) -> ShaderFeatures {
        ShaderFeatures {
            subgroups: self.subgroups,
            f16: self.f16_tiles,
        }
    }
}

/// The words of the `grid` binding ([`grid_words`]) a format's decoder reads, as (first,
/// count); None for formats without a lattice.
pub fn lattice_words(ty: BlockType) -> Option<(u32, u32)> {
    match ty {
        BlockType::IQ2_XXS => Some((0, 128)),
        BlockType::IQ1_S | BlockType::IQ1_M => Some((128, 1024)),
        _ => None,
    }
}

/// The formats the GPU kernels decode.
pub const GPU_FORMATS: &[BlockType] = &[
    BlockType::F32,
    BlockType::F16,
    BlockType::Q8_0,
    BlockType::Q4_0,
    BlockType::Q4_1,
    BlockType::Q5_0,
    BlockType::Q2_K,
    BlockType::Q3_K,
    BlockType::Q4_K,
    BlockType::Q5_K,
    BlockType::Q6_K,
    BlockType::IQ4_NL,
    BlockType::TQ1_0,
    BlockType::TQ2_0,
    BlockType::IQ2_XXS,
    BlockType::IQ1_S,
    BlockType::IQ1_M,
];

/// `get_scale_min_k4`, shared by the Q4_K and Q5_K parts.
const SCALE_MIN_K4: &str = include_str!("../../shaders/formats/scale_min_k4.wgsl");

/// Whether a format reads whole vec4s only (F32 and F16, whose 32-element units are
/// 16-byte aligned) rather than blocks that need `common.wgsl`'s byte access.
fn vec4_units(ty: BlockType) -> bool {
    matches!(ty, BlockType::F32 | BlockType::F16)
}

/// The WGSL a format needs before its `decode32` part (shared helpers).
fn format_helpers(ty: BlockType) -> &'static str {
    match ty {
        BlockType::Q4_K | BlockType::Q5_K => SCALE_MIN_K4,
        _ => "",
    }
}

/// The `dot32` part of a format for the one-row-per-invocation matvec: the format's own
/// (the scale applied once per block rather than per element) or the generic one over
/// `decode32`.
fn dot_part(ty: BlockType) -> &'static str {
    match ty {
        BlockType::Q8_0 => include_str!("../../shaders/formats/q8_0_dot.wgsl"),
        BlockType::Q4_0 => include_str!("../../shaders/formats/q4_0_dot.wgsl"),
        BlockType::Q4_1 => include_str!("../../shaders/formats/q4_1_dot.wgsl"),
        _ => include_str!("../../shaders/dot_decoded.wgsl"),
    }
}

/// The `decode32` part of a format, or None when the GPU kernels do not support it.
pub fn format_part(ty: BlockType) -> Option<&'static str> {
    Some(match ty {
        BlockType::F32 => include_str!("../../shaders/formats/f32.wgsl"),
        BlockType::F16 => include_str!("../../shaders/formats/f16.wgsl"),
        BlockType::Q8_0 => include_str!("../../shaders/formats/q8_0.wgsl"),
        BlockType::Q4_0 => include_str!("../../shaders/formats/q4_0.wgsl"),
        BlockType::Q4_1 => include_str!("../../shaders/formats/q4_1.wgsl"),
        BlockType::Q5_0 => include_str!("../../shaders/formats/q5_0.wgsl"),
        BlockType::Q2_K => include_str!("../../shaders/formats/q2_k.wgsl"),
        BlockType::Q3_K => include_str!("../../shaders/formats/q3_k.wgsl"),
        BlockType::Q4_K => include_str!("../../shaders/formats/q4_k.wgsl"),
        BlockType::Q5_K => include_str!("../../shaders/formats/q5_k.wgsl"),
        BlockType::IQ4_NL => include_str!("../../shaders/formats/iq4_nl.wgsl"),
        BlockType::Q6_K => include_str!("../../shaders/formats/q6_k.wgsl"),
        BlockType::TQ1_0 => include_str!("../../shaders/formats/tq1_0.wgsl"),
        BlockType::TQ2_0 => include_str!("../../shaders/formats/tq2_0.wgsl"),
        BlockType::IQ2_XXS => include_str!("../../shaders/formats/iq2_xxs.wgsl"),
        BlockType::IQ1_S => include_str!("../../shaders/formats/iq1_s.wgsl"),
        BlockType::IQ1_M => include_str!("../../shaders/formats/iq1_m.wgsl"),
        _ => return None,
    })
}

/// The complete WGSL of a pipeline variant.
pub fn shader_source(key: &PipelineKey) -> Result<String> {
    let format = format_part(key.format)
        .ok_or_else(|| Error::Unsupported(format!("no GPU kernel for {} weights", key.format)))?;
    let mut src = String::new();
    if key.f16_tiles {
        src.push_str("enable f16;\n");
    }
    // Naga gates subgroup builtins on the device capability and rejects `enable subgroups;`.
    let uniform_x = key.uniform_x_pages > 0;
    if (key.subgroups && !key.kernel.reduces())
        || (uniform_x && !(key.kernel.reduces() && key.rows_per_lane > 0))
        || (key.norm_pages > 0 && !(key.kernel == Kernel::Matvec && uniform_x))
        || (key.swiglu && !(key.kernel == Kernel::Matvec && key.rows_per_lane > 0))
        || (key.shared_lattice && !(key.kernel.reduces() && lattice_words(key.format).is_some()))
        || (key.kernel.tiled() && !(key.cols == 32 || (key.swizzled && key.cols == 64)))
        || (key.swizzled && !key.kernel.tiled())
        || (key.f16_tiles && !key.swizzled)
    {
        return Err(Error::Unsupported(format!("{:?} has no variant {key:?}", key.kernel)));
    }
    src.push_str(include_str!("../../shaders/weights.wgsl"));
    if !vec4_units(key.format) {
        src.push_str(include_str!("../../shaders/common.wgsl"));
    }
    src.push_str(format_helpers(key.format));
    src.push_str(format);
    match lattice_words(key.format) {
        Some((first, words)) if key.shared_lattice => {
            src.push_str(&format!(
                "const LATTICE_BASE: u32 = {first}u;\nconst LATTICE_WORDS: u32 = {words}u;\n"
            ));
            src.push_str(include_str!("../../shaders/lattice_shared.wgsl"));
        }
        _ => src.push_str(include_str!("../../shaders/lattice_storage.wgsl")),
    }
    for part in key.kernel.preamble() {
        src.push_str(part);
    }
    if uniform_x {
        let vec4s = key.uniform_x_pages as u64 * UNIFORM_X_PAGE / 16;
        src.push_str(&format!("const X_VEC4S: u32 = {vec4s}u;\n"));
        src.push_str(include_str!("../../shaders/activations_uniform.wgsl"));
    } else if key.kernel.takes_activations() {
        src.push_str(include_str!("../../shaders/activations_storage.wgsl"));
    }
    if key.kernel.reduces() {
        if key.norm_pages > 0 {
            let vec4s = key.norm_pages as u64 * UNIFORM_X_PAGE / 16;
            src.push_str(&format!("const NORM_VEC4S: u32 = {vec4s}u;\n"));
            src.push_str(include_str!("../../shaders/norm_uniform.wgsl"));
        } else {
            src.push_str(include_str!("../../shaders/norm_none.wgsl"));
        }
        src.push_str(dot_part(key.format));
        src.push_str(if key.subgroups {
            include_str!("../../shaders/reduce_subgroup.wgsl")
        } else {
            include_str!("../../shaders/reduce_shared.wgsl")
        });
    }
    if key.swizzled {
        let tile = if key.f16_tiles { "f16" } else { "f32" };
        src.push_str(&format!("const TN: u32 = {}u;\nalias Tile = {tile};\n", key.cols));
    }
    src.push_str(key.body());
    Ok(src)
}

/// The lattice tables the IQ decoders read (`grid` binding): kgrid_2bit_256 at word 0,
/// kgrid_1bit_2048 at word 128, two u16 entries per u32.
pub fn grid_words() -> Vec<u32> {
    use crate::quant::grids::{KGRID_IQ1S, KGRID_IQ2XXS};
    KGRID_IQ2XXS
        .chunks_exact(2)
        .chain(KGRID_IQ1S.chunks_exact(2))
        .map(|p| p[0] as u32 | (p[1] as u32) << 16)
        .collect()
}

impl GpuContext {
    /// The bind group layout of the kernels that read packed weights: 0 uniform
    /// parameters, 1 weights, 2 activations, 3 output, 4 IQ lattice tables, and for the
    /// expert kernels 5..=7 (ids or order, slot table or segments, routing weights), for
    /// a dense matvec with a fused norm 5 (the norm's weight, uniform); `matvec_id` also
    /// 8, the fault word it sets when an expert is not resident.
    /// Explicit, so that formats whose decoder ignores the lattice take the same bindings.
    fn weights_kernel_layout(&self, key: &PipelineKey) -> wgpu::BindGroupLayout {
        let entry = |binding, ty| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let read = wgpu::BufferBindingType::Storage { read_only: true };
        let mut entries = vec![
            entry(0, wgpu::BufferBindingType::Uniform),
            entry(1, read),
            entry(
                2,
                if key.uniform_x_pages > 0 {
                    wgpu::BufferBindingType::Uniform
                } else {
                    read
                },
            ),
            entry(3, wgpu::BufferBindingType::Storage { read_only: false }),
            entry(4, read),
        ];
        if key.kernel.routed() {
            entries.extend([entry(5, read), entry(6, read), entry(7, read)]);
            if key.kernel == Kernel::MatvecId {
                entries.push(entry(8, wgpu::BufferBindingType::Storage { read_only: false }));
            }
        } else if key.norm_pages > 0 {
            entries.push(entry(5, wgpu::BufferBindingType::Uniform));
        }
        self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("packed weights kernel"),
            entries: &entries,
        })
    }

    /// The cached pipeline for `key`, compiled on first use.
    pub fn pipeline(&self, key: PipelineKey) -> Result<Arc<wgpu::ComputePipeline>> {
        let needs = key.needs();
        if (needs.subgroups && !self.features.subgroups) || (needs.f16 && !self.features.f16) {
            return Err(Error::Unsupported(format!(
                "{key:?} needs device features this context does not use"
            )));
        }
        if let Some(p) = self
            .pipelines
            .lock()
            .map_err(|_| Error::Gpu("pipeline cache poisoned".into()))?
            .get(&key)
        {
            return Ok(p.clone());
        }
        let src = shader_source(&key)?;
        let label = format!("{:?}/{}", key.kernel, key.format);
        let constants: Vec<(&str, f64)> = if key.kernel.reduces() {
            use super::matvec::{MAX_COLS, OUTPUTS};
            if !(1..=MAX_COLS as u8).contains(&key.cols) {
                return Err(Error::Shape(format!("{key:?}: matvec columns must be 1..={MAX_COLS}")));
            }
            // Both layouts keep their sums in one array of OUTPUTS; exactly one is chosen.
            let halves = if key.swiglu { 2 } else { 1 };
            let groups = match key.split_group {
                0 => 1,
                g => 64 / g as usize,
            };
            let sums = (key.rows_per_lane as usize * halves).max(key.split_rows as usize * groups) * key.cols as usize;
            let group_ok = (key.split_rows == 0 && key.split_group == 0)
                || (key.split_group.is_power_of_two() && key.split_group <= 64);
            if sums > OUTPUTS || (key.rows_per_lane > 0) == (key.split_rows > 0) || !group_ok {
                return Err(Error::Shape(format!(
                    "{key:?}: not one layout within {OUTPUTS} sums per invocation"
                )));
            }
            vec![
                ("NCOLS", key.cols as f64),
                ("ROWS_PER_LANE", key.rows_per_lane as f64),
                ("ROWS", key.split_rows.max(1) as f64),
                (
                    "GROUP",
                    if key.split_group == 0 {
                        64.0
                    } else {
                        key.split_group as f64
                    },
                ),
                ("SWIGLU", key.swiglu as u8 as f64),
            ]
        } else {
            Vec::new()
        };
        let pipeline = self.scoped(&format!("compiling {label}"), || {
            let layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&label),
                bind_group_layouts: &[Some(&self.weights_kernel_layout(&key))],
                immediate_size: 0,
            });
            let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
            self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: Some(&layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    ..Default::default()
                },
                cache: None,
            })
        })?;
        let pipeline = Arc::new(pipeline);
        self.pipelines
            .lock()
            .map_err(|_| Error::Gpu("pipeline cache poisoned".into()))?
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }
}

impl GpuContext {
    /// Record one dispatch of a packed-weights kernel (`params` the bytes of its uniform
    /// parameters): `buffers` are bindings 1.. in order
    /// (weights, activations, output, then the expert bindings); the lattice table is bound
    /// at 4 automatically. With `key.uniform_x_pages`, the activations are bound from
    /// offset 0 for that many pages (see [`super::matvec::Activations::uniform_pages`]).
    pub(crate) fn dispatch(
        &self,
        rec: &mut Recorder,
        key: PipelineKey,
        params: &[u8],
        buffers: &[&wgpu::Buffer],
        groups: (u32, u32, u32),
    ) -> Result<()> {
        let pipeline = self.pipeline(key)?;
        let grid = self.grid_buffer()?;
        self.scoped(&format!("recording {:?}", key.kernel), || {
            let uniform = self.params_binding(rec, params)?;
            let mut all: Vec<&wgpu::Buffer> = vec![&uniform.0];
            all.extend_from_slice(&buffers[..3]);
            all.push(&grid.buffer);
            all.extend_from_slice(&buffers[3..]);
            let entries: Vec<wgpu::BindGroupEntry> = all
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource: if i == 0 {
                        uniform.resource()
                    } else if i == 2 && key.uniform_x_pages > 0 {
                        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: b,
                            offset: 0,
                            size: std::num::NonZeroU64::new(key.uniform_x_pages as u64 * UNIFORM_X_PAGE),
                        })
                    } else {
                        b.as_entire_binding()
                    },
                })
                .collect();
            let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("packed weights kernel"),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
            let pass = rec.pass();
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, groups.2);
            Ok(())
        })?
    }

    /// `params` stored in the recording's parameter buffer ([`Recorder::params`]).
    fn params_binding(&self, rec: &mut Recorder, params: &[u8]) -> Result<ParamsBinding> {
        rec.params(&self.device, self.param_align, params)
            .map(|(b, at, size)| ParamsBinding(b, at, size))
    }

    fn grid_buffer(&self) -> Result<&super::buffers::Tracked> {
        if let Some(g) = self.grid.get() {
            return Ok(g);
        }
        let words = grid_words();
        let g = self.upload("iq grids", bytemuck::cast_slice(&words), wgpu::BufferUsages::STORAGE)?;
        Ok(self.grid.get_or_init(|| g))
    }

    /// Split a workgroup count over x and y so neither exceeds the per-dimension limit.
    pub(crate) fn workgroups_2d(&self, n: u32) -> (u32, u32) {
        let max = self.max_workgroups_per_dim.max(1);
        let x = n.clamp(1, max);
        (x, n.div_ceil(x))
    }
}

impl GpuContext {
    /// The cached pipeline of a kernel that reads no packed weights.
    pub(crate) fn simple_pipeline(
        &self,
        name: &'static str,
        source: &'static str,
        entry: &'static str,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let poisoned = || Error::Gpu("pipeline cache poisoned".into());
        if let Some(p) = self.simple.lock().map_err(|_| poisoned())?.get(&(name, entry)) {
            return Ok(p.clone());
        }
        let pipeline = Arc::new(self.scoped(&format!("compiling {name}::{entry}"), || {
            let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        })?);
        self.simple
            .lock()
            .map_err(|_| poisoned())?
            .insert((name, entry), pipeline.clone());
        Ok(pipeline)
    }

    /// Record one dispatch of `pipeline` with `params` as binding 0 and `buffers` as 1...
    pub(crate) fn dispatch_simple(
        &self,
        rec: &mut Recorder,
        pipeline: &wgpu::ComputePipeline,
        params: &[u8],
        buffers: &[&wgpu::Buffer],
        groups: (u32, u32, u32),
    ) -> Result<()> {
        self.scoped("recording a kernel", || {
            let uniform = self.params_binding(rec, params)?;
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: uniform.resource(),
            }];
            entries.extend(buffers.iter().enumerate().map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
            }));
            let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
            let pass = rec.pass();
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, groups.2);
            Ok(())
        })?
    }
}

/// A dispatch's parameters in a recording's parameter buffer: buffer, offset, size.
struct ParamsBinding(wgpu::Buffer, u64, u64);

impl ParamsBinding {
    fn resource(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.0,
            offset: self.1,
            size: std::num::NonZeroU64::new(self.2),
        })
    }
}
