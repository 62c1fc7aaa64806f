//! CPU reference operations: the readable ground truth every GPU kernel is checked against,
//! and [`CpuBackend`], the reference forward pass (multithreaded with rayon over rows).

mod backend;
mod fast;
mod matvec;
mod routed;
mod weights;

pub use backend::{CpuBackend, CpuTensor};
pub use fast::{Fast, Rows};
pub use matvec::matvec;
