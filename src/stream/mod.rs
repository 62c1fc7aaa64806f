//! Expert streaming: the host-side half of running a MoE model larger than VRAM.
//!
//! * [`plan`]: the device-memory plan of a model under a `--vram-budget` (what stays
//!   resident, the KV cache, scratch, and the slot pools the rest of the budget becomes).
//! * [`cache`]: the slots of one pool and the eviction policies (`--expert-policy`).
//! * [`belady`]: the offline optimum over a recorded router trace.
//! * [`stats`]: hit rate, upload bytes, stalls and read-backs per layer (`--stats`).
//! * [`sweep`]: `lowbit bench stream`, budgets x policies on one text.
//!
//! The device half (pools in VRAM, uploads, the expert-to-slot tables) is
//! `crate::gpu::stream`.

pub mod belady;
pub mod cache;
pub mod disk;
pub mod host;
pub mod plan;
pub mod report;
pub mod scheduler;
pub mod stats;
pub mod sweep;

pub use cache::{ExpertKey, PolicyKind, SlotCache};
pub use plan::{ExpertLayer, MemoryPlan, StreamOptions, parse_size};
pub use stats::StreamStats;
