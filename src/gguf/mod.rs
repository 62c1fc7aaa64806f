//! GGUF v3 files: [`reader`] (memory-mapped, validated, split-aware) and
//! [`writer`] (aligned, atomic, optionally split).

pub mod direct;
pub mod reader;
pub mod value;
pub mod writer;

pub use reader::{File, Header, Shard, TensorInfo, TensorRef, TensorView, parse};
pub use value::{Value, ValueType};
pub use writer::{SplitPolicy, TensorSpec, header_size, write};
