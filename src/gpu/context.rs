//! The GPU context: a wgpu device lowbit creates, or one a host application hands in.
//!
//! A handed-in device is used as it is: lowbit reads its features and limits and never
//! requests more. `subgroups` is used when present, with a fallback that can also be
//! forced (for tests) through [`GpuOptions`] or the environment variable
//! `LOWBIT_NO_SUBGROUPS=1`; the uniform activation binding of the decode kernels likewise
//! through `LOWBIT_NO_UNIFORM_X=1`. Activations and sums are f32 everywhere; `shader-f16`,
//! where the device has it, only halves the swizzled matmul's tiles
//! ([`super::tuning::MatmulTiles`]), and `LOWBIT_NO_F16=1` forces f32 tiles.

use super::tuning::{MatmulTiles, RowLayout, Tuning, parse_lattice, parse_rows};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Choices a caller may make about device capabilities.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Use subgroup reductions when the device has them.
    pub subgroups: bool,
    /// Store the swizzled matmul's tiles as f16 when the device has `shader-f16`.
    pub shader_f16: bool,
    /// Split weight tensors into bindings of at most this many bytes, below the
    /// device's `max_storage_buffer_binding_size` (tests force small chunks with it).
    pub max_binding_bytes: Option<u64>,
    /// Let the one-row-per-invocation matvec kernels read activations through a uniform
    /// binding (within the device's `max_uniform_buffer_binding_size`) when the
    /// activation buffer allows it.
    pub uniform_activations: bool,
    /// Override the adapter's matvec row layout ([`Tuning`]).
    pub matvec_layout: Option<RowLayout>,
    /// Override the adapter's rows per workgroup of split matvecs (1..=8).
    pub matvec_rows: Option<u8>,
    /// Override whether the matvec kernels copy the IQ lattices into workgroup memory.
    pub shared_lattice: Option<bool>,
    /// Override the adapter's matmul tiles.
    pub matmul_tiles: Option<MatmulTiles>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            subgroups: true,
            shader_f16: true,
            max_binding_bytes: None,
            uniform_activations: true,
            matvec_layout: None,
            matvec_rows: None,
            shared_lattice: None,
            matmul_tiles: None,
        }
    }
}

impl GpuOptions {
    /// Defaults, with `LOWBIT_NO_SUBGROUPS=1` / `LOWBIT_NO_F16=1` / `LOWBIT_NO_UNIFORM_X=1` forcing the
    /// fallbacks and `LOWBIT_MATVEC` / `LOWBIT_MATVEC_ROWS` / `LOWBIT_LATTICE` / `LOWBIT_MATMUL` the kernel variants
    /// ([`super::tuning`]); an error names a variable whose value means nothing.
    pub fn from_env() -> Result<Self> {
        let off = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Ok(GpuOptions {
            subgroups: !off("LOWBIT_NO_SUBGROUPS"),
            shader_f16: !off("LOWBIT_NO_F16"),
            max_binding_bytes: None,
            uniform_activations: !off("LOWBIT_NO_UNIFORM_X"),
            matvec_layout: var("LOWBIT_MATVEC").as_deref().map(RowLayout::parse).transpose()?,
            matvec_rows: var("LOWBIT_MATVEC_ROWS").as_deref().map(parse_rows).transpose()?,
            shared_lattice: var("LOWBIT_LATTICE").as_deref().map(parse_lattice).transpose()?,
            matmul_tiles: var("LOWBIT_MATMUL").as_deref().map(MatmulTiles::parse).transpose()?,
        })
    }
}

/// Which optional shader features the kernels may use on this device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShaderFeatures {
    pub subgroups: bool,
    /// `shader-f16` (f16 matmul tiles).
    pub f16: bool,
}

/// A device, its queue, what lowbit may use of it, and what lowbit has allocated on it.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// The adapter's name, when lowbit created the device (or the host said it).
    pub adapter_name: String,
    pub features: ShaderFeatures,
    /// The largest storage binding lowbit will create, in bytes (a multiple of 4).
    pub max_binding_bytes: u64,
    /// Most workgroups per dispatch dimension (read once, not per dispatch).
    pub max_workgroups_per_dim: u32,
    /// Alignment of uniform binding offsets (`min_uniform_buffer_offset_alignment`, read
    /// once): where each dispatch's parameters start in a recording's parameter buffer.
    pub(crate) param_align: u64,
    /// The largest uniform activation binding the decode kernels may use, in bytes (the
    /// device's `max_uniform_buffer_binding_size`, 0 when turned off).
    pub max_uniform_x_bytes: u64,
    /// The kernel variants chosen for this adapter.
    pub tuning: Tuning,
    /// Whether passes can write timestamps (`TIMESTAMP_QUERY`, benchmarks only).
    pub timestamps: bool,
    allocated: Arc<AtomicU64>,
    /// The most `allocated` has been since the context was made.
    peak: Arc<AtomicU64>,
    /// Device bytes lowbit may hold at once (`--vram-budget`); an allocation past it
    /// fails with [`Error::Budget`] instead of happening.
    budget: Option<u64>,
    lost: Arc<Mutex<Option<String>>>,
    pub(crate) pipelines: Mutex<HashMap<super::pipelines::PipelineKey, Arc<wgpu::ComputePipeline>>>,
    /// Pipelines of the kernels that take no packed weights, by (shader, entry point).
    pub(crate) simple: Mutex<HashMap<(&'static str, &'static str), Arc<wgpu::ComputePipeline>>>,
    /// The IQ lattice tables, uploaded on first use.
    pub(crate) grid: std::sync::OnceLock<super::buffers::Tracked>,
    /// The fault word `matvec_id` sets when an expert is not resident, made on first use.
    pub(crate) fault: std::sync::OnceLock<super::buffers::Tracked>,
}

/// Whether wgpu finds a GPU (an adapter that is not a CPU one such as lavapipe).
pub fn real_gpu_present() -> bool {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12,
        ..wgpu::InstanceDescriptor::new_without_display_handle_from_env()
    });
    pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))
    .is_ok_and(|a| a.get_info().device_type != wgpu::DeviceType::Cpu)
}

/// A device lowbit created, its queue, the adapter's name, and what its device-lost
/// callback reported.
#[derive(Clone)]
pub(crate) struct OwnDevice {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter_name: String,
    pub lost: Arc<Mutex<Option<String>>>,
}

impl OwnDevice {
    /// An adapter and device (Vulkan, Metal or DX12), asking for `subgroups` and
    /// `shader-f16` where the adapter offers them, and the adapter's storage and buffer
    /// size limits.
    pub(crate) fn create(options: &GpuOptions) -> Result<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12,
            ..wgpu::InstanceDescriptor::new_without_display_handle_from_env()
        });
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("no GPU adapter (Vulkan, Metal or DX12): {e}")))?;
        let info = adapter.get_info();
        let offered = adapter.features();
        let mut wanted = wgpu::Features::empty();
        if options.subgroups && offered.contains(wgpu::Features::SUBGROUP) {
            wanted |= wgpu::Features::SUBGROUP;
        }
        if options.shader_f16 && offered.contains(wgpu::Features::SHADER_F16) {
            wanted |= wgpu::Features::SHADER_F16;
        }
        // Device-side timing for `bench kernels`; it changes nothing else.
        wanted |= offered & wgpu::Features::TIMESTAMP_QUERY;
        let a = adapter.limits();
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: a.max_storage_buffer_binding_size,
            max_buffer_size: a.max_buffer_size,
            max_compute_workgroup_storage_size: a.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: a.max_compute_invocations_per_workgroup,
            max_compute_workgroup_size_x: a.max_compute_workgroup_size_x,
            max_compute_workgroups_per_dimension: a.max_compute_workgroups_per_dimension,
            max_storage_buffers_per_shader_stage: a.max_storage_buffers_per_shader_stage,
            ..wgpu::Limits::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("lowbit"),
            required_features: wanted,
            required_limits: limits,
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("{}: cannot create device: {e}", info.name)))?;
        let lost = Arc::new(Mutex::new(None));
        let flag = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut l) = flag.lock() {
                *l = Some(format!("{reason:?}: {message}"));
            }
        });
        Ok(OwnDevice {
            device,
            queue,
            adapter_name: format!("{} ({:?}, {})", info.name, info.backend, info.driver),
            lost,
        })
    }
}

/// The out-of-memory, validation and internal error scopes of one lowbit call, pushed
/// on the calling thread and popped before the call returns (never held across a return
/// to the host, so that the host's own errors never land in them).
pub(crate) struct ErrorScopes([wgpu::ErrorScopeGuard; 3]);

impl ErrorScopes {
    pub(crate) fn push(device: &wgpu::Device) -> Self {
        ErrorScopes([
            device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
            device.push_error_scope(wgpu::ErrorFilter::Validation),
            device.push_error_scope(wgpu::ErrorFilter::Internal),
        ])
    }

    /// Pop the scopes (innermost first): the first error they caught, naming `what`.
    pub(crate) fn pop(self, what: &str) -> Result<()> {
        let [oom, validation, internal] = self.0;
        let errors = [internal.pop(), validation.pop(), oom.pop()];
        for e in errors {
            if let Some(e) = pollster::block_on(e) {
                return Err(Error::Gpu(format!("{what}: {e}")));
            }
        }
        Ok(())
    }
}

impl GpuContext {
    /// Create an adapter and device of lowbit's own (Vulkan, Metal or DX12), asking for
    /// `subgroups` and `shader-f16` where the adapter offers them, and the adapter's
    /// storage and buffer size limits.
    pub fn new(options: GpuOptions) -> Result<Self> {
        Ok(Self::on_own(&OwnDevice::create(&options)?, &options))
    }

    /// A context on the device of `own` (lowbit's), sharing its lost flag.
    pub(crate) fn on_own(own: &OwnDevice, options: &GpuOptions) -> Self {
        let mut ctx = Self::build(own.device.clone(), own.queue.clone(), options);
        ctx.adapter_name = own.adapter_name.clone();
        ctx.lost = own.lost.clone();
        ctx
    }

    /// Use a device the host application owns. Its features and limits are read, never
    /// raised; lowbit does not install a device-lost callback on it (the host may have one).
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue, options: GpuOptions) -> Self {
        Self::build(device, queue, &options)
    }

    fn build(device: wgpu::Device, queue: wgpu::Queue, options: &GpuOptions) -> Self {
        let have = device.features();
        let limits = device.limits();
        let device_max = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        // Byte offsets in the kernels are u32: keep every binding below 2 GiB.
        let max_binding_bytes = options
            .max_binding_bytes
            .map_or(device_max, |m| m.min(device_max))
            .min(1 << 31)
            & !15;
        let tuning = Tuning::for_adapter(device.adapter_info().device_type).with(options);
        GpuContext {
            tuning,
            timestamps: have.contains(wgpu::Features::TIMESTAMP_QUERY),
            features: ShaderFeatures {
                subgroups: options.subgroups && have.contains(wgpu::Features::SUBGROUP),
                f16: options.shader_f16 && have.contains(wgpu::Features::SHADER_F16),
            },
            max_binding_bytes,
            max_workgroups_per_dim: limits.max_compute_workgroups_per_dimension,
            param_align: limits.min_uniform_buffer_offset_alignment as u64,
            max_uniform_x_bytes: if options.uniform_activations {
                limits.max_uniform_buffer_binding_size
            } else {
                0
            },
            adapter_name: "host device".into(),
            device,
            queue,
            allocated: Arc::new(AtomicU64::new(0)),
            peak: Arc::new(AtomicU64::new(0)),
            budget: None,
            lost: Arc::new(Mutex::new(None)),
            pipelines: Mutex::new(HashMap::new()),
            simple: Mutex::new(HashMap::new()),
            grid: std::sync::OnceLock::new(),
            fault: std::sync::OnceLock::new(),
        }
    }

    /// Bytes of buffers lowbit currently holds on the device.
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// The largest [`allocated_bytes`](Self::allocated_bytes) so far.
    pub fn peak_bytes(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    pub fn vram_budget(&self) -> Option<u64> {
        self.budget
    }

    /// Refuse allocations that would take lowbit's device bytes past `budget`.
    pub fn set_vram_budget(&mut self, budget: Option<u64>) {
        self.budget = budget;
    }

    /// Count `size` new bytes, or refuse them when they would exceed the budget.
    pub(crate) fn reserve(&self, label: &str, size: u64) -> Result<Arc<AtomicU64>> {
        let now = self.allocated.fetch_add(size, Ordering::Relaxed) + size;
        if let Some(budget) = self.budget
            && now > budget
        {
            self.allocated.fetch_sub(size, Ordering::Relaxed);
            return Err(Error::Budget(format!(
                "allocating {label} ({size} bytes) would take lowbit's device memory to {now} bytes, past the VRAM budget of {budget}"
            )));
        }
        self.peak.fetch_max(now, Ordering::Relaxed);
        Ok(self.allocated.clone())
    }

    /// An error if the device was lost.
    pub fn check_lost(&self) -> Result<()> {
        match self.lost.lock().ok().and_then(|l| l.clone()) {
            Some(why) => Err(Error::Gpu(format!("device lost: {why}"))),
            None => Ok(()),
        }
    }

    /// Run `f` inside a wgpu error scope, turning validation, out-of-memory and internal
    /// errors it causes into an [`Error::Gpu`] that names `what`.
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        self.check_lost()?;
        let scopes = ErrorScopes::push(&self.device);
        let out = f();
        scopes.pop(what)?;
        self.check_lost()?;
        Ok(out)
    }

    /// The fault word of the expert kernels (two u32: set, expert), zero until a
    /// kernel meets an expert that is not resident.
    pub fn fault_buffer(&self) -> Result<&super::buffers::Tracked> {
        if let Some(f) = self.fault.get() {
            return Ok(f);
        }
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let f = self.upload("expert fault word", &[0u8; 8], usage)?;
        Ok(self.fault.get_or_init(|| f))
    }

    /// An error when the fault word read back as `words` is set (and the word cleared for
    /// the next step): a routed pair met an expert that was not resident.
    pub fn check_fault(&self, words: &[u8]) -> Result<()> {
        let w: Vec<u32> = bytemuck::pod_collect_to_vec(words);
        if w.first().copied().unwrap_or(0) == 0 {
            return Ok(());
        }
        if let Some(f) = self.fault.get() {
            self.queue.write_buffer(&f.buffer, 0, &[0u8; 8]);
        }
        Err(Error::Gpu(format!(
            "expert {} reached matvec_id without being resident (its pairs were not computed)",
            w.get(1).copied().unwrap_or(0)
        )))
    }

    /// Whether every submitted command has finished (a non-blocking poll).
    pub fn device_idle(&self) -> Result<bool> {
        let status = self
            .device
            .poll(wgpu::PollType::Poll)
            .map_err(|e| Error::Gpu(format!("polling the GPU: {e}")))?;
        Ok(status.is_queue_empty())
    }

    /// Wait until all submitted work is done.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        self.check_lost()
    }
}
