//! The fast CPU backend's kernels: products over quantized activations with the SIMD
//! row kernels of [`crate::quant::dot`], and the other operations, all run on one
//! persistent [`Pool`] (no per-operation rayon). [`crate::cpu::CpuBackend::fast`] uses
//! them; the reference backend does not.
//!
//! A product `[n][k] · Wᵀ` quantizes each of the n input rows once into W's dot type,
//! then hands out W's rows in chunks: each thread takes a chunk and computes all n
//! columns of each row, so a row is read from memory once for the whole batch.

mod ops;
mod pool;
mod products;

pub use pool::{Pool, physical_cores};
pub(super) use products::{fast_pair_products, fast_product, fast_routed_ffn, fast_swiglu_product};

use crate::cpu::backend::swiglu;
use crate::error::{Error, Result};
use crate::profile::OpProfile;
use crate::quant::BlockType;
use crate::quant::dot::{Column, ColumnWriter, DotType, Kernel, QuantizedInput, Simd, TILE};
use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The pool and the SIMD level of a fast CPU backend, and while profiling
/// (`generate --profile`) the time of each operation.
pub struct Fast {
    pub pool: Pool,
    pub simd: Simd,
    profile: Mutex<Option<OpProfile>>,
}

/// A pointer to an output that several threads write, each to elements no other writes.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: every user writes disjoint elements and the output outlives the pool run.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The element at `i` (a method, so that closures capture the whole `Out`).
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }

    /// # Safety
    /// `i` is in bounds and written by this thread only during the run.
    unsafe fn store(self, i: usize, v: f32, add: bool) {
        // SAFETY: the caller's promise.
        unsafe {
            let p = self.0.add(i);
            *p = if add { *p + v } else { v };
        }
    }
}

/// Packed weight rows of `k` values of `ty`, in parts: `(rows, bytes)` each, the
/// parts' rows one after another (a stacked product's matrices, read in place).
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    pub ty: BlockType,
    pub k: usize,
    pub parts: &'a [(usize, &'a [u8])],
}

impl Rows<'_> {
    fn rows(&self) -> usize {
        self.parts.iter().map(|p| p.0).sum()
    }

    fn row_bytes(&self) -> Result<usize> {
        let rb = self.ty.row_bytes(self.k)?;
        if let Some((rows, bytes)) = self.parts.iter().find(|(rows, bytes)| bytes.len() < rb * rows) {
            return Err(Error::Shape(format!(
                "{} bytes for {rows} {} rows of {}",
                bytes.len(),
                self.ty.name(),
                self.k
            )));
        }
        Ok(rb)
    }
}

/// Columns computed together per row: their blocks stay in the L1 cache while the row's
/// chunk is read (as ggml's 16 x 16 tiles of `ggml_compute_forward_mul_mat_one_chunk`).
const COLUMN_TILE: usize = 16;

impl Fast {
    /// `threads` threads (0: the physical cores) at SIMD level `simd`.
    pub fn new(threads: usize, simd: Simd) -> Self {
        let threads = if threads == 0 { physical_cores() } else { threads };
        Fast {
            pool: Pool::new(threads),
            simd,
            profile: Mutex::new(None),
        }
    }

    /// Time every operation from now on.
    pub fn start_profile(&self) {
        *self.profile.lock().unwrap_or_else(|e| e.into_inner()) = Some(OpProfile::new(Duration::ZERO));
    }

    /// The profile's table per pass over `passes` passes, if profiling.
    pub fn profile_report(&self, passes: usize) -> Option<String> {
        let profile = self.profile.lock().unwrap_or_else(|e| e.into_inner());
        profile.as_ref().map(|p| p.report(passes))
    }

    /// `f()`, timed as operation `op()` while profiling.
    fn timed<T>(&self, op: impl FnOnce() -> String, f: impl FnOnce() -> T) -> T {
        if self.profile.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
            return f();
        }
        let start = Instant::now();
        let out = f();
        let time = start.elapsed();
        if let Some(p) = self.profile.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            p.add(op().into(), time);
        }
        out
    }

    /// The row kernel of `ty` at this backend's level, once `input` is checked to be of
    /// its dot type and `k` values per column.
    fn kernel(&self, ty: BlockType, k: usize, input: &QuantizedInput) -> Result<Kernel> {
        let kernel = Kernel::new(ty, self.simd)?;
        if input.dot_type() != kernel.dot_type() || input.k != k {
            return Err(Error::Shape(format!(
                "{:?} inputs of {} for {} rows of {k}",
                input.dot_type(),
                input.k,
                ty.name(),
            )));
        }
        Ok(kernel)
    }

    /// The first `k` values of each of the `n` rows of `x` (rows of `width`), quantized
    /// into `ty`, one column per row.
    pub fn quantize(&self, x: &[f32], width: usize, k: usize, ty: DotType) -> Result<QuantizedInput> {
        let n = x.len() / width.max(1);
        let mut input = QuantizedInput::new(ty, k, n)?;
        let writer = ColumnWriter::new(&mut input);
        self.timed(
            || format!("quantize {ty:?}"),
            || {
                self.pool
                    .for_each_chunk(n, n.div_ceil(2 * self.pool.threads()), |cols| {
                        for c in cols {
                            writer.write(c, &x[c * width..]);
                        }
                    })
            },
        );
        Ok(input)
    }

    /// `y[c][r] (+)= Σ_k W[r][k] · x_c[k]` for every row r of `w` and column c of `input`,
    /// with y's rows `stride` apart (`add`: accumulate into y). Each part's rows are
    /// chunked, and the chunks of all parts handed out together.
    pub fn product(&self, w: Rows, input: &QuantizedInput, y: &mut [f32], stride: usize, add: bool) -> Result<()> {
        let rb = w.row_bytes()?;
        let kernel = self.kernel(w.ty, w.k, input)?;
        let total = w.rows();
        if input.cols > 0 && ((input.cols - 1) * stride + total > y.len() || total > stride) {
            return Err(Error::Shape(format!(
                "an output of {} for {} columns of {total} rows",
                y.len(),
                input.cols,
            )));
        }
        let chunk = self.pool.chunk_rows(total);
        // (part, first row of the part in y, first row in the part) of every chunk.
        let mut chunks = Vec::new();
        let mut offset = 0;
        for (p, &(rows, _)) in w.parts.iter().enumerate() {
            chunks.extend((0..rows).step_by(chunk).map(|r| (p, offset, r)));
            offset += rows;
        }
        let columns: Vec<_> = (0..input.cols).map(|c| input.column(c)).collect();
        let out = Out(y.as_mut_ptr());
        let op = || format!("product {} {}x{}", w.ty.name(), w.k, total);
        self.timed(op, || {
            self.pool.for_each_chunk(chunks.len(), 1, |items| {
                for &(p, offset, first) in &chunks[items] {
                    let (rows, bytes) = w.parts[p];
                    for tile in tiles(columns.len()) {
                        // SAFETY: the input's type and k match the kernel's and each row
                        // is rb bytes (checked above); element (c, offset + r) is in
                        // bounds and row r of part p belongs to this chunk only.
                        unsafe {
                            each_tile(
                                &kernel,
                                first..(first + chunk).min(rows),
                                |r| &bytes[r * rb..][..rb],
                                tile,
                                |c| columns[c],
                                |r, c, v| out.store(c * stride + offset + r, v, add),
                            )
                        };
                    }
                }
            })
        });
        Ok(())
    }

    /// `y[c][r] = silu(g) · u` with `g = Σ_k G[r][k] · x_c[k]` and `u` the same of U, for
    /// the gate and up matrices `w.parts` (two of the same rows): each chunk's gate and up
    /// rows are multiplied together and SwiGLU applied on the spot, so the stacked
    /// `[n][2f]` product is never written (y is `[n][f]`).
    pub fn swiglu_product(&self, w: Rows, input: &QuantizedInput, y: &mut [f32]) -> Result<()> {
        let rb = w.row_bytes()?;
        let kernel = self.kernel(w.ty, w.k, input)?;
        let &[(ff, gate), (up_rows, up)] = w.parts else {
            return Err(Error::Shape(format!("a SwiGLU product of {} matrices", w.parts.len())));
        };
        if ff != up_rows || y.len() != input.cols * ff {
            return Err(Error::Shape(format!(
                "SwiGLU of {ff} gate and {up_rows} up rows into {} outputs for {} columns",
                y.len(),
                input.cols
            )));
        }
        let chunk = self.pool.chunk_rows(ff);
        let columns: Vec<_> = (0..input.cols).map(|c| input.column(c)).collect();
        let out = Out(y.as_mut_ptr());
        let op = || format!("product+swiglu {} {}x{}", w.ty.name(), w.k, 2 * ff);
        self.timed(op, || {
            self.pool.for_each_chunk(ff.div_ceil(chunk), 1, |items| {
                let mut g = [[0f32; COLUMN_TILE]; TILE];
                for first in items.map(|i| i * chunk) {
                    for tile in tiles(columns.len()) {
                        let t0 = tile.start;
                        for r0 in (first..(first + chunk).min(ff)).step_by(TILE) {
                            let rs = r0..(r0 + TILE).min(ff);
                            // SAFETY: the input matches the kernel and both matrices hold ff
                            // rows of rb bytes (checked above); (c, r) is in bounds and this
                            // chunk's alone.
                            unsafe {
                                each_tile(
                                    &kernel,
                                    rs.clone(),
                                    |r| &gate[r * rb..][..rb],
                                    tile.clone(),
                                    |c| columns[c],
                                    |r, c, v| g[r - r0][c - t0] = v,
                                );
                                each_tile(
                                    &kernel,
                                    rs,
                                    |r| &up[r * rb..][..rb],
                                    tile.clone(),
                                    |c| columns[c],
                                    |r, c, u| out.store(c * ff + r, swiglu(g[r - r0][c - t0], u), false),
                                );
                            }
                        }
                    }
                }
            })
        });
        Ok(())
    }

    /// For every pair p: `y[p][r] = s_p · Σ_k W_p[r][k] · x_{col(p)}[k]` for W_p's rows r,
    /// where `matrix(p)` gives pair p's matrix (None: the pair is skipped), `col(p)` its
    /// column of `input` and `scale(p)` its factor. y's rows are `stride` apart. Pairs of
    /// the same matrix share its row chunks, and the chunks of all matrices are handed
    /// out together, so threads move from one expert to the next with no barrier.
    #[allow(clippy::too_many_arguments)]
    pub fn pair_products<'a>(
        &self,
        ty: BlockType,
        k: usize,
        rows: usize,
        matrix: impl Fn(usize) -> Option<&'a [u8]> + Sync,
        pairs: usize,
        col: impl Fn(usize) -> usize + Sync,
        scale: impl Fn(usize) -> f32 + Sync,
        input: &QuantizedInput,
        y: &mut [f32],
        stride: usize,
    ) -> Result<()> {
        let rb = ty.row_bytes(k)?;
        let kernel = self.kernel(ty, k, input)?;
        if pairs > 0 && ((pairs - 1) * stride + rows > y.len() || rows > stride) {
            return Err(Error::Shape(format!(
                "an output of {} for {pairs} pairs of {rows} rows",
                y.len()
            )));
        }
        if let Some(p) = (0..pairs).find(|&p| col(p) >= input.cols || matrix(p).is_some_and(|m| m.len() < rb * rows)) {
            return Err(Error::Shape(format!("pair {p}: its column or matrix is out of range")));
        }
        // Pairs that read the same matrix (one expert's tokens) go together, so that each
        // of its rows is read once for all of their columns, as ggml's `mul_mat_id`
        // groups its rows by expert.
        let mut order: Vec<(usize, usize)> = (0..pairs)
            .filter_map(|p| matrix(p).map(|m| (m.as_ptr() as usize, p)))
            .collect();
        order.sort_unstable();
        let groups: Vec<&[(usize, usize)]> = order.chunk_by(|a, b| a.0 == b.0).collect();
        let chunk = self.pool.chunk_rows(rows);
        let per_group = rows.div_ceil(chunk);
        let columns: Vec<_> = (0..pairs).map(|p| (input.column(col(p)), scale(p))).collect();
        let out = Out(y.as_mut_ptr());
        let op = || format!("pair products {} {k}x{rows}", ty.name());
        self.timed(op, || {
            self.pool.for_each_chunk(groups.len() * per_group, 1, |items| {
                for item in items {
                    let (group, part) = (groups[item / per_group], item % per_group);
                    let m = matrix(group[0].1).expect("grouped pairs have matrices");
                    let pair = |j: usize| group[j].1;
                    for tile in tiles(group.len()) {
                        // SAFETY: the input matches the kernel and the matrix holds `rows`
                        // rows (checked above); (p, r) is in bounds and this item's alone.
                        unsafe {
                            each_tile(
                                &kernel,
                                part * chunk..((part + 1) * chunk).min(rows),
                                |r| &m[r * rb..][..rb],
                                tile,
                                |j| columns[pair(j)].0,
                                |r, j, v| out.store(pair(j) * stride + r, columns[pair(j)].1 * v, false),
                            )
                        };
                    }
                }
            })
        });
        Ok(())
    }
}

/// `store(r, j, row(r) · column(j))` for every r of `rs` and j of `js`, in the tiles
/// the kernel computes best ([`Kernel::tile_shape`]): rows outside, so that a tile's
/// rows stay in the L1 cache while `js` passes over them.
///
/// # Safety
/// Every row and column match the kernel (as [`Kernel::dot_unchecked`] requires), and
/// `store` may be called for every (r, j).
#[inline]
unsafe fn each_tile<'r, 'c>(
    kernel: &Kernel,
    rs: Range<usize>,
    row: impl Fn(usize) -> &'r [u8],
    js: Range<usize>,
    column: impl Fn(usize) -> Column<'c>,
    mut store: impl FnMut(usize, usize, f32),
) {
    if js.is_empty() {
        return;
    }
    let (tile_rows, tile_cols) = kernel.tile_shape(js.len());
    if (tile_rows, tile_cols) == (1, 1) {
        // Decode: one kernel call per row, with no tile to gather.
        for r in rs {
            let row = row(r);
            for j in js.clone() {
                // SAFETY: the caller's promise.
                store(r, j, unsafe { kernel.dot_unchecked(row, column(j)) });
            }
        }
        return;
    }
    let mut sums = [[0f32; TILE]; TILE];
    for r in rs.clone().step_by(tile_rows) {
        let nr = tile_rows.min(rs.end - r);
        let rows: [&[u8]; TILE] = std::array::from_fn(|i| row(r + i.min(nr - 1)));
        for j in js.clone().step_by(tile_cols) {
            let nc = tile_cols.min(js.end - j);
            let cols: [Column; TILE] = std::array::from_fn(|i| column(j + i.min(nc - 1)));
            // SAFETY: the caller's promise.
            unsafe { kernel.tile_unchecked(&rows[..nr], &cols[..nc], &mut sums) };
            for (i, sums) in sums[..nr].iter().enumerate() {
                for (jj, &v) in sums[..nc].iter().enumerate() {
                    store(r + i, j + jj, v);
                }
            }
        }
    }
}

/// `0..n` in ranges of [`COLUMN_TILE`] columns.
fn tiles(n: usize) -> impl Iterator<Item = Range<usize>> {
    (0..n).step_by(COLUMN_TILE).map(move |t| t..(t + COLUMN_TILE).min(n))
}
