//! Quantizing a model: recipes choose a type per tensor, an importance matrix weights
//! the quantization error, and [`quantize_file`] writes a standard GGUF.

pub mod collect;
pub mod imatrix;
pub mod recipe;

pub use imatrix::Imatrix;
pub use recipe::{Recipe, Rule, TensorClass};
pub mod budget;
pub mod report;

use crate::error::{Error, Result};
use crate::gguf::{File, SplitPolicy, TensorSpec, Value, write};
use crate::quant::{self, BlockType};
use rayon::prelude::*;
use std::path::Path;

/// One tensor's place in a quantization plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub name: String,
    pub dims: Vec<u64>,
    pub class: TensorClass,
    pub source: BlockType,
    pub ty: BlockType,
    /// Why `ty` differs from what the recipe asked (a fallback), if it does.
    pub note: Option<String>,
}

impl From<&Planned> for crate::gguf::TensorSpec {
    /// The tensor as the plan types it.
    fn from(p: &Planned) -> Self {
        crate::gguf::TensorSpec {
            name: p.name.clone(),
            ty: p.ty,
            dims: p.dims.clone(),
        }
    }
}

impl Planned {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    pub fn bytes(&self) -> u64 {
        self.n_elements() / self.ty.block_size() as u64 * self.ty.type_size() as u64
    }

    pub fn source_bytes(&self) -> u64 {
        self.n_elements() / self.source.block_size() as u64 * self.source.type_size() as u64
    }

    /// Row length.
    pub fn k(&self) -> usize {
        self.dims[0] as usize
    }

    /// Whether lowbit may change this tensor's type: 2-D or 3-D weights other than the
    /// router, norms and expert bias (as llama-quantize).
    pub fn quantizable(&self) -> bool {
        self.dims.len() >= 2 && self.class != TensorClass::Control && self.source.can_dequantize()
    }

    /// `ty` for this tensor, with the fallback applied (and noted).
    pub fn assign(&mut self, ty: BlockType) {
        match recipe::fallback(ty, self.k()) {
            Some(f) => {
                self.note = Some(format!(
                    "rows of {} are not whole {} blocks of {}: {} instead",
                    self.k(),
                    ty.name(),
                    ty.block_size(),
                    f.name()
                ));
                self.ty = f;
            }
            None => {
                self.note = None;
                self.ty = ty;
            }
        }
    }
}

/// The first layer with routed experts among tensor `names`.
pub fn first_moe_layer<'a>(names: impl Iterator<Item = &'a str>) -> Option<usize> {
    names
        .filter(|n| TensorClass::of(n) == TensorClass::RoutedExpert)
        .filter_map(recipe::layer_of)
        .min()
}

/// Apply `recipe` to every tensor of `file` (unmatched and unquantizable tensors keep
/// their type).
pub fn plan(file: &File, recipe: &Recipe) -> Vec<Planned> {
    let specs: Vec<TensorSpec> = file.tensors().map(|t| TensorSpec::from(t.info)).collect();
    plan_specs(&specs, recipe)
}

/// [`plan`] for a tensor table.
pub fn plan_specs(specs: &[TensorSpec], recipe: &Recipe) -> Vec<Planned> {
    let first_moe = first_moe_layer(specs.iter().map(|s| s.name.as_str()));
    specs
        .iter()
        .map(|t| {
            let mut p = Planned {
                name: t.name.clone(),
                dims: t.dims.clone(),
                class: TensorClass::of(&t.name),
                source: t.ty,
                ty: t.ty,
                note: None,
            };
            if p.quantizable()
                && let Some(ty) = recipe.type_for(&p.name, first_moe)
            {
                p.assign(ty);
            }
            p
        })
        .collect()
}

/// llama.cpp's `llama_ftype` for a file whose main type is `ty`.
pub fn file_type(ty: BlockType) -> u32 {
    match ty {
        BlockType::F32 => 0,
        BlockType::F16 => 1,
        BlockType::Q4_0 => 2,
        BlockType::Q4_1 => 3,
        BlockType::Q8_0 => 7,
        BlockType::Q5_0 => 8,
        BlockType::Q5_1 => 9,
        BlockType::Q2_K => 10,
        BlockType::Q3_K => 12,
        BlockType::Q4_K => 15,
        BlockType::Q5_K => 17,
        BlockType::Q6_K => 18,
        BlockType::IQ2_XXS => 19,
        BlockType::IQ1_S => 24,
        BlockType::IQ4_NL => 25,
        BlockType::IQ1_M => 31,
        BlockType::BF16 => 32,
        BlockType::TQ1_0 => 36,
        BlockType::TQ2_0 => 37,
        _ => 1024,
    }
}

/// The type holding the most weights: the file's `general.file_type`.
pub fn main_type(plan: &[Planned]) -> BlockType {
    let mut by_type = std::collections::BTreeMap::<u32, (u64, BlockType)>::new();
    for p in plan.iter().filter(|p| p.quantizable()) {
        by_type.entry(p.ty.id()).or_insert((0, p.ty)).0 += p.n_elements();
    }
    by_type
        .values()
        .max_by_key(|(n, _)| *n)
        .map_or(BlockType::F32, |(_, t)| *t)
}

/// Quantize one tensor's values (`[n_mat][rows][k]`), matrix by matrix with that
/// matrix's importance weights.
pub fn quantize_values(values: &[f32], p: &Planned, imatrix: Option<&Imatrix>) -> Result<Vec<u8>> {
    let k = p.k();
    let n_mat: usize = p.dims[2..].iter().product::<u64>() as usize;
    let per_mat = values.len() / n_mat.max(1);
    let parts = (0..n_mat.max(1))
        .into_par_iter()
        .map(|m| {
            let weights = match imatrix {
                Some(im) => im.weights(&p.name, m, k, n_mat.max(1))?,
                None => None,
            };
            quant::quantize(p.ty, &values[m * per_mat..(m + 1) * per_mat], k, weights.as_deref())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(parts.concat())
}

/// The output's metadata: the source's, with `general.file_type` and
/// `general.quantization_version` set and the imatrix noted.
pub fn output_metadata(file: &File, plan: &[Planned], imatrix: Option<&Imatrix>) -> Vec<(String, Value)> {
    let mut metadata: Vec<(String, Value)> = file
        .metadata_entries()
        .iter()
        .filter(|(k, _)| !k.starts_with("split.") && k != "general.file_type" && k != "general.quantization_version")
        .cloned()
        .collect();
    metadata.push(("general.quantization_version".into(), Value::U32(2)));
    metadata.push(("general.file_type".into(), Value::U32(file_type(main_type(plan)))));
    if let Some(im) = imatrix {
        metadata.push((
            "quantize.imatrix.entries_count".into(),
            Value::I32(im.entries.len() as i32),
        ));
        metadata.push(("quantize.imatrix.chunks_count".into(), Value::I32(im.chunks as i32)));
    }
    metadata
}

/// The tensor table of the output.
pub fn output_specs(plan: &[Planned]) -> Vec<TensorSpec> {
    plan.iter()
        .map(|p| TensorSpec {
            name: p.name.clone(),
            ty: p.ty,
            dims: p.dims.clone(),
        })
        .collect()
}

/// Write `out` (atomically) with `plan`'s types: unchanged tensors are copied, the rest
/// dequantized to f32 and quantized (with the importance matrix when given).
/// `progress(done, total)` is called per tensor.
pub fn quantize_file(
    file: &File,
    plan: &[Planned],
    out: &Path,
    imatrix: Option<&Imatrix>,
    mut progress: impl FnMut(usize, usize),
) -> Result<()> {
    let metadata = output_metadata(file, plan, imatrix);
    let specs = output_specs(plan);
    let total = plan.len();
    write(out, &metadata, &specs, SplitPolicy::Single, |i, w| {
        let p = &plan[i];
        let t = file.tensor(&p.name)?;
        let bytes = if p.ty == p.source {
            t.bytes.to_vec()
        } else {
            quantize_values(&t.dequantize()?, p, imatrix).map_err(|e| Error::Tensor {
                path: file.path().to_path_buf(),
                tensor: p.name.clone(),
                reason: e.to_string(),
            })?
        };
        w.write_all(&bytes).map_err(|e| Error::io(out, e))?;
        progress(i + 1, total);
        Ok(())
    })?;
    Ok(())
}
