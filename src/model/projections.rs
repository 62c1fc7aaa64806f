//! Products of one input with several matrices of the same row length: a layer's query,
//! key and value projections, or its gate and up projections, each after an RMSNorm of
//! the input. Where the backend stacks them ([`Backend::stacked_matrix`]) they are one
//! product, `[n][Σ rows]`, with the norm fused in where the backend can; the model then
//! uses the stacked rows whole (one rotation of the query and key heads, attention over
//! the stacked row, SwiGLU over both halves). Otherwise: the norm, then one product each.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::gguf::{File, TensorView};

pub(crate) enum Projections<B: Backend> {
    /// `[Σ rows][k]`, and the rows of each part.
    Stacked {
        matrix: B::Matrix,
        widths: Vec<usize>,
    },
    Separate(Vec<B::Matrix>),
}

/// The result of [`Projections::product`].
pub(crate) enum Product<'p, T> {
    /// `[n][Σ rows]`: the parts side by side, and the rows of each.
    Stacked(T, &'p [usize]),
    /// `[n][rows_i]` for each part.
    Separate(Vec<T>),
}

impl<T> Product<'_, T> {
    /// The N parts of a product made one by one.
    pub fn separate<const N: usize>(self) -> Result<[T; N]> {
        let Product::Separate(parts) = self else {
            return Err(Error::Shape("a stacked product where separate parts are needed".into()));
        };
        let got = parts.len();
        parts
            .try_into()
            .map_err(|_| Error::Shape(format!("{got} projections where {N} are used")))
    }
}

impl<B: Backend> Projections<B> {
    /// Load the 2-D tensors `names` of `file`, stacked when the backend stacks them.
    pub fn load(file: &File, backend: &mut B, names: &[String]) -> Result<Self> {
        let views = names.iter().map(|n| file.tensor(n)).collect::<Result<Vec<_>>>()?;
        Self::from_views(backend, &views)
    }

    /// The matrices `views`, stacked when the backend stacks them.
    pub fn from_views(backend: &mut B, views: &[TensorView]) -> Result<Self> {
        if let Some(matrix) = backend.stacked_matrix(views)? {
            let widths = views.iter().map(|v| v.info.n_rows() as usize).collect();
            return Ok(Projections::Stacked { matrix, widths });
        }
        Ok(Projections::Separate(
            views.iter().map(|v| backend.matrix(v)).collect::<Result<_>>()?,
        ))
    }

    /// `h · Wᵢᵀ` for every matrix i, `[n][k] -> [n][rows_i]`, where h is x or, with
    /// `norm`, `rms_norm(x, weight, eps)`: stacked (the norm fused in where the backend
    /// can) or one by one.
    pub fn product(
        &self,
        backend: &mut B,
        x: &B::Tensor,
        norm: Option<(&B::Matrix, f32)>,
    ) -> Result<Product<'_, B::Tensor>> {
        Ok(match self {
            Projections::Stacked { matrix, widths } => {
                let all = match norm {
                    Some((weight, eps)) => backend.norm_matmul(matrix, x, weight, eps)?,
                    None => backend.matmul(matrix, x)?,
                };
                Product::Stacked(all, widths)
            }
            Projections::Separate(matrices) => {
                let normed;
                let h = match norm {
                    Some((weight, eps)) => {
                        normed = backend.rms_norm(x, weight, eps)?;
                        &normed
                    }
                    None => x,
                };
                Product::Separate(matrices.iter().map(|m| backend.matmul(m, h)).collect::<Result<_>>()?)
            }
        })
    }

    /// `silu(gate) · up` for a gate and up pair of projections of x (after `norm`).
    pub fn swiglu(&self, backend: &mut B, x: &B::Tensor, norm: Option<(&B::Matrix, f32)>) -> Result<B::Tensor> {
        match self {
            Projections::Stacked { matrix, .. } => backend.swiglu_product(matrix, x, norm),
            Projections::Separate(_) => {
                let [gate, up] = self.product(backend, x, norm)?.separate()?;
                backend.swiglu(&gate, &up)
            }
        }
    }
}
