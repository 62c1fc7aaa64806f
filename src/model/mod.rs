//! Model architectures, described once against the [`crate::backend::Backend`] trait.

pub mod config;
pub mod llama;

pub use config::LlamaConfig;
pub use llama::{Llama, Session};
