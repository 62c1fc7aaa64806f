//! Kernel choices by adapter: a table built once per context, from the device's own
//! adapter info (so a host's device gets the same choice), before any weight is
//! uploaded, because the row layout of the weights depends on it.
//!
//! CPU adapters (lavapipe, llvmpipe, WARP) keep the layout measured on lavapipe: short
//! rows whole in single invocations, 8 rows interleaved, activations through a uniform
//! binding, at least [`CPU_MIN_WORKGROUPS`] workgroups (two cores). Real GPUs get the
//! split layout: every row reduced by a workgroup, weights in ggml's row order,
//! activations from a storage binding, and 1-8 rows per workgroup by format family as
//! llama.cpp's Vulkan backend picks them (`ggml_vk_get_mul_mat_vec_rows`: 2 rows for
//! legacy and K-quants, more for the IQ and ternary formats whose decode is dearer than
//! their loads). These GPU defaults are predictions until a lent GPU measures them
//! (`scripts/device_check.sh`).
//!
//! The IQ lattices (IQ1_S, IQ1_M, IQ2_XXS) are read from storage on CPU adapters, where
//! every lookup is a cache hit, and copied into workgroup memory on GPUs, where the
//! divergent lookups would scatter over cache lines.
//!
//! The matmul tiles differ too ([`MatmulTiles`]): CPU adapters keep the padded 64 x 32
//! tiles measured on lavapipe, GPUs get swizzled tiles of up to 64 x 64 that every
//! invocation helps load, 32 outputs each.
//!
//! `LOWBIT_MATVEC=lanes|split`, `LOWBIT_MATVEC_ROWS=1..8`,
//! `LOWBIT_LATTICE=shared|storage` and `LOWBIT_MATMUL=padded|swizzled` override the table
//! (for sweeps and tests), through [`super::GpuOptions::from_env`]; the options'
//! `matvec_layout`, `matvec_rows`, `shared_lattice` and `matmul_tiles` do the same from
//! code.

use super::GpuOptions;
use crate::error::{Error, Result};
use crate::quant::BlockType;

/// Workgroups a one-row-per-invocation dispatch keeps at least on a CPU adapter, where
/// it has the rows (a two-core rule, measured on lavapipe).
pub const CPU_MIN_WORKGROUPS: usize = 3;

/// How the matvec kernels lay a matrix's rows over invocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowLayout {
    /// Rows shorter than a workgroup's 32-element units are computed whole by single
    /// invocations, up to 8 each, stored in groups of 8 rows; longer rows are split over
    /// a workgroup. Best where a "lane" is a CPU SIMD lane.
    Lanes,
    /// Every row is split over a workgroup and reduced, `rows` rows per workgroup;
    /// weights in ggml's row order. Occupancy for GPUs: one workgroup per few rows.
    Split,
}

impl RowLayout {
    /// `lanes` or `split` (`LOWBIT_MATVEC`).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "lanes" => Ok(RowLayout::Lanes),
            "split" => Ok(RowLayout::Split),
            other => Err(Error::Unsupported(format!(
                "LOWBIT_MATVEC={other}: the layouts are lanes and split"
            ))),
        }
    }
}

/// Rows per workgroup, 1..=8 (`LOWBIT_MATVEC_ROWS`).
pub fn parse_rows(s: &str) -> Result<u8> {
    s.parse()
        .ok()
        .filter(|n| (1..=8).contains(n))
        .ok_or_else(|| Error::Unsupported(format!("LOWBIT_MATVEC_ROWS={s}: rows per workgroup are 1..=8")))
}

/// The matmul kernels' tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulTiles {
    /// 64 x 32 tiles padded to 33-word rows; half the invocations decode the weights
    /// while all stage the activations, 16 outputs each (`matmul.wgsl`). Measured best
    /// on lavapipe: 25-35% faster at 20 columns than the swizzled tiles there.
    Padded,
    /// 64 x 64 tiles (64 x 32 for at most 32 columns), swizzled; half the invocations
    /// decode while the other half stage the activations with 16-byte loads, 32 outputs
    /// each (`matmul_swizzled.wgsl`). For GPUs, where shared-memory loads per FMA and
    /// bank conflicts bound the tile loop.
    Swizzled,
}

impl MatmulTiles {
    /// `padded` or `swizzled` (`LOWBIT_MATMUL`).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "padded" => Ok(MatmulTiles::Padded),
            "swizzled" => Ok(MatmulTiles::Swizzled),
            other => Err(Error::Unsupported(format!(
                "LOWBIT_MATMUL={other}: the matmul tiles are padded and swizzled"
            ))),
        }
    }
}

/// Whether the matvec kernels copy the IQ lattices into workgroup memory:
/// `shared` or `storage` (`LOWBIT_LATTICE`).
pub fn parse_lattice(s: &str) -> Result<bool> {
    match s {
        "shared" => Ok(true),
        "storage" => Ok(false),
        other => Err(Error::Unsupported(format!(
            "LOWBIT_LATTICE={other}: the lattice is shared or storage"
        ))),
    }
}

/// The kernel table of one context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    pub layout: RowLayout,
    /// Rows per workgroup of split (long, or all with [`RowLayout::Split`]) rows; None:
    /// by format family ([`Tuning::split_rows`]).
    pub rows: Option<u8>,
    /// See [`CPU_MIN_WORKGROUPS`] (used by [`RowLayout::Lanes`]).
    pub min_workgroups: usize,
    /// The matvec kernels copy the IQ lattices into workgroup memory.
    pub shared_lattice: bool,
    pub matmul: MatmulTiles,
}

impl Tuning {
    /// The table for an adapter of `device_type`: [`RowLayout::Lanes`] for CPU
    /// adapters, [`RowLayout::Split`] for the others.
    pub fn for_adapter(device_type: wgpu::DeviceType) -> Self {
        Self::for_layout(match device_type {
            wgpu::DeviceType::Cpu => RowLayout::Lanes,
            _ => RowLayout::Split,
        })
    }

    /// The table of a layout: lanes with 4 rows per workgroup for long rows, as measured
    /// on lavapipe; split with rows by format family.
    pub fn for_layout(layout: RowLayout) -> Self {
        match layout {
            RowLayout::Lanes => Tuning {
                layout,
                rows: Some(4),
                min_workgroups: CPU_MIN_WORKGROUPS,
                shared_lattice: false,
                matmul: MatmulTiles::Padded,
            },
            RowLayout::Split => Tuning {
                layout,
                rows: None,
                min_workgroups: 1,
                shared_lattice: true,
                matmul: MatmulTiles::Swizzled,
            },
        }
    }

    /// This table, or that of the options' layout, with the options' overrides.
    pub fn with(self, options: &GpuOptions) -> Self {
        let mut t = options.matvec_layout.map_or(self, Self::for_layout);
        t.rows = options.matvec_rows.or(t.rows);
        t.shared_lattice = options.shared_lattice.unwrap_or(t.shared_lattice);
        t.matmul = options.matmul_tiles.unwrap_or(t.matmul);
        t
    }

    /// Tile columns (`TN`) of a matmul over `cols` columns.
    pub fn matmul_cols(&self, cols: usize) -> u32 {
        match self.matmul {
            MatmulTiles::Swizzled if cols > 32 => 64,
            _ => 32,
        }
    }

    /// Whether matvec kernels over `ty` copy its lattice into workgroup memory.
    pub fn lattice_in_workgroup(&self, ty: BlockType) -> bool {
        self.shared_lattice && super::pipelines::lattice_words(ty).is_some()
    }

    /// Rows per workgroup of a split matvec over `ty` for `cols` columns (the sums of
    /// one invocation, rows x columns, are at most 32, matvec.wgsl's `OUTPUTS`).
    pub fn split_rows(&self, ty: BlockType, cols: u8) -> u32 {
        use BlockType::*;
        let family = match ty {
            IQ1_S | IQ1_M | IQ2_XXS | IQ4_NL | TQ1_0 | TQ2_0 => 4,
            _ => 2,
        };
        let rows = self.rows.map_or(family, u32::from);
        rows.min(32 / cols.max(1) as u32).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_adapters_keep_the_lanes_layout_and_gpus_split() {
        let cpu = Tuning::for_adapter(wgpu::DeviceType::Cpu);
        assert_eq!((cpu.layout, cpu.split_rows(BlockType::Q4_1, 1)), (RowLayout::Lanes, 4));
        let gpu = Tuning::for_adapter(wgpu::DeviceType::DiscreteGpu);
        assert_eq!(gpu.layout, RowLayout::Split);
        assert_eq!(gpu.split_rows(BlockType::Q4_K, 1), 2);
        assert_eq!(gpu.split_rows(BlockType::IQ1_S, 8), 4);
        assert!(gpu.lattice_in_workgroup(BlockType::IQ1_S) && !gpu.lattice_in_workgroup(BlockType::Q4_K));
        assert!(!cpu.lattice_in_workgroup(BlockType::IQ2_XXS));
        assert_eq!(
            (cpu.matmul_cols(100), gpu.matmul_cols(100), gpu.matmul_cols(32)),
            (32, 64, 32)
        );
        let forced = gpu.with(&GpuOptions {
            matvec_layout: Some(RowLayout::parse("lanes").unwrap()),
            matvec_rows: Some(parse_rows("8").unwrap()),
            shared_lattice: Some(parse_lattice("shared").unwrap()),
            matmul_tiles: Some(MatmulTiles::parse("swizzled").unwrap()),
            ..Default::default()
        });
        assert!(forced.lattice_in_workgroup(BlockType::IQ1_M));
        assert_eq!(forced.matmul_cols(33), 64);
        assert!(MatmulTiles::parse("square").is_err());
        assert!(parse_lattice("local").is_err());
        assert_eq!(
            (forced.layout, forced.split_rows(BlockType::Q8_0, 8)),
            (RowLayout::Lanes, 4)
        );
        assert_eq!(forced.split_rows(BlockType::Q8_0, 1), 8);
        assert!(RowLayout::parse("tiles").is_err());
        assert!(parse_rows("9").is_err() && parse_rows("0").is_err());
    }
}
