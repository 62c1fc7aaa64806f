//! lowbit: dynamic low-bit quantization of GGUF models and GPU inference through wgpu.
//!
//! * [`engine`]: the library API: [`Engine`], [`Model`], [`Session`], steps that fit a frame.
//! * [`gguf`]: read (memory-mapped, split-aware, validated) and write (atomic) GGUF v3 files.
//! * [`quant`]: every ggml block format lowbit stores, bit-exact with ggml.
//! * [`gpu`]: wgpu context and fused kernels that decode packed blocks in registers.
//! * [`cpu`]: reference operations the GPU kernels are checked against.
//! * [`inspect`]: per-tensor-class size and bits-per-weight summaries.
//! * [`stream`]: expert streaming under a VRAM budget (plan, slot policies, Belady, stats).

pub mod backend;
pub mod cpu;
pub mod engine;
pub mod error;
pub mod eval;
pub mod generate;
pub mod gguf;
pub mod gpu;
pub mod inspect;
pub mod model;
pub mod profile;
pub mod quant;
pub mod quantize;
pub mod sample;
pub mod stream;
pub mod synth;
pub mod tokenizer;

pub use engine::{Budget, Engine, LoadOptions, Model, Session, Step, Token};
pub use error::{Error, Result};
pub use quant::BlockType;
/// The wgpu lowbit is built on: hosts that share their device use this one.
pub use wgpu;
