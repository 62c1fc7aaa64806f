//! Dot products of packed weight rows with quantized activations, as ggml's CPU backend
//! computes them (`ggml_vec_dot_*` in `ggml/src/ggml-cpu/quants.c` and
//! `ggml/src/ggml-cpu/arch/x86/quants.c`,
//! <https://github.com/ggml-org/llama.cpp/tree/master/ggml/src/ggml-cpu>).
//!
//! Each activation column is quantized once into its weight format's dot type
//! ([`DotType`], ggml's `vec_dot_type`): Q8_0 for Q4_0, Q5_0, Q8_0 and IQ4_NL; Q8_1 for
//! Q4_1 and Q5_1; Q8_K for the K-quants, IQ1_S, IQ1_M, IQ2_XXS, TQ1_0 and TQ2_0; the float
//! formats keep f32 activations. A [`Kernel`] then takes one weight row and one
//! quantized column to one f32.
//!
//! Levels ([`Simd`]): `Scalar` dequantizes the row with the bit-exact codecs and the
//! column from its blocks and sums in f32, the same arithmetic in real numbers as every
//! SIMD kernel (the integer sums of those are exact), so it is the reference they are
//! tested against. `Avx2` runs ggml's AVX2 kernels (`maddubs`/`madd` over bytes).
//! `LOWBIT_SIMD=scalar|avx2` caps the level chosen at start-up.

/// The body of a tile kernel whose work is shared between columns
/// ([`Kernel::tile_unchecked`]): `out[i][..n] = $columns::<n>(rows[i], xs)` for
/// `n = xs.len()` (1 to [`TILE`]), `$columns` being a const-generic row-against-N-columns
/// body.
#[cfg(target_arch = "x86_64")]
macro_rules! column_tiles {
    ($columns:ident, $rows:expr, $xs:expr, $out:expr) => {
        for (row, out) in $rows.iter().zip($out.iter_mut()) {
            match $xs.len() {
                1 => out[..1].copy_from_slice(&$columns::<1>(row, [$xs[0]])),
                2 => out[..2].copy_from_slice(&$columns::<2>(row, [$xs[0], $xs[1]])),
                3 => out[..3].copy_from_slice(&$columns::<3>(row, [$xs[0], $xs[1], $xs[2]])),
                _ => out.copy_from_slice(&$columns::<4>(row, [$xs[0], $xs[1], $xs[2], $xs[3]])),
            }
        }
    };
}

/// A format's one-column kernel `$dot` and tile kernel `$tile` (one row, up to
/// [`TILE`] columns), both from its const-generic row-against-N-columns body `$columns`,
/// so that a tile's sums are the one-column kernel's, bit for bit.
#[cfg(target_arch = "x86_64")]
macro_rules! column_kernels {
    ($columns:ident, $dot:ident, $tile:ident) => {
        #[doc = concat!("[`", stringify!($columns), "`] of one column.")]
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) fn $dot(row: &[u8], x: Column) -> f32 {
            $columns(row, [x])[0]
        }

        #[doc = concat!("[`", stringify!($columns), "`] of a tile: one row, up to four columns.")]
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $tile(rows: &[&[u8]], xs: &[Column], out: &mut TileSums) {
            column_tiles!($columns, rows, xs, out)
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod float_avx2;
#[cfg(target_arch = "x86_64")]
mod iq_avx2;
#[cfg(target_arch = "x86_64")]
mod kquants_avx2;
#[cfg(target_arch = "x86_64")]
mod legacy_avx2;
mod q8;
#[cfg(target_arch = "x86_64")]
mod q8_avx2;

pub use q8::{BlockQ8_0, BlockQ8_1, BlockQ8K, quantize_q8_0, quantize_q8_1, quantize_q8_k};

use super::{BlockType, QK_K};
use crate::error::{Error, Result};
use std::cell::RefCell;

/// A SIMD level of the dot kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Simd {
    /// Dequantize and multiply in f32 (any CPU).
    Scalar,
    /// x86-64 AVX2 with FMA and F16C.
    Avx2,
}

impl Simd {
    /// Every level this CPU can run, lowest first.
    pub fn available() -> Vec<Simd> {
        let mut levels = vec![Simd::Scalar];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
            levels.push(Simd::Avx2);
        }
        levels
    }

    /// The best level this CPU runs, capped by `LOWBIT_SIMD` (`scalar` or `avx2`).
    pub fn detect() -> Result<Simd> {
        let best = *Simd::available().last().expect("scalar is always available");
        match std::env::var("LOWBIT_SIMD") {
            Err(_) => Ok(best),
            Ok(name) => {
                let want = Simd::parse(&name)?;
                if want > best {
                    return Err(Error::Unsupported(format!(
                        "LOWBIT_SIMD={name}: this CPU's best level is {}",
                        best.name()
                    )));
                }
                Ok(want)
            }
        }
    }

    /// The level named `scalar` or `avx2`.
    pub fn parse(name: &str) -> Result<Simd> {
        match name.to_ascii_lowercase().as_str() {
            "scalar" => Ok(Simd::Scalar),
            "avx2" => Ok(Simd::Avx2),
            _ => Err(Error::Unsupported(format!(
                "unknown SIMD level '{name}' (scalar or avx2)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Simd::Scalar => "scalar",
            Simd::Avx2 => "avx2",
        }
    }
}

/// The form activations take for a weight format's dot product (ggml's `vec_dot_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DotType {
    F32,
    Q8_0,
    Q8_1,
    Q8K,
}

impl DotType {
    /// The dot type of weights of `ty`, or an error for the types no product reads.
    pub fn of(ty: BlockType) -> Result<DotType> {
        use BlockType::*;
        match ty {
            F32 | F16 | BF16 => Ok(DotType::F32),
            Q4_0 | Q5_0 | Q8_0 | IQ4_NL => Ok(DotType::Q8_0),
            Q4_1 | Q5_1 => Ok(DotType::Q8_1),
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | IQ2_XXS | IQ1_S | IQ1_M | TQ1_0 | TQ2_0 => Ok(DotType::Q8K),
            other => Err(Error::Unsupported(format!(
                "no dot product for {} weights",
                other.name()
            ))),
        }
    }

    /// Elements per block.
    pub fn block_size(self) -> usize {
        match self {
            DotType::F32 => 1,
            DotType::Q8_0 | DotType::Q8_1 => 32,
            DotType::Q8K => QK_K,
        }
    }
}

/// `cols` activation columns of `k` values, quantized into one dot type.
pub enum Activations {
    F32(Vec<f32>),
    Q8_0(Vec<BlockQ8_0>),
    Q8_1(Vec<BlockQ8_1>),
    Q8K(Vec<BlockQ8K>),
}

/// Quantized activation columns: column c is the `k / block_size` blocks from
/// `c * k / block_size` on.
pub struct QuantizedInput {
    pub acts: Activations,
    pub k: usize,
    pub cols: usize,
}

impl QuantizedInput {
    /// Room for `cols` columns of `k` values of `ty` (filled by [`Self::quantize_column`]).
    pub fn new(ty: DotType, k: usize, cols: usize) -> Result<Self> {
        if !k.is_multiple_of(ty.block_size()) {
            return Err(Error::Shape(format!(
                "{k} activations are not whole {ty:?} blocks of {}",
                ty.block_size()
            )));
        }
        let blocks = k / ty.block_size() * cols;
        let acts = match ty {
            DotType::F32 => Activations::F32(vec![0.0; blocks]),
            DotType::Q8_0 => Activations::Q8_0(vec![BlockQ8_0::default(); blocks]),
            DotType::Q8_1 => Activations::Q8_1(vec![BlockQ8_1::default(); blocks]),
            DotType::Q8K => Activations::Q8K(vec![BlockQ8K::default(); blocks]),
        };
        Ok(QuantizedInput { acts, k, cols })
    }

    /// Quantize `x` (`k` values) as column `c`. Columns are disjoint, so different
    /// threads may fill different columns through [`ColumnWriter`].
    pub fn quantize_column(&mut self, c: usize, x: &[f32]) {
        ColumnWriter::new(self).write(c, x)
    }

    /// Column `c` as the kernels read it.
    pub fn column(&self, c: usize) -> Column<'_> {
        let (ptr, n, ty) = match &self.acts {
            Activations::F32(v) => column_of(v, c, self.cols, DotType::F32),
            Activations::Q8_0(v) => column_of(v, c, self.cols, DotType::Q8_0),
            Activations::Q8_1(v) => column_of(v, c, self.cols, DotType::Q8_1),
            Activations::Q8K(v) => column_of(v, c, self.cols, DotType::Q8K),
        };
        Column {
            ptr,
            k: self.k,
            blocks: n,
            ty,
            _input: std::marker::PhantomData,
        }
    }

    pub fn dot_type(&self) -> DotType {
        match self.acts {
            Activations::F32(_) => DotType::F32,
            Activations::Q8_0(_) => DotType::Q8_0,
            Activations::Q8_1(_) => DotType::Q8_1,
            Activations::Q8K(_) => DotType::Q8K,
        }
    }
}

/// Column `c` of `cols` columns stored one after another in `v`: its first block, its
/// block count and type.
fn column_of<T>(v: &[T], c: usize, cols: usize, ty: DotType) -> (*const u8, usize, DotType) {
    let n = v.len() / cols.max(1);
    (v[c * n..][..n].as_ptr().cast(), n, ty)
}

/// Writes columns of a [`QuantizedInput`] from several threads (each column from one).
pub struct ColumnWriter {
    ptr: *mut u8,
    k: usize,
    cols: usize,
    ty: DotType,
}

// SAFETY: a writer only writes the column it is given; callers give each column to one
// thread, and the input outlives the writer's use (it is borrowed mutably to make one).
unsafe impl Send for ColumnWriter {}
unsafe impl Sync for ColumnWriter {}

impl ColumnWriter {
    pub fn new(input: &mut QuantizedInput) -> Self {
        let ptr = match &mut input.acts {
            Activations::F32(v) => v.as_mut_ptr().cast(),
            Activations::Q8_0(v) => v.as_mut_ptr().cast(),
            Activations::Q8_1(v) => v.as_mut_ptr().cast(),
            Activations::Q8K(v) => v.as_mut_ptr().cast(),
        };
        ColumnWriter {
            ptr,
            k: input.k,
            cols: input.cols,
            ty: input.dot_type(),
        }
    }

    /// Quantize `x` (at least `k` values; the first `k` are read) into column `c`.
    pub fn write(&self, c: usize, x: &[f32]) {
        assert!(c < self.cols && x.len() >= self.k, "column {c} of {}", self.cols);
        let n = self.k / self.ty.block_size();
        let x = &x[..self.k];
        // SAFETY: column c is blocks c*n..(c+1)*n of the input's vector, in bounds by the
        // assert, and written by this call only.
        unsafe {
            match self.ty {
                DotType::F32 => std::slice::from_raw_parts_mut(self.ptr.cast::<f32>().add(c * n), n).copy_from_slice(x),
                DotType::Q8_0 => quantize_q8_0(
                    x,
                    std::slice::from_raw_parts_mut(self.ptr.cast::<BlockQ8_0>().add(c * n), n),
                ),
                DotType::Q8_1 => quantize_q8_1(
                    x,
                    std::slice::from_raw_parts_mut(self.ptr.cast::<BlockQ8_1>().add(c * n), n),
                ),
                DotType::Q8K => quantize_q8_k(
                    x,
                    std::slice::from_raw_parts_mut(self.ptr.cast::<BlockQ8K>().add(c * n), n),
                ),
            }
        }
    }
}

/// One quantized column: `k` values as blocks of its dot type.
#[derive(Clone, Copy)]
pub struct Column<'a> {
    ptr: *const u8,
    k: usize,
    blocks: usize,
    ty: DotType,
    _input: std::marker::PhantomData<&'a QuantizedInput>,
}

// SAFETY: a column is a shared, read-only view of blocks its input owns (like `&[T]`).
unsafe impl Send for Column<'_> {}
unsafe impl Sync for Column<'_> {}

impl<'a> Column<'a> {
    /// The column's blocks as `T` (the block type of its dot type).
    ///
    /// # Safety
    /// `T` must be the block type of the column's [`DotType`].
    pub unsafe fn blocks<T>(&self) -> &'a [T] {
        // SAFETY: the caller names the column's block type; the column holds its blocks.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<T>(), self.blocks) }
    }

    /// The column's values as the quantized blocks give them (`d * q`).
    pub fn dequantize(&self, out: &mut [f32]) {
        // SAFETY: each arm reads the block type of its dot type.
        unsafe {
            match self.ty {
                DotType::F32 => out.copy_from_slice(self.blocks::<f32>()),
                DotType::Q8_0 => q8::dequantize(self.blocks::<BlockQ8_0>().iter().map(|b| (b.d, &b.qs[..])), out),
                DotType::Q8_1 => q8::dequantize(self.blocks::<BlockQ8_1>().iter().map(|b| (b.d, &b.qs[..])), out),
                DotType::Q8K => q8::dequantize(self.blocks::<BlockQ8K>().iter().map(|b| (b.d, &b.qs[..])), out),
            }
        }
    }
}

/// A row kernel: `Σ_k W[k] · x[k]` of one packed row of `k` values and one column.
/// Safety: the row holds `k` values of the kernel's format and the column is of its
/// dot type (checked by [`Kernel::dot`]).
type RowDot = unsafe fn(row: &[u8], x: Column) -> f32;

/// Most rows, and most columns, of one tile kernel call.
pub const TILE: usize = 4;

/// The sums of a tile: `[row][column]`.
pub type TileSums = [[f32; TILE]; TILE];

/// A tile kernel: `out[i][j] = rows[i] · xs[j]` for 1 to [`TILE`] rows and columns,
/// the same sums as [`RowDot`] calls: bit for bit for the quantized formats (their
/// integer sums are exact), and within f32 rounding for the float ones, whose tiles of
/// several pairs keep fewer partial sums per pair. One call shares work between the
/// pairs: a block unpacked once for several columns (a prefill's or an expert's tokens),
/// a row's loads shared by several columns and a column's by several rows.
type TileDot = unsafe fn(rows: &[&[u8]], xs: &[Column], out: &mut TileSums);

/// A format's tile kernel and the tile it computes best for a number of columns:
/// `shape(cols)` is (rows, columns), each 1 to [`TILE`].
#[derive(Clone, Copy)]
struct Tiled {
    dot: TileDot,
    shape: fn(cols: usize) -> (usize, usize),
}

impl Tiled {
    /// A tile kernel of one row and up to [`TILE`] columns (blocks unpacked once for
    /// all the columns).
    #[cfg(target_arch = "x86_64")]
    fn one_row(dot: TileDot) -> Tiled {
        Tiled {
            dot,
            shape: |cols| (1, cols.clamp(1, TILE)),
        }
    }
}

/// The dot product of one weight format at one SIMD level.
#[derive(Clone, Copy)]
pub struct Kernel {
    ty: BlockType,
    dot_type: DotType,
    simd: Option<RowDot>,
    tiled: Option<Tiled>,
}

thread_local! {
    /// The scalar kernel's dequantized row and column.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl Kernel {
    /// The kernel for weights of `ty` at `simd`, falling back to the scalar one where the
    /// level has none for the format.
    pub fn new(ty: BlockType, simd: Simd) -> Result<Kernel> {
        let dot_type = DotType::of(ty)?;
        Ok(Kernel {
            ty,
            dot_type,
            simd: simd_kernel(ty, simd),
            tiled: simd_tiled(ty, simd),
        })
    }

    /// Whether a SIMD kernel (not the scalar fallback) computes this format.
    pub fn is_simd(&self) -> bool {
        self.simd.is_some()
    }

    pub fn dot_type(&self) -> DotType {
        self.dot_type
    }

    /// `Σ_k W[k] · x[k]` of `row` (one packed row of the column's `k` values) and `x`.
    pub fn dot(&self, row: &[u8], x: Column) -> f32 {
        assert_eq!(
            x.ty,
            self.dot_type,
            "a {:?} column for {} weights",
            x.ty,
            self.ty.name()
        );
        assert_eq!(row.len() * self.ty.block_size(), x.k * self.ty.type_size(), "row size");
        // SAFETY: checked above.
        unsafe { self.dot_unchecked(row, x) }
    }

    /// [`Self::dot`] without its checks, for loops that check the shapes once.
    ///
    /// # Safety
    /// `x` is of this kernel's dot type and `row` holds `x`'s `k` values of its format.
    #[inline]
    pub unsafe fn dot_unchecked(&self, row: &[u8], x: Column) -> f32 {
        match self.simd {
            // SAFETY: the level was detected at start-up and the caller checked the sizes.
            Some(f) => unsafe { f(row, x) },
            None => self.scalar(row, x),
        }
    }

    /// The tile this kernel computes best for `cols` columns: (rows, columns), each 1
    /// to [`TILE`]; (1, 1) where the format has no tile kernel.
    pub fn tile_shape(&self, cols: usize) -> (usize, usize) {
        self.tiled.map_or((1, 1), |t| (t.shape)(cols))
    }

    /// `out[i][j] = rows[i] · xs[j]` ([`Self::dot_unchecked`] of each pair) for 1 to
    /// [`TILE`] rows and columns.
    ///
    /// # Safety
    /// As [`Self::dot_unchecked`], for every row and column.
    #[inline]
    pub unsafe fn tile_unchecked(&self, rows: &[&[u8]], xs: &[Column], out: &mut TileSums) {
        debug_assert!((1..=TILE).contains(&rows.len()) && (1..=TILE).contains(&xs.len()));
        match self.tiled {
            // SAFETY: as above.
            Some(t) => unsafe { (t.dot)(rows, xs, out) },
            None => {
                for (row, out) in rows.iter().zip(out) {
                    for (x, out) in xs.iter().zip(out) {
                        // SAFETY: the caller's promise, per pair.
                        *out = unsafe { self.dot_unchecked(row, *x) };
                    }
                }
            }
        }
    }

    fn scalar(&self, row: &[u8], x: Column) -> f32 {
        SCRATCH.with_borrow_mut(|(w, xs)| {
            w.resize(x.k, 0.0);
            xs.resize(x.k, 0.0);
            super::dequantize_row(self.ty, row, w).expect("row size checked");
            x.dequantize(xs);
            dot_f32(w, xs)
        })
    }
}

/// `Σ a·b` with 8 partial sums (vectorizes; the CPU reference's order too).
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The SIMD kernel of `ty` at `simd`, None where there is none (scalar).
fn simd_kernel(ty: BlockType, simd: Simd) -> Option<RowDot> {
    match simd {
        Simd::Scalar => None,
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => avx2_kernel(ty),
        #[cfg(not(target_arch = "x86_64"))]
        Simd::Avx2 => None,
    }
}

/// The SIMD tile kernel of `ty` at `simd`, None where there is none.
fn simd_tiled(ty: BlockType, simd: Simd) -> Option<Tiled> {
    match simd {
        Simd::Scalar => None,
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => float_avx2::tiled(ty)
            .or_else(|| legacy_avx2::tiled(ty))
            .or_else(|| iq_avx2::tiled(ty)),
        #[cfg(not(target_arch = "x86_64"))]
        Simd::Avx2 => None,
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_kernel(ty: BlockType) -> Option<RowDot> {
    use BlockType::*;
    Some(match ty {
        F32 => float_avx2::dot_f32,
        F16 => float_avx2::dot_f16,
        BF16 => float_avx2::dot_bf16,
        _ => {
            return legacy_avx2::kernel(ty)
                .or_else(|| kquants_avx2::kernel(ty))
                .or_else(|| iq_avx2::kernel(ty));
        }
    })
}

#[cfg(test)]
mod tests;
