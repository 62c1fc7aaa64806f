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

/// A kernel's uniform parameters on both sides: `tests/gpu_shaders.rs` checks with naga
/// that the WGSL struct has the size of its Rust twin, which the recorder copies as bytes.
pub struct ParamStruct {
    /// The kernel's WGSL source.
    pub source: &'static str,
    /// The name of its parameter struct there.
    pub wgsl_name: &'static str,
    /// `size_of` the Rust struct.
    pub rust_bytes: usize,
}

const fn twin<T>(source: &'static str, wgsl_name: &'static str) -> ParamStruct {
    ParamStruct {
        source,
        wgsl_name,
        rust_bytes: size_of::<T>(),
    }
}

/// Every kernel of this module with its parameter struct.
pub const PARAM_STRUCTS: &[ParamStruct] = &[
    twin::<argmax::ArgmaxParams>(argmax::SOURCE, "ArgmaxParams"),
    twin::<attention::AttnParams>(attention::SOURCE, "AttnParams"),
    twin::<copy_columns::CopyParams>(copy_columns::SOURCE, "CopyParams"),
    twin::<elementwise::EwParams>(elementwise::SOURCE, "EwParams"),
    twin::<pair_sums::SumParams>(pair_sums::SOURCE, "SumParams"),
    twin::<rms_norm::NormParams>(rms_norm::SOURCE, "NormParams"),
    twin::<rope::RopeParams>(rope::SOURCE, "RopeParams"),
    twin::<route::RouteParams>(route::SOURCE, "RouteParams"),
];
