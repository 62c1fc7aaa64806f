//! Kernels that read no packed weights, one Rust file beside each WGSL file: the file
//! owns the kernel's parameter struct (the twin of the WGSL one) and records it.

pub mod argmax;
pub mod attention;
pub mod copy_columns;
pub mod elementwise;
pub mod pair_sums;
pub mod rms_norm;
pub mod rope;
pub mod route;
