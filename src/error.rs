//! The one error type of the library. Every fallible public function returns
//! [`Result`], and every message names what was being read and why it failed.

use std::path::PathBuf;

/// Errors from reading, writing, quantizing and (later) running models.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A GGUF file whose bytes break the format. `offset` is where the problem was found.
    #[error("{path}: malformed GGUF at byte {offset}: {reason}")]
    Malformed { path: PathBuf, offset: u64, reason: String },
    #[error("{path}: tensor '{tensor}': {reason}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        reason: String,
    },
    #[error("unknown ggml type id {0}")]
    UnknownType(u32),
    #[error("{0}")]
    Unsupported(String),
    /// A caller passed buffers whose sizes do not fit the block format.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A GPU failure: no adapter, a validation or out-of-memory error, a lost device.
    #[error("GPU: {0}")]
    Gpu(String),
    /// A memory budget that cannot hold what it must, or a bad budget setting.
    #[error("memory budget: {0}")]
    Budget(String),
    #[error("metadata key '{key}': {reason}")]
    Metadata { key: String, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
