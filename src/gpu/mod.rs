//! GPU execution through wgpu: the device context, weight buffers, shader composition
//! and the fused dequantize-and-multiply kernels.

pub mod backend;
pub mod bench;
pub mod buffers;
pub mod context;
pub mod copy;
pub mod matmul;
pub mod matvec;
pub mod moe;
pub mod ops;
pub mod pipelines;
pub mod readback;
pub mod recorder;
mod routed;
pub mod stream;
pub mod tuning;

pub use backend::{GpuBackend, GpuRouted, GpuTensor};
pub use buffers::{GpuWeights, Tracked};
pub use context::{GpuContext, GpuOptions, ShaderFeatures};
pub use matvec::{Activations, Norm, Output};
pub use moe::{GpuExperts, Grouped, NOT_RESIDENT, OTHER_WAVE, Routing, group_by_expert};
pub use pipelines::{GPU_FORMATS, Kernel, PipelineKey, lattice_words, shader_source};
pub use readback::GpuRead;
pub use recorder::Recorder;
pub use tuning::{MatmulTiles, RowLayout, Tuning};
