//! The library API: an [`Engine`] (a GPU device, lowbit's own or the host's, or the
//! CPU), a [`Model`] loaded on it, and [`Session`]s that generate text from it, blocking
//! or in steps bounded to fit a frame.
//!
//! ```no_run
//! use lowbit::engine::{Budget, Engine, LoadOptions, Model, Step};
//!
//! # fn main() -> lowbit::Result<()> {
//! let engine = Engine::new()?; // or Engine::from_device(device, queue)? in a renderer
//! let model = Model::load(&engine, "model.gguf", LoadOptions::default())?;
//! let mut session = model.session(Default::default())?;
//! session.prompt("Once upon a time")?;
//! loop {
//!     // Once per frame: one layer of work, never waiting for the GPU.
//!     match session.step(Budget::Layers(1))? {
//!         Step::Token(token) => print!("{}", token.text),
//!         Step::Pending => {}
//!         Step::Done => break,
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod model;
mod requirements;
mod session;

pub use crate::generate::{Budget, Step, Token};
pub use crate::sample::SamplerConfig;
pub use model::{LoadOptions, Model};
pub use requirements::KERNEL_LIMITS;
pub use session::Session;

use crate::error::Result;
use crate::gpu::GpuOptions;
use crate::gpu::context::OwnDevice;

/// Where models run: a GPU device, or the CPU.
#[derive(Clone)]
pub struct Engine {
    pub(crate) kind: EngineKind,
}

#[derive(Clone)]
pub(crate) enum EngineKind {
    /// A device lowbit created.
    Own(OwnDevice, GpuOptions),
    /// The host application's device and queue, used as they are.
    Host(wgpu::Device, wgpu::Queue, GpuOptions),
    /// The fast CPU backend on this many threads (0: the physical cores).
    Cpu(usize),
    /// The exact CPU reference.
    CpuReference,
}

impl Engine {
    /// An engine on a GPU device of lowbit's own: the first high-performance Vulkan,
    /// Metal or DX12 adapter (Mesa's lavapipe where there is no GPU), with `subgroups`
    /// and `shader-f16` where offered.
    pub fn new() -> Result<Self> {
        Self::with_options(GpuOptions::from_env()?)
    }

    /// [`Self::new`] with explicit device options.
    pub fn with_options(options: GpuOptions) -> Result<Self> {
        Ok(Engine {
            kind: EngineKind::Own(OwnDevice::create(&options)?, options),
        })
    }

    /// An engine on the host application's device. Its features and limits are read,
    /// never raised: an error lists every limit below what lowbit's kernels need
    /// ([`KERNEL_LIMITS`]). lowbit installs no error handler or device-lost callback on
    /// it; its errors reach lowbit's calls through error scopes pushed and popped
    /// within each call.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Result<Self> {
        requirements::check_kernels(&device.limits())?;
        Ok(Engine {
            kind: EngineKind::Host(device, queue, GpuOptions::default()),
        })
    }

    /// An engine on the fast CPU backend (8-bit activations, SIMD kernels) with
    /// `threads` threads, 0 for one per physical core.
    pub fn cpu(threads: usize) -> Self {
        Engine {
            kind: EngineKind::Cpu(threads),
        }
    }

    /// An engine on the exact CPU reference (slow; the oracle of the other backends).
    pub fn cpu_reference() -> Self {
        Engine {
            kind: EngineKind::CpuReference,
        }
    }

    /// The wgpu device models run on, None on the CPU.
    pub fn device(&self) -> Option<&wgpu::Device> {
        match &self.kind {
            EngineKind::Own(own, _) => Some(&own.device),
            EngineKind::Host(device, ..) => Some(device),
            _ => None,
        }
    }
}
