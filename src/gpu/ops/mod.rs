//! Kernels that read no packed weights, one Rust file beside each WGSL file: the file
//! owns the kernel's parameter struct (the twin of the WGSL one) and records it.

pub mod argmax;
