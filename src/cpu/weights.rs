//! Where the CPU backend's packed weights live: in the file's memory map (no copy; the
//! default), or in memory lowbit owns, read with explicit reads (under a RAM budget,
//! where mapped pages must not count against the process).

use crate::error::Result;
use crate::gguf::{Shard, TensorView};
use std::ops::{Deref, Range};
use std::sync::Arc;

/// A weight tensor's bytes (ggml's packed blocks, unchanged).
pub enum WeightBytes {
    /// Bytes `range` of a mapped shard, which the reference keeps open.
    Mapped { shard: Arc<Shard>, range: Range<usize> },
    /// A copy: read from the file, or computed at load.
    Owned(Vec<u8>),
}

impl WeightBytes {
    /// The view's bytes, mapped when they are the file's and `owned` is false, else
    /// read (or copied) into owned memory.
    pub fn of(t: &TensorView, owned: bool) -> Result<Self> {
        match t.mapped() {
            Some((shard, range)) if !owned => Ok(WeightBytes::Mapped { shard, range }),
            _ => Ok(WeightBytes::Owned(t.read_owned()?)),
        }
    }
}

impl Deref for WeightBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            WeightBytes::Mapped { shard, range } => &shard.bytes()[range.clone()],
            WeightBytes::Owned(v) => v,
        }
    }
}
